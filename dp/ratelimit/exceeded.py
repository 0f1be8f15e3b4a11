"""The `rate-limiting-advanced` / `rate-limit-exceeded` event: its payload, and once per window.

The payload has the catalogue's fields (shared/events.py): `consumer` and `service` as the
entities (or `{}`), `ip`, `rate`, `limit` and `window` (the window's name). A flood must not
become a flood of events: an event goes out the first time a (consumer, ip, service) — the
source's `unique` keys — exceeds a given window of a given plugin, and not again until that
window has ended. (Kong only suppresses repeats for 5 seconds, per node.)
"""

from __future__ import annotations

import math
from typing import Any

from dp.ratelimit.windows import number

SOURCE = "rate-limiting-advanced"
EVENT = "rate-limit-exceeded"
SWEEP_AT = 10_000  # remembered keys before the first sweep of expired ones


def payload(consumer: dict[str, Any] | None, ip: str, service: dict[str, Any] | None,
            value: float, limit: float, window: str) -> dict[str, Any]:
    return {"consumer": dict(consumer or {}), "ip": ip, "service": dict(service or {}),
            "rate": number(value), "limit": number(limit), "window": window}


class OncePerWindow:
    """Remembers which keys already produced an event in their current window."""

    def __init__(self) -> None:
        self._until: dict[tuple[Any, ...], float] = {}
        self._sweep_at = SWEEP_AT

    def first(self, key: tuple[Any, ...], size: float, now: float) -> bool:
        """True the first time `key` is seen in the window of `size` containing `now`."""
        if len(self._until) >= self._sweep_at:
            self._until = {k: t for k, t in self._until.items() if t > now}
            # many keys still live (a flood from many addresses): sweep again only once the
            # map doubled, so sweeping stays linear overall
            self._sweep_at = max(SWEEP_AT, 2 * len(self._until))
        index = math.floor(now / size)
        full = (*key, size, index)
        if full in self._until:
            return False
        self._until[full] = (index + 1) * size
        return True
