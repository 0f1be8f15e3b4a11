"""What the control plane hands its event-hooks worker process: DSN, engine tunables, log set-up.

The spec travels as one JSON line on the worker's stdin — never on its command line, where `ps`
would show the DSN's password to every user of the machine. The same pipe then stays open as
the worker's lifeline: EOF on it means the control plane is gone (see `worker_main`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from cp.hooks.config import HooksConfig


@dataclass(frozen=True)
class WorkerSpec:
    dsn: str = field(repr=False)  # may hold a password
    config: HooksConfig = field(default_factory=HooksConfig)
    node_id: str = "local"
    log_format: str = "text"
    nice: int = 10  # added to the worker's niceness: Admin API writes come first
    report_fd: int = -1  # a pipe for delivery counts (cp/hooks/counts.py); -1: none

    def encode(self) -> bytes:
        """One JSON line, newline-terminated."""
        body: dict[str, Any] = dataclasses.asdict(self)
        return json.dumps(body).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> WorkerSpec:
        body = json.loads(line)
        return cls(dsn=body["dsn"], config=HooksConfig(**body["config"]),
                   node_id=body["node_id"], log_format=body["log_format"],
                   nice=int(body["nice"]), report_fd=int(body.get("report_fd", -1)))
