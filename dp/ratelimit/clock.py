"""The time the rate limiter reads: wall-clock seconds, replaceable in tests (`set_clock`).

Everything else in dp/ratelimit takes `now` as an argument; only the plugin and the background
sync read the clock, as `clock.now()`, so one call swaps time for all of them. `now` is the
clock itself, rebound by `set_clock`, rather than a function that calls it: every limited
request reads it, and this way that costs no Python call. (So read it as a module attribute;
`from dp.ratelimit.clock import now` would keep the clock of import time.)
"""

from __future__ import annotations

import time

from dp.ratelimit.windows import Clock

now: Clock = time.time


def set_clock(clock: Clock) -> Clock:
    """Use `clock` from now on; returns the one it replaces (to restore it)."""
    global now
    previous, now = now, clock
    return previous
