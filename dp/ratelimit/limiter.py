"""One request (or WebSocket message) against a set of windows: count it, judge it, settle.

A `Policy` is what one plugin config means at run time: its windows (ordered by limit, as Kong
stores them), window type, and counters (local or Redis, by namespace, see `registry`). `hit`
counts the hit on every window at once (one Redis round trip), then walks the windows in order:
the first whose rate exceeds its limit denies. As in Kong, windows after the one that denied do
not count the denied request, and with `disable_penalty` (sliding windows only) the denying one
does not either; those increments are taken back (`undo`).

This runs on every request of a limited route, so the per-request objects are plain slotted
classes (a frozen dataclass pays for `object.__setattr__` on each field) and what a config
implies (window sizes, sliding or not, local or not) is worked out once, in the `Policy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import floor
from typing import Any

from dp.ratelimit.local import LocalCounters, LocalWindow
from dp.ratelimit.redis_store import RedisCounters
from dp.ratelimit.windows import number, previous_weight, window_name

Counters = LocalCounters | RedisCounters


@dataclass(frozen=True, slots=True)
class Window:
    size: float
    limit: float
    name: str  # second, minute, ... or the number of seconds
    # made once, not per request: the header names and the limit as headers show it
    limit_header: str = ""
    remaining_header: str = ""
    limit_text: str = ""


class WindowState:
    """One window's rate for one hit."""

    __slots__ = ("value", "window")

    def __init__(self, window: Window, value: float) -> None:
        self.window = window
        self.value = value  # the rate compared with the limit

    def __repr__(self) -> str:
        return f"WindowState({self.window.name}, {self.value})"


class Verdict:
    """A hit judged on every window."""

    __slots__ = ("exceeded", "states")

    def __init__(self, states: tuple[WindowState, ...], exceeded: WindowState | None) -> None:
        self.states = states
        self.exceeded = exceeded  # the first window over its limit, if any

    def __repr__(self) -> str:
        return f"Verdict({self.states!r}, exceeded={self.exceeded!r})"


def windows_of(limits: list[Any], sizes: list[Any]) -> tuple[Window, ...]:
    out = []
    for limit, size in zip(limits, sizes, strict=True):
        name = window_name(float(size))
        out.append(Window(float(size), float(limit), name, f"X-RateLimit-Limit-{name}",
                          f"X-RateLimit-Remaining-{name}", str(number(float(limit)))))
    return tuple(out)


@dataclass(slots=True)
class Policy:
    windows: tuple[Window, ...]
    window_type: str
    disable_penalty: bool
    counters: Counters
    sizes: list[float] = field(init=False)
    sliding: bool = field(init=False)
    local: bool = field(init=False)  # counted in this process: `hit_nowait` is all there is
    single: bool = field(init=False)  # one window, the usual config: `_settle_one`
    one: LocalWindow | None = field(init=False)  # local and single: its window's counts

    def __post_init__(self) -> None:
        self.sizes = [w.size for w in self.windows]
        self.sliding = self.window_type == "sliding"
        self.local = isinstance(self.counters, LocalCounters)
        self.single = len(self.windows) == 1
        self.one = None
        if self.single and isinstance(self.counters, LocalCounters):
            self.one = self.counters.window(self.sizes[0])

    async def hit(self, key: str, now: float) -> Verdict:
        """Count one hit for `key` now and judge it."""
        counters = self.counters
        if isinstance(counters, RedisCounters):
            counts = await counters.add(key, self.sizes, now)
        else:
            counts = counters.add_many(key, self.sizes, now)
        return self._settle(key, counts, now)

    def hit_ready(self, key: str, now: float) -> Verdict | None:
        """`hit` on Redis counters when it has nothing to wait for (RedisCounters.add_ready),
        else None, with nothing counted: then await `hit`."""
        redis: RedisCounters = self.counters  # type: ignore[assignment]
        counts = redis.add_ready(key, self.sizes, now)
        return None if counts is None else self._settle(key, counts, now)

    def hit_one_ready(self, key: str, now: float) -> float | None:
        """`hit_one` on Redis counters when nothing has to wait (RedisCounters.add_one_ready),
        else None, with nothing counted: then await `hit`."""
        redis: RedisCounters = self.counters  # type: ignore[assignment]
        count = redis.add_one_ready(key, self.sizes[0], now)
        return None if count is None else self._rate_one(count, now)

    def hit_nowait(self, key: str, now: float) -> Verdict:
        """`hit` for callers that cannot wait (frame handlers): Redis is updated later.
        With local counters it is `hit` without the coroutine."""
        if self.local:  # (`local` says which, without an isinstance per request)
            if self.single:
                return self.judge_one(key, self.hit_one(key, now), now)
            local: LocalCounters = self.counters  # type: ignore[assignment]
            counts = local.add_many(key, self.sizes, now)
        else:
            redis: RedisCounters = self.counters  # type: ignore[assignment]
            counts = redis.add_nowait(key, self.sizes, now)
        return self._settle(key, counts, now)

    def _settle(self, key: str, counts: list[tuple[float, float]], now: float) -> Verdict:
        if self.single:
            return self._settle_one(key, counts[0], now)
        states: list[WindowState] = []
        first = -1
        sliding = self.sliding
        for window, (current, previous) in zip(self.windows, counts, strict=True):
            if first >= 0:  # not counted after the denying window: shown without this hit
                current -= 1
            value = current
            if sliding and previous:
                value += previous * previous_weight(now, window.size, "sliding")
            state = WindowState(window, value)
            states.append(state)
            if first < 0 and value > window.limit:
                first = len(states) - 1
        if first < 0:
            return Verdict(tuple(states), None)
        keep = first + 1
        if self.disable_penalty and sliding:
            keep = first
        if keep < len(self.windows):
            self.counters.undo(key, self.sizes[keep:], now)
        return Verdict(tuple(states), states[first])

    def _settle_one(self, key: str, count: tuple[float, float], now: float) -> Verdict:
        """`_settle` for the usual config, one window: no lists, no loop."""
        return self.judge_one(key, self._rate_one(count, now), now)

    def _rate_one(self, count: tuple[float, float], now: float) -> float:
        value, previous = count
        if previous and self.sliding:
            size = self.sizes[0]  # windows.previous_weight, inlined: this runs per request
            weight = (size - (now - floor(now / size) * size)) / size
            if weight > 0:
                value += previous * weight
        return value

    def hit_one(self, key: str, now: float) -> float:
        """Count one hit on a local one-window policy (`one`); the rate to compare with the
        window's limit. An allowed request needs nothing more (no Verdict made); one over the
        limit is settled with `judge_one`. (`_rate_one` inlined, from where the window began;
        floats only: the fast float operations.)"""
        window: LocalWindow = self.one  # type: ignore[assignment]
        slot = window.add(key, now)
        value = slot.current
        if slot.previous and self.sliding:
            size = window.size
            weight = (size - (now - window.begins)) / size
            if weight > 0.0:
                value += slot.previous * weight
        return value

    def judge_one(self, key: str, value: float, now: float) -> Verdict:
        """The verdict of a one-window hit whose rate is `value` (see `hit_one`)."""
        window = self.windows[0]
        state = WindowState(window, value)
        if value <= window.limit:
            return Verdict((state,), None)
        if self.disable_penalty and self.sliding:
            self.counters.undo(key, self.sizes, now)
        return Verdict((state,), state)
