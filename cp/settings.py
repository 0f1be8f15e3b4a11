"""Control-plane settings: flags override `TIDEGATE_*` environment variables override defaults."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.settings import from_sources, split_listen

__all__ = ["CPSettings", "split_listen"]


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
    cluster_mtls: str = "shared"  # or "pki"
    cluster_ca_cert: Path | None = None
    cluster_allowed_names: str = ""  # pki: comma-separated data-plane names, empty = any
    log_format: str = "text"
    # Event hooks (cp/hooks): outbound timeout and retry schedule in seconds, destination lists.
    event_hooks_timeout: float = 15.0
    event_hooks_retry_period: float = 24 * 3600.0
    event_hooks_retry_base: float = 5.0
    event_hooks_allow: str = ""  # comma-separated hosts (*.example.com) / CIDRs; empty = any
    event_hooks_deny: str = ""   # comma-separated hosts / CIDRs never called
    # Finished deliveries (and their attempts) are deleted this many seconds after they finished;
    # pending ones never are. 0 keeps them forever.
    event_hooks_retention: float = 7 * 24 * 3600.0
    # "process": deliveries run in a child process at lower CPU priority (+event_hooks_nice),
    # so they never take the Admin API's CPU; "inline": in the control plane's own event loop.
    event_hooks_worker: str = "process"
    event_hooks_nice: int = 10
    # While Admin API writes arrive faster than this per second (all CP nodes together), the
    # engine holds deliveries back, for at most event_hooks_max_defer seconds (cp/hooks/pressure).
    event_hooks_defer_above: float = 200.0
    event_hooks_max_defer: float = 5.0
    # Events data planes send up (GET /clustering/data-planes/{id}/events): kept this many
    # seconds after they were received, then pruned.
    dp_events_retention: float = 7 * 24 * 3600.0
    node_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @classmethod
    def from_sources(cls, args: Any = None, env: dict[str, str] | None = None) -> CPSettings:
        return from_sources(cls, args, env)
