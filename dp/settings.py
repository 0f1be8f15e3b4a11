"""Data-plane settings: flags, then `TIDEGATE_*` environment variables, then these defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.settings import from_sources


@dataclass
class DPSettings:
    prefix: Path = Path(".tidegate-dp")
    cp: str | None = None  # control plane cluster address, host:8005
    cluster_cert: Path | None = None
    cluster_key: Path | None = None
    cluster_mtls: str = "shared"  # or "pki"
    cluster_ca_cert: Path | None = None
    cluster_server_name: str = "kong_clustering"
    declarative_config: Path | None = None  # DB-less standalone: no control plane at all
    status_listen: str = "127.0.0.1:8100"
    proxy_listen: str = "0.0.0.0:8000"  # "off" disables a listener
    proxy_ssl_listen: str = "0.0.0.0:8443"
    workers: int | str = 1  # proxy processes (SO_REUSEPORT), or "auto" (one per core);
    # 1 = proxy in this process
    labels: dict[str, str] = field(default_factory=dict)
    plugins: str = "bundled"  # Kong's `plugins`: "bundled" or a comma-separated list
    log_format: str = "text"
    # Events (balancer health, rate limits) held for the control plane, sent or not, until it
    # acknowledges them; beyond this the oldest are dropped and counted (/status `events`).
    event_queue_size: int = 10_000

    @classmethod
    def from_sources(cls, args: Any = None, env: dict[str, str] | None = None) -> DPSettings:
        return from_sources(cls, args, env)

    def worker_processes(self) -> int:
        """`workers` as a number: "auto" is the number of cores."""
        return parse_workers(str(self.workers))

    def enabled_plugins(self) -> list[str]:
        from shared import plugins as registry

        names = [n.strip() for n in self.plugins.split(",") if n.strip()]
        available = registry.available()
        if "bundled" in names:
            names = [*available, *(n for n in names if n != "bundled")]
        return [n for n in dict.fromkeys(names) if n in available]


def parse_workers(value: str) -> int:
    """`--workers`: a positive number, or "auto" for one worker per core."""
    if value.strip().lower() == "auto":
        return os.cpu_count() or 1
    count = int(value)
    if count < 1:
        raise ValueError(f"workers must be at least 1 (or auto), not {value}")
    return count
