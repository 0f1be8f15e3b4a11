"""What one handler run produced: success or the failure, and whether to try again."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Outcome:
    ok: bool
    status: int | None = None          # HTTP status, for HTTP handlers
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    error: str | None = None
    retry: bool = True                 # a failure worth retrying (not a Lua error, not denied)
    retry_after: float | None = None   # seconds, from the receiver's Retry-After
    gone: bool = False                 # 410: the receiver asks us to stop
    latency_ms: float = 0.0

    def result(self) -> dict[str, Any]:
        """The `result` of POST /event-hooks/{id}/test (Kong's shape)."""
        body = self.body if self.error is None else self.error
        return {"body": body, "headers": self.headers, "status": self.status}


def failed(error: str, *, retry: bool = False) -> Outcome:
    return Outcome(ok=False, error=error, retry=retry)
