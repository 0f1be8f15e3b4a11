"""Control-plane settings: flags override `TIDEGATE_*` environment variables override defaults."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _env_bool(value: str) -> bool:
    return value.strip().lower() in ("1", "on", "true", "yes")


@dataclass
class CPSettings:
    prefix: Path = Path(".tidegate")
    pg_dsn: str | None = None
    admin_listen: str = "127.0.0.1:8001"
    cluster_listen: str = "0.0.0.0:8005"
    enforce_rbac: bool = False
    password: str | None = field(default=None, repr=False)  # super-admin, used at bootstrap
    cluster_cert: Path | None = None
    cluster_key: Path | None = None
    log_format: str = "text"
    node_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @classmethod
    def from_sources(cls, args: Any = None, env: dict[str, str] | None = None) -> CPSettings:
        env = dict(os.environ if env is None else env)
        settings = cls()
        for f in fields(cls):
            raw = env.get(f"TIDEGATE_{f.name.upper()}")
            flag = getattr(args, f.name, None) if args is not None else None
            value: Any = flag if flag is not None else raw
            if value is None:
                continue
            if f.name == "enforce_rbac":
                value = value if isinstance(value, bool) else _env_bool(value)
            elif f.name in ("prefix", "cluster_cert", "cluster_key"):
                value = Path(value)
            setattr(settings, f.name, value)
        return settings


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)
