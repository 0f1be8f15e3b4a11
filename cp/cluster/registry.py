"""What each connected data plane runs, kept in memory and in the shared database.

Writing it to PostgreSQL lets every CP node answer `/clustering/data-planes` for data planes
connected to any node; rows not seen for `purge_delay` are dropped, as in Kong.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger("tidegate.cluster")

PURGE_DELAY = 14 * 24 * 3600
HEARTBEAT_WRITE = 10.0  # seconds between database writes for an unchanged data plane


@dataclass
class DataPlane:
    node_id: str
    hostname: str
    ip: str
    version: str
    labels: dict[str, str]
    plugins: dict[str, str]
    cert_expiry: int | None
    config_version: str = ""  # what it runs (from hello, acks and status)
    config_hash: str = ""
    sync_status: str = "unknown"
    last_nack: str | None = None
    events_dropped: int = 0  # the data plane's event queue, as its last status said
    events_buffered: int = 0
    last_seen: float = field(default_factory=time.time)
    written_at: float = 0.0

    def row(self, cp_node_id: str, connected: bool) -> dict[str, Any]:
        now = int(time.time())
        return {
            "id": self.node_id, "hostname": self.hostname, "ip": self.ip,
            "version": self.version, "sync_status": self.sync_status,
            "config_hash": self.config_hash, "acked_version": self.config_version,
            "last_nack": self.last_nack, "labels": Jsonb(self.labels),
            "cert_expiry": self.cert_expiry, "cp_node_id": cp_node_id,
            "connected": connected, "last_seen": int(self.last_seen), "updated_at": now,
            "events_dropped": self.events_dropped, "events_buffered": self.events_buffered,
        }


class Registry:
    def __init__(self, pool: AsyncConnectionPool, cp_node_id: str) -> None:
        self.pool = pool
        self.cp_node_id = cp_node_id
        self.connected: dict[str, DataPlane] = {}

    async def save(self, dp: DataPlane, *, connected: bool = True, force: bool = True) -> None:
        now = time.time()
        dp.last_seen = now
        if not force and now - dp.written_at < HEARTBEAT_WRITE:
            return
        row = dp.row(self.cp_node_id, connected)
        cols = list(row)
        try:
            async with self.pool.connection() as conn:
                await conn.execute(
                    f"INSERT INTO clustering_data_planes ({', '.join(cols)}) "
                    f"VALUES ({', '.join(f'%({c})s' for c in cols)}) ON CONFLICT (id) DO UPDATE "
                    f"SET {', '.join(f'{c} = EXCLUDED.{c}' for c in cols if c != 'id')}", row)
            dp.written_at = now
        except Exception as exc:  # visibility must never break the config stream
            log.warning("could not record data plane %s: %s", dp.node_id, exc)

    async def list(self, purge_delay: int = PURGE_DELAY) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM clustering_data_planes WHERE last_seen < %s",
                               (int(time.time()) - purge_delay,))
            cur = await conn.execute(
                "SELECT id, hostname, ip, version, sync_status, config_hash, acked_version, "
                "last_nack, labels, cert_expiry, connected, last_seen, updated_at, cp_node_id, "
                "events_dropped, events_buffered "
                "FROM clustering_data_planes ORDER BY id")
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]
