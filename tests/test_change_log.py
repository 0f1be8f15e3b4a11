"""The change log: one row per entity written, cascades included, ids in commit order."""

from __future__ import annotations

import asyncio

import psycopg

from cp.store import NOTIFY_CHANNEL
from shared.entities import ENTITIES

SERVICES, ROUTES, PLUGINS = ENTITIES["services"], ENTITIES["routes"], ENTITIES["plugins"]


async def test_one_row_per_write_with_cascades(store):
    svc = await store.insert(SERVICES, {"name": "s", "host": "h.test"})
    route = await store.insert(ROUTES, {"paths": ["/"], "service": {"id": svc["id"]}})
    plugin = await store.insert(PLUGINS, {"name": "key-auth", "service": {"id": svc["id"]}})
    await store.update(SERVICES, "s", {"retries": 1})
    await store.delete(ROUTES, route["id"])
    await store.delete(SERVICES, "s")

    rows = await store.changes_since(0)
    assert [(r["op"], r["entity_type"], r["entity_id"]) for r in rows] == [
        ("create", "services", svc["id"]),
        ("create", "routes", route["id"]),
        ("create", "plugins", plugin["id"]),
        ("update", "services", svc["id"]),
        ("delete", "routes", route["id"]),
        ("delete", "plugins", plugin["id"]),  # the cascade is logged, before its parent
        ("delete", "services", svc["id"]),
    ]
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    update = rows[3]
    assert update["old_entity"]["retries"] == 5 and update["new_entity"]["retries"] == 1
    assert rows[-1]["new_entity"] is None and rows[-1]["old_entity"]["name"] == "s"
    assert await store.version() == ids[-1]


async def test_failed_write_leaves_no_row(store):
    await store.insert(SERVICES, {"name": "s", "host": "h.test"})
    before = await store.version()
    for bad in ({"name": "s", "host": "h.test"}, {"host": "bad host"}):
        try:
            await store.insert(SERVICES, bad)
        except Exception:
            pass
        else:
            raise AssertionError("should have failed")
    assert await store.version() == before


async def test_concurrent_writes_are_logged_in_commit_order(store, dsn):
    """Versions are taken under a lock held to commit: a reader never sees a gap filled later."""
    seen: list[int] = []
    done = asyncio.Event()

    async def tail():
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            last = 0
            while not done.is_set() or last < await store.version():
                rows = await (await conn.execute(
                    "SELECT id FROM change_log WHERE id > %s ORDER BY id", (last,))).fetchall()
                for (i,) in rows:
                    seen.append(i)
                    last = i

    tailer = asyncio.create_task(tail())
    await asyncio.gather(*(
        store.insert(ENTITIES["consumers"], {"username": f"u{i}"}) for i in range(60)))
    done.set()
    await asyncio.wait_for(tailer, 30)
    assert seen == sorted(seen) == list(range(seen[0], seen[0] + 60))


async def test_writes_notify_listeners(store, dsn):
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        created = await store.insert(ENTITIES["consumers"], {"username": "n"})
        assert created
        payloads = [n.payload async for n in conn.notifies(timeout=10, stop_after=1)]
        assert payloads == [str(await store.version())]


async def test_failed_writes_do_not_poison_a_pooled_connection(dsn):
    """Failed pipelined writes on one connection, then good ones: no statement the server
    rolled back may be reused (psycopg's automatic prepared statements did that)."""
    from cp.store import Store
    from shared.errors import UniqueViolation

    one = await Store.open(dsn, min_size=1, max_size=1)
    try:
        consumers = ENTITIES["consumers"]
        for i in range(8):  # enough executions for a statement to be worth preparing
            await one.insert(consumers, {"username": f"c{i}"})
        for _ in range(8):
            try:
                await one.insert(consumers, {"username": "c0"})
            except UniqueViolation:
                pass
            else:
                raise AssertionError("the duplicate should have been refused")
            created = await one.insert(consumers, {"username": f"after-{_}"})
            assert created["username"] == f"after-{_}"
    finally:
        await one.close()
