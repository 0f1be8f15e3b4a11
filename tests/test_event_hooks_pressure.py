"""Deliveries hold back during a burst of Admin API writes, for a bounded time (cp/hooks/pressure).

The hold logic is checked on an injected clock; the behaviour end to end with a real Admin API,
a real engine on PostgreSQL and a real receiver: a burst's deliveries arrive after it, every
one of them, and a burst longer than `max_defer` gets its deliveries while it goes on.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from cp.hooks.pressure import WINDOW, WritePressure
from tests.hook_fixtures import Hooked, running_engine, webhook
from tests.polling import eventually as until

pytest_plugins = ["tests.hook_fixtures"]  # receiver


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def writes(pressure: WritePressure, clock: Clock, per_second: float, seconds: float) -> None:
    for _ in range(int(per_second * seconds)):
        clock.now += 1 / per_second
        pressure.note_write()


def test_the_hold_starts_with_a_burst_is_bounded_and_ends_with_it() -> None:
    clock = Clock()
    pressure = WritePressure(defer_above=100, max_defer=2.0, clock=clock)
    writes(pressure, clock, 80, 1.0)  # ordinary traffic: never held
    assert pressure.hold() == 0
    writes(pressure, clock, 400, 0.5)  # a burst: held for max_defer from now on
    assert pressure.hold() == pytest.approx(2.0)
    writes(pressure, clock, 400, 1.5)
    assert pressure.hold() == pytest.approx(0.5)
    writes(pressure, clock, 400, 1.0)  # still a burst, but held long enough: catch up
    assert pressure.hold() == 0
    clock.now += WINDOW  # the burst is over: the next one is held again
    assert pressure.rate() == 0 and pressure.hold() == 0
    writes(pressure, clock, 400, 0.5)
    assert pressure.hold() == pytest.approx(2.0)


def test_a_threshold_of_zero_never_holds() -> None:
    clock = Clock()
    pressure = WritePressure(defer_above=0, max_defer=5.0, clock=clock)
    writes(pressure, clock, 5000, 1.0)
    assert pressure.hold() == 0


async def burst(hooked: Hooked, prefix: str, seconds: float, receiver) -> tuple[int, int]:
    """Create consumers, 8 requests in flight, for `seconds`; (written, delivered meanwhile)."""
    written = 0
    deadline = time.monotonic() + seconds

    async def writer(k: int) -> None:
        nonlocal written
        i = 0
        while time.monotonic() < deadline:
            status, body = await hooked.post("/consumers", {"username": f"{prefix}{k}-{i}"})
            assert status == 201, body
            written += 1
            i += 1

    await asyncio.gather(*(writer(k) for k in range(8)))
    return written, len(receiver.events())


async def test_a_bursts_deliveries_follow_it_every_one_once(store, dsn, receiver):
    async with running_engine(store, dsn, defer_above=20, max_defer=60) as hooked:
        await webhook(hooked, receiver)
        written, delivered = await burst(hooked, "b", 1.5, receiver)
        assert written > 100, "the burst was not a burst"
        # At most the writes before the rate crossed the threshold went out meanwhile.
        assert delivered <= 10, (delivered, written)
        await until(lambda: len(receiver.events()) >= written, 30, "every delivery")
        names = [e.json()["entity"]["username"] for e in receiver.events()]
        assert len(names) == len(set(names)) == written


async def test_a_burst_longer_than_max_defer_gets_its_deliveries_while_it_lasts(
        store, dsn, receiver):
    async with running_engine(store, dsn, defer_above=20, max_defer=0.5) as hooked:
        await webhook(hooked, receiver)
        written, delivered = await burst(hooked, "long", 3.0, receiver)
        assert written > 100, "the burst was not a burst"
        assert delivered > 10, (delivered, written)
        await until(lambda: len(receiver.events()) >= written, 30, "every delivery")
