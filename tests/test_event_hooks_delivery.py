"""Durable delivery: retries, 410, Retry-After, redelivery by id, snooze/on_change, emit, and
exactly-once dispatch with several engines on one database."""

from __future__ import annotations

import time

import pytest

from cp.hooks.config import HooksConfig
from cp.hooks.deliver import backoff, next_state
from cp.hooks.engine import HookEngine
from cp.hooks.outbound import Destinations, Outbound
from cp.hooks.outcome import Outcome
from tests.hook_fixtures import FAST, running_engine, webhook
from tests.polling import eventually as until

pytest_plugins = ["tests.hook_fixtures"]  # hooked, receiver


async def deliveries(hooked, hook) -> list[dict]:
    status, body = await hooked.get(f"/event-hooks/{hook['id']}/deliveries")
    assert status == 200
    return [d for d in body["data"] if d["kind"] == "event"]


async def test_failing_receiver_is_retried_until_it_answers_2xx(hooked, receiver):
    hook = await webhook(hooked, receiver)
    receiver.script(500, 503, 404)
    await hooked.post("/consumers", {"username": "retry-me"})

    async def done():
        ds = await deliveries(hooked, hook)
        return ds and ds[0]["status"] == "succeeded" and ds[0]

    delivery = await until(done, what="delivery succeeded")
    assert [a["response_status"] for a in delivery["attempts"]] == [500, 503, 404, 200]
    assert delivery["attempts"][0]["error"] == "receiver answered 500"
    assert all(a["latency_ms"] >= 0 for a in delivery["attempts"])
    got = receiver.events()
    assert len(got) == 4 and len({r.headers["webhook-id"] for r in got}) == 1
    assert got[0].headers["webhook-id"] == delivery["id"]


async def test_retry_after_is_honoured(hooked, receiver):
    hook = await webhook(hooked, receiver)
    receiver.script((503, {"Retry-After": "1"}))
    await hooked.post("/consumers", {"username": "later"})

    async def done():
        ds = await deliveries(hooked, hook)
        return ds and ds[0]["status"] == "succeeded" and ds[0]

    delivery = await until(done, what="second attempt")
    first, second = delivery["attempts"]
    assert second["at"] - first["at"] >= 0.95


async def test_410_disables_the_hook_until_it_is_changed(hooked, receiver):
    hook = await webhook(hooked, receiver)
    receiver.script(410)
    await hooked.post("/consumers", {"username": "gone"})

    async def disabled():
        _, body = await hooked.get(f"/event-hooks/{hook['id']}/deliveries")
        return body["disabled"]

    assert "410" in await until(disabled, what="hook disabled")
    (failed,) = await deliveries(hooked, hook)
    assert failed["status"] == "failed" and failed["last_status"] == 410
    await hooked.post("/consumers", {"username": "while-disabled"})
    await hooked.admin.patch(f"/event-hooks/{hook['id']}", json={"snooze": 0})
    await until(lambda: len(receiver.pings()) == 2, what="ping after the update")
    await hooked.post("/consumers", {"username": "enabled-again"})
    got = await until(lambda: len(receiver.events()) == 2 and receiver.events())
    assert got[-1].json()["entity"]["username"] == "enabled-again"
    assert "while-disabled" not in str([r.json() for r in receiver.events()])


async def test_redirects_are_not_followed_and_count_as_failures(hooked, receiver):
    hook = await webhook(hooked, receiver)
    receiver.script((302, {"Location": receiver.url + "/elsewhere"}))
    await hooked.post("/consumers", {"username": "moved"})

    async def done():
        ds = await deliveries(hooked, hook)
        return ds and ds[0]["status"] == "succeeded" and ds[0]

    delivery = await until(done)
    assert [a["response_status"] for a in delivery["attempts"]] == [302, 200]
    assert all(r.path == "/hook" for r in receiver.got())


async def test_permanent_failure_then_manual_retry(hooked, receiver):
    _, hook = await hooked.post("/event-hooks", {
        "source": "crud", "event": "consumers", "handler": "webhook-custom",
        "config": {"method": "POST", "url": receiver.url, "body": "{{ broken"}})
    await hooked.post("/consumers", {"username": "x"})

    async def failed():
        ds = await deliveries(hooked, hook)
        return ds and ds[0]["status"] == "failed" and ds[0]

    delivery = await until(failed)
    assert delivery["last_error"].startswith("template error")
    await hooked.admin.patch(f"/event-hooks/{hook['id']}", json={"config": {"body": "fixed"}})
    r = await hooked.admin.post(
        f"/event-hooks/{hook['id']}/deliveries/{delivery['id']}/retry")
    assert r.status == 202
    (got,) = await until(receiver.events)
    assert got.body == b"fixed" and got.headers["webhook-id"] == delivery["id"]
    r = await hooked.admin.post(f"/event-hooks/{hook['id']}/deliveries/nope/retry")
    assert r.status == 404


async def test_connect_errors_are_retried(hooked, receiver):
    _, hook = await hooked.post("/event-hooks", {
        "source": "crud", "event": "consumers", "handler": "webhook",
        "config": {"url": "http://127.0.0.1:1/closed"}})
    await hooked.post("/consumers", {"username": "nobody-listens"})

    async def retried():
        ds = await deliveries(hooked, hook)
        return ds and len(ds[0]["attempts"]) >= 2 and ds[0]

    delivery = await until(retried)
    assert delivery["status"] == "pending"
    assert delivery["attempts"][0]["error"].startswith("connect error")
    assert delivery["attempts"][0]["response_status"] is None


def test_backoff_and_retry_period():
    config = HooksConfig(retry_base=5, retry_max_delay=3600)
    assert 4 <= backoff(1, config) <= 6 and 16 <= backoff(2, config) <= 24
    assert backoff(30, config) <= 3600 * 1.2
    failure = Outcome(ok=False, status=500, error="x")
    assert next_state(failure, 1, 100.0, config)[0] == "pending"
    assert next_state(failure, 1, 1.0, config) == ("failed", 0.0)  # retry period over
    later = Outcome(ok=False, status=429, retry_after=60.0)
    assert next_state(later, 1, 1000.0, config)[1] >= 60
    assert next_state(Outcome(ok=False, status=410, gone=True, retry=False), 1, 1e6,
                      config)[0] == "failed"
    assert next_state(Outcome(ok=True, status=204), 1, 0, config) == ("succeeded", 0.0)


async def test_destination_lists(receiver):
    assert Destinations("", "127.0.0.0/8").host_error("127.0.0.1")
    assert Destinations("*.example.com", "").host_error("evil.test")
    assert Destinations("*.example.com", "").host_error("api.example.com") is None
    assert Destinations("10.0.0.0/8", "").ip_allowed("10.1.2.3")
    assert not Destinations("10.0.0.0/8", "").ip_allowed("127.0.0.1")
    denied = Outbound(deny="127.0.0.0/8")
    named = Outbound(deny="127.0.0.0/8")
    try:
        out = await denied.send("POST", receiver.url, {}, b"{}", ssl_verify=False, timeout=2)
        assert not out.ok and not out.retry
        assert "denied" in out.error or "not allowed" in out.error
        url = receiver.url.replace("127.0.0.1", "localhost")
        out = await named.send("POST", url, {}, b"{}", ssl_verify=False, timeout=2)
        assert not out.ok and not out.retry
        assert "denied" in out.error or "not allowed" in out.error
    finally:
        await denied.close()
        await named.close()
    assert receiver.got() == []


async def test_snooze_drops_events_within_the_window(hooked, receiver):
    hook = await webhook(hooked, receiver, snooze=3600)
    for name in ("first", "second", "third"):
        await hooked.post("/consumers", {"username": name})
    await until(lambda: receiver.events())
    await until(lambda: hooked.engine.config and _cursor_done(hooked), what="dispatched")
    assert [r.json()["entity"]["username"] for r in receiver.events()] == ["first"]
    async with hooked.store.pool.connection() as conn:  # the window ends (as if 2 h passed)
        await conn.execute("UPDATE event_hook_throttle SET fired_at = fired_at - interval '2h'")
    await hooked.post("/consumers", {"username": "fourth"})
    got = await until(lambda: len(receiver.events()) == 2 and receiver.events())
    assert got[-1].json()["entity"]["username"] == "fourth"
    assert len(await deliveries(hooked, hook)) == 2


async def _cursor_done(hooked) -> bool:
    async with hooked.store.pool.connection() as conn:
        row = await (await conn.execute(
            "SELECT (SELECT last_change FROM event_hook_cursor) = "
            "(SELECT max(id) FROM change_log)")).fetchone()
    return bool(row[0])


RLA = {"consumer": {"id": "c1"}, "ip": "1.2.3.4", "service": {"id": "s1"}, "rate": 11,
       "limit": 10, "window": "second"}


async def test_on_change_uses_the_unique_fields_and_survives_restarts(hooked, receiver, dsn):
    await webhook(hooked, receiver, source="rate-limiting-advanced",
                  event="rate-limit-exceeded", on_change=True)
    engine = hooked.engine
    assert await engine.emit("rate-limiting-advanced", "rate-limit-exceeded", RLA) == 1
    assert await engine.emit("rate-limiting-advanced", "rate-limit-exceeded",
                             {**RLA, "rate": 12}) == 0  # same consumer/ip/service
    other = {**RLA, "ip": "5.6.7.8"}
    assert await engine.emit("rate-limiting-advanced", "rate-limit-exceeded", other) == 1
    second = HookEngine(dsn, FAST)  # another node, same database: same state
    await second.start()
    try:
        assert await second.emit("rate-limiting-advanced", "rate-limit-exceeded", other) == 0
        assert await second.emit("rate-limiting-advanced", "rate-limit-exceeded", RLA) == 1
    finally:
        await second.stop()
    got = await until(lambda: len(receiver.events()) == 3 and receiver.events())
    assert [r.json()["ip"] for r in got] == ["1.2.3.4", "5.6.7.8", "1.2.3.4"]
    assert got[0].json()["source"] == "rate-limiting-advanced"
    with pytest.raises(ValueError, match="no 'nope' event"):
        await engine.emit("balancer", "nope", {})


async def test_snooze_with_on_change_is_per_digest(hooked, receiver):
    await webhook(hooked, receiver, source="rate-limiting-advanced",
                  event="rate-limit-exceeded", on_change=True, snooze=3600)
    emit = hooked.engine.emit
    other = {**RLA, "ip": "9.9.9.9"}
    assert [await emit("rate-limiting-advanced", "rate-limit-exceeded", d)
            for d in (RLA, other, RLA, other)] == [1, 1, 0, 0]


async def test_engine_down_writes_are_delivered_and_hooks_see_only_later_writes(
        store, dsn, receiver):
    async with running_engine(store, dsn, down=True) as hooked:
        await hooked.post("/consumers", {"username": "before-the-hook"})
        await hooked.post("/event-hooks", {"source": "crud", "event": "consumers",
                                           "handler": "webhook",
                                           "config": {"url": receiver.url}})
        for i in range(5):
            await hooked.post("/consumers", {"username": f"while-down-{i}"})
        assert receiver.got() == []
        await hooked.engine.start()
        got = await until(lambda: len(receiver.events()) == 5 and receiver.events())
        assert [r.json()["entity"]["username"] for r in got] == [
            f"while-down-{i}" for i in range(5)]
        assert len(receiver.pings()) == 1


async def test_a_hooks_deliveries_arrive_in_commit_order_across_batches_and_workers(
        store, dsn, receiver):
    # Small batches and many loops: the backlog is claimed by several loops at once.
    async with running_engine(store, dsn, down=True, workers=4, batch=3) as hooked:
        status, _ = await hooked.post("/event-hooks", {
            "source": "crud", "event": "consumers", "handler": "webhook",
            "config": {"url": receiver.url}})
        assert status == 201
        names = [f"queued-{i}" for i in range(40)]
        for name in names:
            await hooked.post("/consumers", {"username": name})
        await hooked.engine.start()
        await until(lambda: len(receiver.events()) == 40, what="40 events")
        assert [r.json()["entity"]["username"] for r in receiver.events()] == names


async def test_two_engines_on_one_database_deliver_each_event_once(hooked, receiver, dsn):
    await webhook(hooked, receiver)
    other = HookEngine(dsn, HooksConfig(**{**FAST.__dict__, "node_id": "other"}))
    await other.start()
    try:
        for i in range(30):
            await hooked.post("/consumers", {"username": f"c{i}"})
        await until(lambda: len(receiver.events()) >= 30, what="30 events")
        await until(lambda: _cursor_done(hooked))
        async with hooked.store.pool.connection() as conn:
            await until(lambda: _all_done(conn), what="no pending deliveries")
        got = receiver.events()
        assert len(got) == 30
        assert len({r.headers["webhook-id"] for r in got}) == 30
        assert [r.json()["entity"]["username"] for r in got] == [f"c{i}" for i in range(30)]
        assert len(receiver.pings()) == 1
    finally:
        await other.stop()


async def _all_done(conn) -> bool:
    row = await (await conn.execute(
        "SELECT count(*) FROM event_hook_deliveries WHERE status = 'pending'")).fetchone()
    return row[0] == 0


async def test_writes_are_not_slowed_by_a_hanging_receiver(hooked, receiver):
    await webhook(hooked, receiver)
    receiver.hold()
    try:
        started = time.perf_counter()
        for i in range(10):
            status, _ = await hooked.post("/consumers", {"username": f"fast{i}"})
            assert status == 201
        assert time.perf_counter() - started < 2.0
    finally:
        receiver.release()
    await until(lambda: len(receiver.events()) == 10)
