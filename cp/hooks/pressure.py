"""Admin API write pressure as the event-hook engine sees it, and the engine holding back.

Every Admin API write NOTIFYs the change-log channel, which the engine listens to anyway, so
the engine knows the write rate of the whole cluster (every CP node writes to one database).
Its work competes with those writes for CPU, WAL and locks: each write with N hooks becomes N
delivery rows, N requests and N result updates, which on a small machine costs more than the
write itself. So while writes arrive faster than `defer_above` per second the engine holds
back — dispatching and delivering nothing — for at most `max_defer` seconds from the moment it
began to hold; then it catches up at full speed even if the writes go on. The hold ends as
soon as the rate falls below the threshold.

The effect: at ordinary rates nothing waits (a delivery leaves milliseconds after its write);
a burst of writes (an import, a script) runs at full speed and its deliveries follow it, late
by at most `max_defer` seconds. Nothing is lost or reordered, only delayed: the deliveries are
rows in PostgreSQL (or change-log rows not yet dispatched) all the while.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

WINDOW = 0.25  # seconds of notifications the rate is measured over


class WritePressure:
    def __init__(self, defer_above: float, max_defer: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.defer_above = defer_above  # writes/s; 0 or less: never hold back
        self.max_defer = max_defer
        self.clock = clock
        self._writes: deque[float] = deque()
        self._held_since: float | None = None

    def note_write(self) -> None:
        """One change-log notification arrived."""
        now = self.clock()
        self._writes.append(now)
        self._forget(now)

    def rate(self) -> float:
        """Writes per second over the last WINDOW seconds."""
        self._forget(self.clock())
        return len(self._writes) / WINDOW

    def hold(self) -> float:
        """How long the engine should hold back from now (0: go ahead). Starts the hold when
        the writes are busy, ends it when they are not."""
        if self.defer_above <= 0 or self.max_defer <= 0 or self.rate() <= self.defer_above:
            self._held_since = None
            return 0.0
        now = self.clock()
        if self._held_since is None:
            self._held_since = now
        return max(0.0, self._held_since + self.max_defer - now)

    def _forget(self, now: float) -> None:
        writes = self._writes
        while writes and writes[0] <= now - WINDOW:
            writes.popleft()
