"""Tailing the change log into the cluster state.

NOTIFY only wakes us; rows are always read by id, so a missed notification (or a write made on
another CP node, or while we were down) costs latency, never a change. The first change after a
quiet spell is published at once; a burst is coalesced until 100 ms pass without a change (at most
1 s), so data planes see one merged delta instead of hundreds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from cp.cluster.state import ClusterState
from cp.store import NOTIFY_CHANNEL
from shared.config_set import DP_TYPES, ConfigSet, streamed

log = logging.getLogger("tidegate.cluster")

BATCH = 5000


async def load_state(pool: AsyncConnectionPool) -> ClusterState:
    """Entities and version from one consistent snapshot of the database."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        epoch_row = await (await conn.execute(
            "SELECT value FROM cluster_meta WHERE key = 'epoch'")).fetchone()
        version_row = await (await conn.execute(
            "SELECT coalesce(max(id), 0) FROM change_log")).fetchone()
        config = ConfigSet()
        for entity_type in DP_TYPES:
            cur = await conn.execute(f"SELECT entity FROM {entity_type}")
            for (entity,) in await cur.fetchall():
                if streamed(entity_type, entity):
                    config.upsert(entity_type, entity)
    assert epoch_row is not None and version_row is not None
    return ClusterState(str(epoch_row[0]), int(version_row[0]), config)


class ChangeFeed:
    def __init__(
        self, dsn: str, pool: AsyncConnectionPool, state: ClusterState, *,
        quiet: float = 0.1, max_wait: float = 1.0, poll: float = 2.0,
    ) -> None:
        self.dsn, self.pool, self.state = dsn, pool, state
        self.quiet, self.max_wait, self.poll = quiet, max_wait, poll

    async def catch_up(self) -> int:
        """Apply every committed change past the state's version; returns rows applied."""
        applied = 0
        while True:
            async with self.pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    "SELECT id, entity_type, entity_id::text, new_entity FROM change_log "
                    "WHERE id > %s ORDER BY id LIMIT %s", (self.state.version, BATCH))
                rows: list[dict[str, Any]] = await cur.fetchall()
            if not rows:
                return applied
            self.state.apply(rows)
            applied += len(rows)
            if len(rows) < BATCH:
                return applied

    async def run(self) -> None:
        """Follow the change log until cancelled, reconnecting after database errors."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                log.warning("change feed interrupted (%s); retrying", exc)
                await asyncio.sleep(1)

    async def _follow(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            await self.catch_up()
            last_publish = 0.0
            while True:
                async for _ in conn.notifies(timeout=self.poll, stop_after=1):
                    pass
                started = time.monotonic()
                if started - last_publish < self.quiet:
                    await self._until_quiet(conn, started + self.max_wait)
                if await self.catch_up():
                    last_publish = time.monotonic()

    async def _until_quiet(self, conn: psycopg.AsyncConnection[Any], deadline: float) -> None:
        while time.monotonic() < deadline:
            woke = [n async for n in conn.notifies(timeout=self.quiet, stop_after=1)]
            if not woke:
                return
