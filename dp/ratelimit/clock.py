"""The time the rate limiter reads: wall-clock seconds, replaceable in tests (`set_clock`).

Everything else in dp/ratelimit takes `now` as an argument; only the plugin and the background
sync read the clock, through `now()`, so one call swaps time for all of them.
"""

from __future__ import annotations

import time

from dp.ratelimit.windows import Clock

_clock: Clock = time.time


def now() -> float:
    return _clock()


def set_clock(clock: Clock) -> Clock:
    """Use `clock` from now on; returns the one it replaces (to restore it)."""
    global _clock
    previous, _clock = _clock, clock
    return previous
