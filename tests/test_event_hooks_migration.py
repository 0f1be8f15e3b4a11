"""Migration 0006 on a database that already has deliveries: their attempts move into the
delivery rows (in order, with every field) and GET /event-hooks/{id}/deliveries shows them
as before."""

from __future__ import annotations

import uuid

import psycopg

from cp import migrate
from cp.store import Store
from tests.conftest import database_at, serve_admin

DELIVERY = str(uuid.uuid4())
HOOK = str(uuid.uuid4())


async def test_0006_moves_existing_attempts_into_their_deliveries(pg):
    async with database_at(pg, 5) as dsn:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await _old_delivery_with_two_attempts(conn)
            assert [m.version for m in await migrate.up(conn)] == [
                m.version for m in migrate.available() if m.version > 5]
            row = await (await conn.execute(
                "SELECT tries, status FROM event_hook_deliveries WHERE id = %s",
                (DELIVERY,))).fetchone()
            exists = await (await conn.execute(
                "SELECT to_regclass('event_hook_attempts')")).fetchone()
        tries, status = row
        assert status == "succeeded" and exists == (None,)
        assert [(t["n"], t["response_status"], t["error"], t["latency_ms"], t["node_id"])
                for t in tries] == [(1, 503, "receiver answered 503", 12.346, "a"),
                                    (2, 200, None, 3.0, "b")]
        assert tries[1]["at"] - tries[0]["at"] == 5.0
        await _shown_by_the_admin_api(dsn, tries)


async def _old_delivery_with_two_attempts(conn: psycopg.AsyncConnection) -> None:
    await conn.execute(
        "INSERT INTO event_hooks (id, created_at, entity) VALUES (%s, 0, %s)",
        (HOOK, psycopg.types.json.Jsonb({
            "id": HOOK, "source": "crud", "event": "consumers", "handler": "log",
            "config": {}, "created_at": 0, "updated_at": 0, "on_change": None,
            "snooze": None})))
    await conn.execute(
        "INSERT INTO event_hook_deliveries (id, hook_id, kind, source, event, payload, status, "
        "attempts, expires_at, finished_at) VALUES (%s, %s, 'event', 'crud', 'consumers', "
        "'{}', 'succeeded', 2, now() + interval '1 day', now())", (DELIVERY, HOOK))
    await conn.execute(
        "INSERT INTO event_hook_attempts (delivery_id, n, started_at, latency_ms, "
        "response_status, error, node_id) VALUES "
        "(%s, 2, '2026-01-01 00:00:05+00', 3, 200, NULL, 'b'), "
        "(%s, 1, '2026-01-01 00:00:00+00', 12.3456, 503, 'receiver answered 503', 'a')",
        (DELIVERY, DELIVERY))


async def _shown_by_the_admin_api(dsn: str, tries: list[dict]) -> None:
    from aiohttp import ClientSession

    store = await Store.open(dsn, min_size=1, max_size=2)
    runner, url = await serve_admin(store)
    try:
        async with ClientSession(base_url=url) as session, session.get(
                f"/event-hooks/{HOOK}/deliveries") as r:
            body = await r.json()
        assert r.status == 200, body
        (shown,) = body["data"]
        assert shown["id"] == DELIVERY and shown["attempts"] == tries
        assert shown["attempt_count"] == 2
    finally:
        await runner.cleanup()
        await store.close()
