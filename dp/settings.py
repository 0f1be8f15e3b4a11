"""Data-plane settings: flags, then `TIDEGATE_*` environment variables, then these defaults."""

from __future__ import annotations

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
    workers: int = 1  # proxy processes (SO_REUSEPORT); 1 = in this process
    labels: dict[str, str] = field(default_factory=dict)
    plugins: str = "bundled"  # Kong's `plugins`: "bundled" or a comma-separated list
    log_format: str = "text"

    @classmethod
    def from_sources(cls, args: Any = None, env: dict[str, str] | None = None) -> DPSettings:
        return from_sources(cls, args, env)

    def enabled_plugins(self) -> list[str]:
        from shared import plugins as registry

        names = [n.strip() for n in self.plugins.split(",") if n.strip()]
        available = registry.available()
        if "bundled" in names:
            names = [*available, *(n for n in names if n != "bundled")]
        return [n for n in dict.fromkeys(names) if n in available]
