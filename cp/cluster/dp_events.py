"""Events from data planes: stored before they are acknowledged, once, then fed to the hooks.

`store()` writes one EventBatch in one transaction: the events (a duplicate of an event already
stored — same data plane, boot id and sequence — is dropped by the unique key, whichever CP node
stored the first copy) and, for each event new to the database, the deliveries of the event
hooks it matches (the hook engine's own fan-out: cp/hooks/dispatch.emit_batch). Only after the
commit does the caller send the EventAck, so an acknowledged event is durable and an event
stored twice fires no hook twice.

A batch carries its events as one JSON array (`events_json`, what tidegate data planes send:
decoded with one orjson call, checked row by row, written to PostgreSQL as one parameter) or,
as the first data planes did, as protobuf Events with a JSON payload each; both are read.

Events are kept for `retention` seconds after they were received (CP setting
`dp_events_retention`); `prune_forever()` deletes older ones in small chunks.
`page()` serves GET /clustering/data-planes/{id}/events, newest first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from cp.hooks.dispatch import emit_batch
from shared.proto_gen import cluster_pb2 as pb

log = logging.getLogger("tidegate.cluster")

RETENTION = 7 * 24 * 3600.0
PRUNE_CHUNK = 10_000

# The batch travels as one JSON array of the rows (one parameter, parsed by PostgreSQL):
# adapting five Python lists element by element cost the control plane more than everything
# else together. A row is the data plane's own [source, event, data, ts, seq].
_INSERT = """
INSERT INTO clustering_dp_events (dp_id, boot_id, seq, source, event, data, at)
SELECT %(dp)s, %(boot)s, (r->>4)::bigint, r->>0, r->>1, r->2, to_timestamp((r->>3)::float8)
  FROM jsonb_array_elements(%(rows)s::jsonb) AS r
ON CONFLICT (dp_id, boot_id, seq) DO NOTHING
RETURNING seq
"""
# Strict JSON for PostgreSQL (no NaN/Infinity), for a row orjson refuses (an integer beyond 64
# bits that the stdlib parser read).
_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
MAX_TS = 1e11  # seconds: beyond this (year 5138) PostgreSQL's timestamps end; "now" instead

Row = list[Any]  # [source, event, data, ts, seq], checked

_PAGE = """
SELECT n, id::text, source, event, data, extract(epoch FROM at)::float8 AS at,
       extract(epoch FROM received_at)::float8 AS received_at, boot_id, seq
  FROM clustering_dp_events
 WHERE dp_id = %(dp)s AND (%(before)s::bigint IS NULL OR n < %(before)s::bigint)
   AND (%(source)s::text IS NULL OR source = %(source)s::text)
   AND (%(event)s::text IS NULL OR event = %(event)s::text)
 ORDER BY n DESC LIMIT %(limit)s
"""

_PRUNE = """
DELETE FROM clustering_dp_events WHERE n IN (
    SELECT n FROM clustering_dp_events
     WHERE received_at < clock_timestamp() - make_interval(secs => %s) LIMIT %s)
"""


class EventStoreError(Exception):
    """A batch could not be stored; it must not be acknowledged."""


def decode(batch: pb.EventBatch, now: float) -> tuple[list[Row], int]:
    """The batch's readable events as rows, and how many sequence numbers the batch covers.
    An event no tidegate data plane sends (a payload that is not a JSON object, a row of the
    wrong shape) is skipped with a warning: refusing the batch would block every later event of
    that data plane. A timestamp that is not a positive number of seconds becomes `now`."""
    if batch.events_json or batch.count:
        return _from_json(batch, now)
    rows = []
    for i, ev in enumerate(batch.events):
        try:
            rows.append([ev.source, ev.event, json.loads(ev.payload), ev.ts, batch.first_seq + i])
        except ValueError as exc:
            _skip(batch.boot_id, batch.first_seq + i, exc)
    return _checked(batch.boot_id, rows, now), len(batch.events)


def _from_json(batch: pb.EventBatch, now: float) -> tuple[list[Row], int]:
    """`events_json`: one JSON array of [source, event, data, ts, seq], decoded at once."""
    try:
        try:
            rows = orjson.loads(batch.events_json)
        except orjson.JSONDecodeError:  # NaN, an integer beyond 64 bits: the stdlib reads them
            rows = json.loads(batch.events_json)
        if type(rows) is not list:
            raise ValueError("events_json is not a JSON array")
    except ValueError as exc:  # UnicodeDecodeError included
        log.warning("skipping %d unreadable events from seq %d of boot %s: %s", batch.count,
                    batch.first_seq, batch.boot_id, exc)
        return [], batch.count
    first, shaped = batch.first_seq, []
    for i, row in enumerate(rows):  # each row's own seq must be its place in the batch
        if type(row) is not list or len(row) != 5 or row[4] != first + i:
            _skip(batch.boot_id, first + i, ValueError("not [source, event, data, ts, seq]"))
        else:
            row[4] = first + i  # an int, even where the row said 7.0
            shaped.append(row)
    return _checked(batch.boot_id, shaped, now), max(batch.count, len(rows))


def _checked(boot_id: str, rows: list[Row], now: float) -> list[Row]:
    """The rows with a source, an event and an object for data (a bad timestamp replaced)."""
    out = []
    for row in rows:
        source, event, data, ts, seq = row
        if type(data) is not dict or type(source) is not str or type(event) is not str \
                or not source or not event:
            _skip(boot_id, seq, ValueError("not a JSON object with a source and an event"))
            continue
        if type(ts) not in (float, int) or not 0 < ts < MAX_TS:  # NaN compares false
            row[3] = now
        out.append(row)
    return out


def _skip(boot_id: str, seq: int, exc: Exception) -> None:
    log.warning("skipping unreadable event seq %d of boot %s: %s", seq, boot_id, exc)


def _rows(boot_id: str, rows: list[Row]) -> tuple[str, list[Row]]:
    """_INSERT's JSON array, encoded at once (orjson writes NaN as null), and the rows in it.
    PostgreSQL's jsonb holds no NUL character: only when the batch has one (or a row orjson
    refuses) are the rows encoded one by one, NUL characters removed (from what the hooks see
    too) and rows JSON cannot hold skipped."""
    try:
        text = orjson.dumps(rows)
        if b"\\u0000" not in text:
            return text.decode(), rows
    except TypeError:
        pass
    kept, parts = [], []
    for row in rows:
        try:
            part = _row_json(row)
        except ValueError as exc:
            _skip(boot_id, row[4], exc)
            continue
        if b"\\u0000" in part:
            row[:3] = _without_nul(row[:3])
            part = _row_json(row)
        kept.append(row)
        parts.append(part)
    return (b"[" + b",".join(parts) + b"]").decode(), kept


def _row_json(row: Row) -> bytes:
    try:
        return orjson.dumps(row)
    except TypeError:  # an integer beyond 64 bits: the stdlib writes it (and refuses NaN)
        return _dumps(row).encode()


async def _insert_rows(conn: psycopg.AsyncConnection[Any], dp_id: str, boot_id: str,
                       rows: str) -> set[int]:
    """Insert; returns the sequence numbers that were new."""
    cur = await conn.execute(_INSERT, {"dp": dp_id, "boot": boot_id, "rows": rows})
    return {r[0] for r in await cur.fetchall()}


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _row(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "source": row["source"], "event": row["event"],
            "data": row["data"], "at": round(row["at"], 3),
            "received_at": round(row["received_at"], 3), "boot_id": row["boot_id"],
            "seq": row["seq"]}


class DataPlaneEvents:
    def __init__(self, pool: AsyncConnectionPool, *, retention: float = RETENTION,
                 hook_retry_period: float = 24 * 3600.0) -> None:
        self.pool = pool
        self.retention = retention
        self.hook_retry_period = hook_retry_period

    async def store(self, dp_id: str, batch: pb.EventBatch) -> int:
        """Store a batch durably (see the module docstring); returns the last sequence number
        it covers, to acknowledge. Raises EventStoreError when nothing may be acknowledged."""
        rows, covered = decode(batch, time.time())
        if not covered:
            return 0
        if rows:
            try:
                await self._insert(dp_id, batch.boot_id, rows)
            except (psycopg.Error, OSError) as exc:
                raise EventStoreError(f"could not store events: {exc}") from exc
        return batch.first_seq + covered - 1

    async def _insert(self, dp_id: str, boot_id: str, rows: list[Row]) -> None:
        text, rows = _rows(boot_id, rows)
        async with self.pool.connection() as conn, conn.transaction():
            try:
                async with conn.transaction():  # a savepoint: the fallback below may follow
                    stored = await _insert_rows(conn, dp_id, boot_id, text)
            except psycopg.errors.DataError as exc:
                # Text PostgreSQL refuses (a lone surrogate...): store the rest one by one.
                log.warning("data plane %s sent events PostgreSQL refuses (%s); storing the "
                            "others one by one", dp_id, exc)
                stored = set()
                for row in rows:
                    try:
                        async with conn.transaction():
                            stored |= await _insert_rows(conn, dp_id, boot_id,
                                                         _rows(boot_id, [row])[0])
                    except psycopg.errors.DataError:
                        log.warning("skipping event %s/%s seq %d of boot %s", row[0], row[1],
                                    row[4], boot_id)
            if stored:
                await emit_batch(conn, [(r[0], r[1], r[2]) for r in rows if r[4] in stored],
                                 self.hook_retry_period)

    async def known(self, dp_id: str) -> bool:
        """A data plane the cluster has seen (recorded, or with stored events)."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(
                "SELECT EXISTS (SELECT 1 FROM clustering_data_planes WHERE id = %s) "
                "OR EXISTS (SELECT 1 FROM clustering_dp_events WHERE dp_id = %s)",
                (dp_id, dp_id))).fetchone()
        return bool(row and row[0])

    async def page(self, dp_id: str, size: int, before: int | None, source: str | None = None,
                   event: str | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """Newest first; returns (page, cursor to continue before, or None on the last page)."""
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(_PAGE, {"dp": dp_id, "before": before, "source": source,
                                      "event": event, "limit": size + 1})
            rows = await cur.fetchall()
        more = rows[size - 1]["n"] if len(rows) > size else None
        return [_row(r) for r in rows[:size]], more

    async def prune(self) -> int:
        """Delete events received more than `retention` seconds ago; returns how many."""
        deleted = 0
        while True:
            async with self.pool.connection() as conn:
                cur = await conn.execute(_PRUNE, (self.retention, PRUNE_CHUNK))
            deleted += cur.rowcount
            if cur.rowcount < PRUNE_CHUNK:
                return deleted

    async def prune_forever(self) -> None:
        """Prune now and then (every quarter of the retention, at most every 5 minutes); every
        CP node may do it, deleting twice is harmless."""
        every = min(max(self.retention / 4, 1.0), 300.0)
        while True:
            try:
                if deleted := await self.prune():
                    log.info("pruned %d data-plane events older than %.0f s", deleted,
                             self.retention)
            except (psycopg.Error, OSError) as exc:
                log.warning("pruning data-plane events failed (%s); retrying", exc)
            await asyncio.sleep(every)
