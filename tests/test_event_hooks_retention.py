"""Retention of the delivery log: finished deliveries (succeeded, failed, cancelled) are deleted
once they have been finished for longer than `retention`, with their attempts; pending ones
never are."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession

from cp.hooks import prune
from cp.hooks.config import HooksConfig
from cp.hooks.engine import HookEngine
from cp.hooks.fanout import delivery_id
from tests.hook_fixtures import FAST, Hooked, start_admin
from tests.polling import eventually as until

pytest_plugins = ["tests.hook_fixtures"]  # hooked (keeps deliveries a week), receiver

RETENTION = 3.0  # seconds: short, so the engine's own pruning is seen at work
HOUR = 3600.0


@pytest.fixture
async def pruning(store, dsn) -> AsyncIterator[Hooked]:
    """An Admin API and an engine keeping finished deliveries RETENTION seconds."""
    config = HooksConfig(**{**FAST.__dict__, "retention": RETENTION, "prune_every": 0.2})
    engine = HookEngine(dsn, config)
    await engine.start()
    runner, url = await start_admin(store, engine)
    async with ClientSession(base_url=url) as session:
        yield Hooked(session, engine, store)
    await runner.cleanup()
    await engine.stop()


async def _hook(hooked: Hooked, handler: str, config: dict) -> str:
    status, hook = await hooked.post("/event-hooks", {
        "source": "crud", "event": "consumers", "handler": handler, "config": config})
    assert status == 201, hook
    return str(hook["id"])


async def _listed(hooked: Hooked, hook_id: str) -> dict[str, dict]:
    status, body = await hooked.get(f"/event-hooks/{hook_id}/deliveries")
    assert status == 200
    return {d["id"]: d for d in body["data"] if d["kind"] == "event"}


async def _settled(hooked: Hooked, ok: str, broken: str, unreachable: str,
                   n: tuple[int, int, int]):
    """n = how many deliveries succeeded, failed for good, and are pending after a failed
    attempt: their ids once there are that many."""
    delivered = [i for i, d in (await _listed(hooked, ok)).items() if d["status"] == "succeeded"]
    failed = [i for i, d in (await _listed(hooked, broken)).items() if d["status"] == "failed"]
    retrying = [i for i, d in (await _listed(hooked, unreachable)).items()
                if d["status"] == "pending" and d["attempts"]]
    counts = (len(delivered), len(failed), len(retrying))
    return counts == n and (set(delivered), set(failed), set(retrying))


async def test_the_engine_prunes_finished_deliveries_and_keeps_pending_ones(pruning, receiver):
    ok = await _hook(pruning, "webhook", {"url": receiver.url})
    broken = await _hook(pruning, "webhook-custom", {
        "method": "POST", "url": receiver.url, "body": "{{ broken"})
    unreachable = await _hook(pruning, "webhook", {"url": "http://127.0.0.1:1/closed"})
    await pruning.post("/consumers", {"username": "old"})
    old_ok, old_failed, old_pending = await until(
        lambda: _settled(pruning, ok, broken, unreachable, (1, 1, 1)),
        what="first deliveries settled")

    async def pruned():
        listed = {i for h in (ok, broken, unreachable) for i in await _listed(pruning, h)}
        return not listed & (old_ok | old_failed) and listed

    listed = await until(pruned, timeout=RETENTION + 10, what="finished deliveries pruned")
    assert listed == old_pending  # still owed to its receiver, however long it has waited
    await pruning.post("/consumers", {"username": "recent"})
    # the second write's deliveries, finished moments ago: kept (until RETENTION has passed)
    new_ok, new_failed, both_pending = await until(
        lambda: _settled(pruning, ok, broken, unreachable, (1, 1, 2)),
        what="the second write's deliveries settled, the first's pending one still there")
    assert old_pending < both_pending and not (new_ok | new_failed) & (old_ok | old_failed)


async def _insert(hooked: Hooked, hook_id: str, *, created: float, status: str,
                  finished: float | None) -> str:
    """A delivery row as the engine leaves it, created and finished at the given times."""
    did = delivery_id(at=created)
    async with hooked.store.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO event_hook_deliveries (id, hook_id, kind, source, event, payload, "
            "status, created_at, finished_at, expires_at, tries) VALUES (%s, %s, 'event', "
            "'crud', 'consumers', '{}', %s, to_timestamp(%s), to_timestamp(%s), "
            "to_timestamp(%s) + interval '1 day', '[{\"n\": 1}]')",
            (did, hook_id, status, created, finished, created))
    return did


async def test_prune_keeps_what_is_pending_or_recently_finished(hooked):
    hook = "00000000-0000-4000-8000-000000000001"  # a hook that no longer exists: no matter
    now, old = time.time(), time.time() - 2 * HOUR
    gone = {await _insert(hooked, hook, created=old, status=s, finished=old + 60)
            for s in ("succeeded", "failed", "cancelled")}
    kept = {
        await _insert(hooked, hook, created=old, status="pending", finished=None),
        await _insert(hooked, hook, created=old, status="succeeded", finished=now - 60),
        await _insert(hooked, hook, created=now, status="succeeded", finished=now),
    }
    async with hooked.store.pool.connection() as conn:
        assert await prune.prune(conn, 0) == 0  # 0: keep forever
        assert await prune.prune(conn, 3 * HOUR) == 0
        assert await prune.prune(conn, HOUR, chunk=2) == 3  # in chunks of 2
        rows = await (await conn.execute(
            "SELECT id::text FROM event_hook_deliveries WHERE hook_id = %s", (hook,))).fetchall()
    assert {r[0] for r in rows} == kept and not gone & kept
