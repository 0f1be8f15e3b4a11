"""Counters in this process's memory: the `local` strategy, and what a data plane falls back on
when Redis is away.

One slot per (window size, key) holds the counts of the current and the previous window, keyed
by the window's index (floor(now / size), an exact integer, so float window sizes roll over
exactly). Moving into the next window shifts current to previous; skipping a window clears
both. Slots of keys not seen for two windows are swept once a minute (of the injected clock),
so a flood of distinct identifiers does not grow memory forever.

Every limited request counts here (or in the Redis store's local mirror), so slots are found
by size then key — two lookups that allocate nothing, rather than a (key, size) tuple per hit.
"""

from __future__ import annotations

import math
from math import floor

SWEEP_EVERY = 60.0


class _Slot:
    __slots__ = ("current", "index", "previous")

    def __init__(self, index: int) -> None:
        self.index = index
        self.current = 0.0
        self.previous = 0.0


class LocalCounters:
    """Hit counts per key and window size, current and previous window."""

    def __init__(self) -> None:
        self._slots: dict[float, dict[str, _Slot]] = {}  # size → key → slot
        self._last_sweep = -math.inf

    def __len__(self) -> int:
        return sum(len(by_key) for by_key in self._slots.values())

    def get(self, key: str, size: float, now: float) -> tuple[float, float]:
        """(current, previous) window counts without counting anything."""
        slot = self._slots.get(size, {}).get(key)
        if slot is None:
            return 0.0, 0.0
        index = floor(now / size)
        if slot.index == index:
            return slot.current, slot.previous
        if slot.index == index - 1:
            return 0.0, slot.current
        return 0.0, 0.0

    def _slot(self, key: str, size: float, index: int) -> _Slot:
        by_key = self._slots.setdefault(size, {})
        slot = by_key.get(key)
        if slot is None:
            slot = by_key[key] = _Slot(index)
        elif slot.index != index:
            slot.previous = slot.current if slot.index == index - 1 else 0.0
            slot.current = 0.0
            slot.index = index
        return slot

    def sweep(self, now: float) -> None:
        """Forget keys whose last hit is older than the previous window."""
        self._last_sweep = now
        for size, by_key in list(self._slots.items()):
            oldest = floor(now / size) - 1
            stale = [k for k, s in by_key.items() if s.index < oldest]
            for k in stale:
                del by_key[k]
            if not by_key:
                del self._slots[size]

    def add(self, key: str, size: float, now: float, n: float = 1) -> tuple[float, float]:
        """Count `n` hits now on one window size; its (current, previous) counts after it.
        (Every limited request comes here: no helper call unless the window rolled over.)"""
        if now - self._last_sweep >= SWEEP_EVERY:
            self.sweep(now)
        by_key = self._slots.get(size)
        slot = by_key.get(key) if by_key is not None else None
        index = floor(now / size)
        if slot is None or slot.index != index:
            slot = self._slot(key, size, index)
        count = slot.current + n
        slot.current = count if count > 0 else 0.0
        return slot.current, slot.previous

    def add_many(self, key: str, sizes: list[float], now: float,
                 n: float = 1) -> list[tuple[float, float]]:
        """`add` on every window size, in order."""
        return [self.add(key, size, now, n) for size in sizes]

    def undo(self, key: str, sizes: list[float], now: float, n: float = 1) -> None:
        """Take back hits `add_many` counted (a denied request that must not count)."""
        self.add_many(key, sizes, now, -n)
