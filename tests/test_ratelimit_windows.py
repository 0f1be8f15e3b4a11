"""rate-limiting-advanced's window arithmetic and local counting, with time given explicitly.

Everything here is a pure function of `now` (or a LocalCounters fed `now`), so the clock is the
test's: no sleeping, and windows are crossed by moving `now`.
"""

from __future__ import annotations

import math
import random

import pytest

from dp.plugins.pdk import header_key, header_line
from dp.ratelimit import windows as w
from dp.ratelimit.exceeded import OncePerWindow, payload
from dp.ratelimit.headers import OneWindowHeaders, client_headers, retry_after
from dp.ratelimit.limiter import Policy, Verdict, WindowState, windows_of
from dp.ratelimit.local import LocalCounters

T0 = 1_699_999_200.0  # a multiple of 3600 (so of 60 and 10): a window start for those sizes


def test_windows_are_aligned_on_the_epoch() -> None:
    assert w.window_start(T0 + 7.5, 10) == T0
    assert w.window_start(T0 + 10, 10) == T0 + 10
    assert w.window_start(T0 + 59.9, 60) == T0
    assert w.window_start(T0 + 0.7, 0.5) == T0 + 0.5


def test_sliding_weight_and_rate() -> None:
    # Current 2, previous 8: at the window's start the previous counts fully, halfway half.
    assert w.rate(2, 8, T0, 10, "sliding") == 10
    assert w.rate(2, 8, T0 + 5, 10, "sliding") == 6
    assert w.rate(2, 8, T0 + 7.5, 10, "sliding") == 4
    assert w.rate(2, 8, T0 + 7.5, 10, "fixed") == 2


def test_remaining_and_reset() -> None:
    assert w.remaining(10, 3.75) == 6
    assert w.remaining(10, 12) == 0
    assert w.reset_after(T0 + 3, 10, "fixed", 11, 10) == 7
    assert w.reset_after(T0 + 9.5, 10, "fixed", 11, 10) == 1  # never less than a second
    # sliding: the rest of the window plus what the excess needs to decay: 5 + 0.5/4 * 10
    assert w.reset_after(T0 + 5, 10, "sliding", 4.5, 4) == 7


@pytest.mark.parametrize(("size", "name"), [
    (1, "second"), (60, "minute"), (3600, "hour"), (86400, "day"), (2592000, "month"),
    (31536000, "year"), (30, "30"), (60.0, "minute"), (2.5, "2.5")])
def test_window_names(size: float, name: str) -> None:
    assert w.window_name(size) == name


def test_local_counters_roll_into_the_previous_window() -> None:
    c = LocalCounters()
    for _ in range(3):
        c.add("k", 10, T0 + 1)
    assert c.add("k", 10, T0 + 9) == (4, 0)
    assert c.get("k", 10, T0 + 12) == (0, 4)  # looking does not count
    assert c.add("k", 10, T0 + 12) == (1, 4)
    assert c.add("k", 10, T0 + 35) == (1, 0)  # a whole window skipped: nothing carries over
    assert c.add("other", 10, T0 + 35) == (1, 0)


def test_local_counters_forget_idle_keys() -> None:
    c = LocalCounters()
    c.add("old", 10, T0)
    c.add("new", 10, T0 + 100)
    c.sweep(T0 + 100)
    assert len(c) == 1 and c.get("new", 10, T0 + 100) == (1, 0)
    # Without being asked: when a window moves on, at most once a minute.
    for i in range(100):
        c.add(f"flood-{i}", 10, T0 + 101)
    c.add("new", 10, T0 + 105)
    assert len(c) == 101  # the same window: nothing swept
    c.add("new", 10, T0 + 200)
    assert len(c) == 1


@pytest.mark.parametrize("window_type", ["sliding", "fixed"])
@pytest.mark.parametrize("size", [1, 10, 2.5, 0.1])
def test_one_window_hits_give_the_rate_of_the_window_arithmetic(size: float,
                                                                  window_type: str) -> None:
    """A local one-window policy counts through its window's shortcut (`hit_one`: the
    window's index kept while `now` stays in it); its rate is the one `windows.rate` gives
    for counts kept the plain way (index = floor(now / size) on every hit), over times moving
    forward and back across window edges."""
    p = policy([1e9], [size], window_type)
    index, current, previous = None, 0, 0  # the plain way, for one key
    rng = random.Random(11)
    now = T0
    for _ in range(3000):
        now += rng.choice([0.0, 0.001, 0.3, size / 2, size, 2 * size, -size / 3, -1.7])
        at = math.floor(now / size)
        if at != index:
            previous = current if index == at - 1 else 0
            current, index = 0, at
        current += 1
        assert p.hit_one("k", now) == w.rate(current, previous, now, size, window_type)


def policy(limits: list[float], sizes: list[float], window_type: str = "fixed",
           disable_penalty: bool = False) -> Policy:
    return Policy(windows_of(limits, sizes), window_type, disable_penalty, LocalCounters())


def test_the_first_window_over_its_limit_denies_and_later_ones_do_not_count() -> None:
    p = policy([2, 3], [1, 60])
    assert p.hit_nowait("k", T0).exceeded is None
    assert p.hit_nowait("k", T0).exceeded is None
    third = p.hit_nowait("k", T0)
    assert third.exceeded is not None and third.exceeded.window.name == "second"
    assert [s.value for s in third.states] == [3, 2]  # the minute did not count it
    assert p.counters.get("k", 60, T0) == (2, 0)  # type: ignore[union-attr]
    fourth = p.hit_nowait("k", T0 + 1)
    assert fourth.exceeded is None and [s.value for s in fourth.states] == [1, 3]
    fifth = p.hit_nowait("k", T0 + 1)
    assert fifth.exceeded is not None and fifth.exceeded.window.name == "minute"


def test_sliding_window_counts_denied_requests_unless_told_not_to() -> None:
    for disable_penalty, expected in ((False, 6), (True, 2)):
        p = policy([2], [10], "sliding", disable_penalty)
        for _ in range(6):
            p.hit_nowait("k", T0 + 1)
        assert p.counters.get("k", 10, T0 + 1)[0] == expected  # type: ignore[union-attr]
    # With the penalty, 6 in the previous window still weigh 3 halfway through the next one.
    p = policy([2], [10], "sliding")
    for _ in range(6):
        p.hit_nowait("k", T0 + 1)
    assert p.hit_nowait("k", T0 + 15).exceeded is not None
    q = policy([2], [10], "sliding", disable_penalty=True)
    for _ in range(6):
        q.hit_nowait("k", T0 + 1)
    assert q.hit_nowait("k", T0 + 15).exceeded is None  # 2 * 0.5 + 1 = 2


def test_headers_name_each_window_and_the_tightest_once() -> None:
    p = policy([5, 100], [60, 3600])
    verdict = p.hit_nowait("k", T0 + 20)
    h = client_headers(verdict, T0 + 20, "fixed")
    assert h["X-RateLimit-Limit-minute"] == "5" and h["X-RateLimit-Remaining-minute"] == "4"
    assert h["X-RateLimit-Limit-hour"] == "100" and h["X-RateLimit-Remaining-hour"] == "99"
    assert (h["RateLimit-Limit"], h["RateLimit-Remaining"], h["RateLimit-Reset"]) == (
        "5", "4", "40")
    # equal remaining: the larger window is the one shown
    tie = policy([1, 1], [10, 30]).hit_nowait("k", T0)
    h = client_headers(tie, T0, "fixed")
    assert (h["RateLimit-Limit"], h["RateLimit-Remaining"], h["RateLimit-Reset"]) == (
        "1", "0", "30")
    assert h["X-RateLimit-Limit-10"] == "1" and h["X-RateLimit-Remaining-30"] == "0"


def test_retry_after_jitter_stays_within_its_bound() -> None:
    rng = random.Random(7)
    seen = {retry_after(9, 5, rng) for _ in range(200)}
    assert seen <= set(range(9, 15)) and len(seen) > 3
    assert retry_after(9, 0, rng) == 9


def test_once_per_window() -> None:
    once = OncePerWindow()
    key = ("ns", "consumer-1", "10.0.0.1", "service-1")
    assert once.first(key, 10, T0 + 1)
    assert not once.first(key, 10, T0 + 9.9)
    assert once.first(("ns", "consumer-1", "10.0.0.2", "service-1"), 10, T0 + 2)
    assert once.first(key, 10, T0 + 10)  # the next window
    assert once.first(key, 60, T0 + 10)  # another window size of the same plugin


def test_event_payload_shape() -> None:
    data = payload(None, "10.0.0.1", {"id": "s", "name": "svc"}, 6.0, 5.0, "minute")
    assert data == {"consumer": {}, "ip": "10.0.0.1", "service": {"id": "s", "name": "svc"},
                    "rate": 6, "limit": 5, "window": "minute"}


@pytest.mark.parametrize("window_type", ["sliding", "fixed"])
@pytest.mark.parametrize("size", [1, 10, 60, 2.5])
def test_rendered_headers_of_allowed_requests_match_client_headers(size: float,
                                                                     window_type: str) -> None:
    """The per-config rendering (reset line cached per second) sends exactly the headers
    client_headers gives, in its order, for any allowed rate at any time; here over times
    moving forward and back across window edges and whole seconds."""
    (window,) = windows_of([20], [size])
    rendered = OneWindowHeaders(window, window_type)
    rng = random.Random(7)
    now = T0
    for _ in range(2000):
        now += rng.choice([0.0, 0.001, 0.3, 0.999, 1.0, 2.5, -1.7, size])
        value = rng.choice([0, 1, 7.25, 19.999, 20])
        expected = client_headers(Verdict((WindowState(window, value),), None), now,
                                  window_type)
        assert list(rendered.allowed(value, now).items()) == [
            (header_key(name), header_line(name, text)) for name, text in expected.items()]
