"""Migration 0007 on a database that already has data-plane events (one row each): they move
into batch rows, the Admin API's page shows them as before, and a data plane resending them
after the upgrade does not store them twice."""

from __future__ import annotations

import json

import psycopg

from cp import migrate
from cp.cluster.dp_events import DataPlaneEvents
from cp.store import Store
from shared.proto_gen import cluster_pb2 as pb
from tests.conftest import database_at

OLD_ROWS = [  # boot, seq, source, event, data, at
    ("boot-a", 1, "balancer", "health", {"ip": "10.0.0.1", "health": "unhealthy"}, 1_700_000_001.5),
    ("boot-a", 2, "rate-limiting-advanced", "rate-limit-exceeded", {"rate": 11}, 1_700_000_002.25),
    ("boot-b", 1, "balancer", "health", {"ip": "10.0.0.1", "health": "healthy"}, 1_700_000_003.0),
]


async def test_0007_moves_stored_events_into_batch_rows(pg):
    async with database_at(pg, 6) as dsn:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            for boot, seq, source, event, data, at in OLD_ROWS:
                await conn.execute(
                    "INSERT INTO clustering_dp_events (dp_id, boot_id, seq, source, event, data, "
                    "at, received_at) VALUES ('dp-old', %s, %s, %s, %s, %s, to_timestamp(%s), "
                    "to_timestamp(%s))", (boot, seq, source, event, json.dumps(data), at, at + 1))
            assert [m.version for m in await migrate.up(conn)] == [
                m.version for m in migrate.available() if m.version > 6]
        store = await Store.open(dsn, min_size=1, max_size=2)
        try:
            events = DataPlaneEvents(store.pool)
            page, more = await events.page("dp-old", 10, None)
            assert more is None
            assert [(e["boot_id"], e["seq"], e["source"], e["event"], e["data"], e["at"])
                    for e in page] == OLD_ROWS[::-1]
            assert [e["received_at"] - e["at"] for e in page] == [1.0, 1.0, 1.0]
            assert await events.known("dp-old")

            resent = [[s, e, d, at, seq] for b, seq, s, e, d, at in OLD_ROWS if b == "boot-a"]
            resent.append(["balancer", "health", {"ip": "10.0.0.2"}, 1_700_000_004.0, 3])
            assert await events.store("dp-old", pb.EventBatch(
                boot_id="boot-a", first_seq=1, count=3,
                events_json=json.dumps(resent).encode())) == 3
            page, _ = await events.page("dp-old", 10, None)
            assert [(e["boot_id"], e["seq"]) for e in page] == [
                ("boot-a", 3), ("boot-b", 1), ("boot-a", 2), ("boot-a", 1)]
        finally:
            await store.close()
