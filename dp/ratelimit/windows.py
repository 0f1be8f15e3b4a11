"""Window arithmetic, as pure functions of a time `now` (seconds, from an injectable clock).

Windows are aligned on the epoch: the window of size S containing `now` starts at
floor(now / S) * S, so every data plane (and Redis) agrees on it without talking.

- fixed: the rate is the current window's count.
- sliding: the rate is the current count plus the previous window's count weighted by how much
  of the previous window still overlaps the last S seconds: (S - elapsed) / S, where elapsed is
  the time since the current window started.

`reset_after` is the number of seconds a client is told to wait (RateLimit-Reset, Retry-After):
the rest of the current window, and for a sliding window the extra time the weighted previous
count needs to decay below the limit (as Kong estimates it).
"""

from __future__ import annotations

import math
from collections.abc import Callable

Clock = Callable[[], float]

STANDARD_NAMES = {1: "second", 60: "minute", 3600: "hour", 86400: "day", 2592000: "month",
                  31536000: "year"}


def window_start(now: float, size: float) -> float:
    """The start of the window of `size` seconds that contains `now`."""
    return math.floor(now / size) * size


def previous_weight(now: float, size: float, window_type: str) -> float:
    """How much the previous window's count still counts (0 for fixed windows)."""
    if window_type == "fixed":
        return 0.0
    elapsed = now - window_start(now, size)
    return max(0.0, (size - elapsed) / size)


def rate(current: float, previous: float, now: float, size: float, window_type: str) -> float:
    """The count a limit is compared with."""
    return current + previous * previous_weight(now, size, window_type)


def remaining(limit: float, value: float) -> int:
    """What a client may still send in this window (never negative)."""
    return math.floor(max(limit - value, 0))


def reset_after(now: float, size: float, window_type: str, value: float, limit: float) -> int:
    """Whole seconds until the window lets requests through again (at least 1)."""
    reset = max(1.0, size - (now - math.floor(now / size) * size))  # per request: inlined
    if window_type == "sliding":
        reset += max(0.0, (value - limit) / limit * size)
    return math.ceil(reset)


def window_name(size: float) -> str:
    """`second`, `minute`, ... for the standard sizes, else the number of seconds."""
    if float(size).is_integer():
        name = STANDARD_NAMES.get(int(size))
        return name if name is not None else str(int(size))
    return repr(float(size))


def number(value: float) -> int | float:
    """A count or limit as headers and events show it: an int when whole."""
    return int(value) if float(value).is_integer() else round(value, 3)
