"""Counters in this process's memory: the `local` strategy, and what a data plane falls back on
when Redis is away.

One slot per (window size, key) holds the counts of the current and the previous window, keyed
by the window's index (floor(now / size), an exact integer, so float window sizes roll over
exactly). Moving into the next window shifts current to previous; skipping a window clears
both. Slots of keys not seen for two windows are swept at most once a minute (of the injected
clock), when a window moves on, so a flood of distinct identifiers does not grow memory
forever.

Every limited request counts here (or in the Redis store's local mirror), so each window size
has its own `LocalWindow`, which a one-window policy holds on to (`LocalCounters.window`): a
hit is then one lookup by key, and while `now` stays in the window the window's index, start
and end are the ones worked out when it began (no division, no floor per hit).
"""

from __future__ import annotations

import math
from math import floor

SWEEP_EVERY = 60.0


class _Slot:
    """One key's counts on one window size; `current` and `previous` are what callers read."""

    __slots__ = ("current", "index", "previous")

    def __init__(self, index: int) -> None:
        self.index = index
        self.current = 0.0
        self.previous = 0.0


class LocalWindow:
    """The slots of one window size, and where that window is now: `index`, `begins` (index *
    size, a float), and `start <= now < end`, the times for which `index` holds without
    working it out again (an empty range where float rounding makes that unsure)."""

    __slots__ = ("_counters", "begins", "end", "index", "size", "slots", "start")

    def __init__(self, counters: LocalCounters, size: float) -> None:
        self._counters = counters
        self.size = size
        self.slots: dict[str, _Slot] = {}
        self.index = 0
        self.begins = self.start = self.end = -math.inf

    def add(self, key: str, now: float, n: float = 1.0) -> _Slot:
        """Count `n` hits now; the key's slot after it (read its counts right away). (Every
        limited request comes here: no helper call unless the window or the key moved on.)"""
        if not self.start <= now < self.end:
            self._move(now)
        slot = self.slots.get(key)
        if slot is None or slot.index != self.index:
            slot = self._slot(key)
        count = slot.current + n  # (floats both, 0.0 below: the fast float operations)
        slot.current = count if count > 0.0 else 0.0
        return slot

    def _move(self, now: float) -> None:
        self.index = index = floor(now / self.size)
        self.begins = self.start = index * self.size
        self.end = (index + 1) * self.size
        if not self.start <= now < self.end:  # float rounding at an edge: no shortcut now
            self.start = self.end = -math.inf
        self._counters.maybe_sweep(now)

    def _slot(self, key: str) -> _Slot:
        """The key's slot, moved into the current window (or made)."""
        index = self.index
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = _Slot(index)
        elif slot.index != index:
            slot.previous = slot.current if slot.index == index - 1 else 0.0
            slot.current = 0.0
            slot.index = index
        return slot

    def get(self, key: str, now: float) -> tuple[float, float]:
        """(current, previous) counts without counting anything."""
        slot = self.slots.get(key)
        if slot is None:
            return 0.0, 0.0
        index = floor(now / self.size)
        if slot.index == index:
            return slot.current, slot.previous
        if slot.index == index - 1:
            return 0.0, slot.current
        return 0.0, 0.0

    def sweep(self, now: float) -> None:
        """Forget keys whose last hit is older than the previous window."""
        oldest = floor(now / self.size) - 1
        for key in [k for k, s in self.slots.items() if s.index < oldest]:
            del self.slots[key]


class LocalCounters:
    """Hit counts per key and window size, current and previous window."""

    def __init__(self) -> None:
        self._windows: dict[float, LocalWindow] = {}
        self._last_sweep = -math.inf

    def __len__(self) -> int:
        return sum(len(window.slots) for window in self._windows.values())

    def window(self, size: float) -> LocalWindow:
        """The counts of one window size (the same object for as long as these counters)."""
        found = self._windows.get(size)
        if found is None:
            found = self._windows[size] = LocalWindow(self, size)
        return found

    def get(self, key: str, size: float, now: float) -> tuple[float, float]:
        """(current, previous) window counts without counting anything."""
        return self.window(size).get(key, now)

    def maybe_sweep(self, now: float) -> None:
        if now - self._last_sweep >= SWEEP_EVERY:
            self.sweep(now)

    def sweep(self, now: float) -> None:
        """Forget keys whose last hit is older than the previous window."""
        self._last_sweep = now
        for window in self._windows.values():
            window.sweep(now)

    def add(self, key: str, size: float, now: float, n: float = 1) -> tuple[float, float]:
        """Count `n` hits now on one window size; its (current, previous) counts after it."""
        slot = self.window(size).add(key, now, n)
        return slot.current, slot.previous

    def add_many(self, key: str, sizes: list[float], now: float,
                 n: float = 1) -> list[tuple[float, float]]:
        """`add` on every window size, in order."""
        return [self.add(key, size, now, n) for size in sizes]

    def undo(self, key: str, sizes: list[float], now: float, n: float = 1) -> None:
        """Take back hits `add_many` counted (a denied request that must not count)."""
        self.add_many(key, sizes, now, -n)
