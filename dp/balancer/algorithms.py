"""Balancing algorithms: which usable target gets the next request.

Each takes the upstream's target list once and answers `pick(key, avoid)`; `avoid` holds the
targets a retry already tried (they are used again only when nothing else is usable).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Collection, Sequence

from dp.balancer.targets import Target


class RoundRobin:
    """Smooth weighted round-robin: over a cycle each target gets its weight's share, spread
    out rather than in bursts (a 2:1 pair gives a, b, a, a, b, a ...)."""

    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets = list(targets)
        self.current = [0] * len(self.targets)

    def pick(self, key: str | None = None, avoid: Collection[Target] = ()) -> Target | None:
        best = -1
        total = 0
        current = self.current
        for i, t in enumerate(self.targets):
            if not t.usable or (avoid and t in avoid):
                continue
            current[i] += t.weight
            total += t.weight
            if best < 0 or current[i] > current[best]:
                best = i
        if best < 0:
            return self.pick(key) if avoid else None
        current[best] -= total
        return self.targets[best]


def _point(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


class ConsistentHash:
    """A hash ring of `slots` points shared out by weight; a key goes to the first point at or
    after its hash whose target is usable. Adding or removing a target moves only its share."""

    def __init__(self, targets: Sequence[Target], slots: int = 10000) -> None:
        self.targets = list(targets)
        self.fallback = RoundRobin(targets)
        total = sum(t.weight for t in self.targets if t.weight > 0) or 1
        ring: list[tuple[int, int]] = []
        for index, t in enumerate(self.targets):
            points = max(1, round(slots * t.weight / total)) if t.weight > 0 else 0
            ring.extend((_point(f"{t.name}#{i}"), index) for i in range(points))
        ring.sort()
        self.points = [p for p, _ in ring]
        self.owners = [i for _, i in ring]

    def pick(self, key: str | None = None, avoid: Collection[Target] = ()) -> Target | None:
        if key is None or not self.points:
            return self.fallback.pick(None, avoid)
        start = bisect.bisect_left(self.points, _point(key))
        n = len(self.points)
        spare = None
        for step in range(n):
            t = self.targets[self.owners[(start + step) % n]]
            if t.usable:
                if not avoid or t not in avoid:
                    return t
                spare = spare or t
            if step > 64 and spare is None and not any(x.usable for x in self.targets):
                return None
        return spare


class LeastConnections:
    """Fewest connections in flight relative to weight; ties go round-robin."""

    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets = list(targets)
        self.turn = 0

    def pick(self, key: str | None = None, avoid: Collection[Target] = ()) -> Target | None:
        best: Target | None = None
        best_load = 0.0
        n = len(self.targets)
        self.turn = (self.turn + 1) % (n or 1)
        for step in range(n):
            t = self.targets[(self.turn + step) % n]
            if not t.usable or (avoid and t in avoid):
                continue
            load = (t.active + 1) / t.weight
            if best is None or load < best_load:
                best, best_load = t, load
        if best is None and avoid:
            return self.pick(key)
        return best
