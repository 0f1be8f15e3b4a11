"""Tunables of the event-hook engine, read from the control plane's settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HooksConfig:
    node_id: str = "local"
    timeout: float = 15.0              # seconds per outbound request (connect + answer)
    retry_period: float = 24 * 3600.0  # how long a failing delivery is retried
    retry_base: float = 5.0            # first retry delay; each next one is 4x (with jitter)
    retry_max_delay: float = 10 * 3600.0
    retention: float = 7 * 24 * 3600.0  # finished deliveries are kept this long; 0 = forever
    prune_every: float = 600.0         # seconds between prunings
    workers: int = 4                   # delivery loops per node, each one batch at a time
    batch: int = 64                    # deliveries claimed at once by a loop
    poll: float = 1.0                  # longest wait between looks at the tables
    gather: float = 0.005              # after a change is notified, wait this long for more
    defer_above: float = 200.0         # Admin API writes/s above which deliveries hold back
    max_defer: float = 5.0             # ... for at most this many seconds (cp/hooks/pressure)
    allow: str = ""                    # comma-separated hosts/CIDRs; empty = any
    deny: str = ""                     # comma-separated hosts/CIDRs refused
    standard_webhooks: bool = True     # webhook-id/-timestamp/-signature headers
    lambda_timeout: float = 2.0        # wall clock for one lambda chain
    lambda_memory_mb: int = 64         # Lua allocator limit (the OS limit is set above it)

    def timeout_for(self, handler_config: dict[str, Any]) -> float:
        """A webhook's own `config.timeout` when it has one, else this node's."""
        own = handler_config.get("timeout")
        return float(own) if own else self.timeout

    @classmethod
    def from_settings(cls, settings: Any) -> HooksConfig:
        """From CPSettings; environment values arrive as strings, so numbers are parsed here."""
        def num(name: str, default: float) -> float:
            value = getattr(settings, name, None)
            return default if value in (None, "") else float(value)

        return cls(
            node_id=str(getattr(settings, "node_id", "local")),
            timeout=num("event_hooks_timeout", cls.timeout),
            retry_period=num("event_hooks_retry_period", cls.retry_period),
            retry_base=num("event_hooks_retry_base", cls.retry_base),
            retention=num("event_hooks_retention", cls.retention),
            workers=int(num("event_hooks_workers", cls.workers)),
            defer_above=num("event_hooks_defer_above", cls.defer_above),
            max_defer=num("event_hooks_max_defer", cls.max_defer),
            allow=str(getattr(settings, "event_hooks_allow", "") or ""),
            deny=str(getattr(settings, "event_hooks_deny", "") or ""),
            standard_webhooks=bool(getattr(settings, "event_hooks_standard_webhooks", True)),
        )
