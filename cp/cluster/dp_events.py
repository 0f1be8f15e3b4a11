"""Events from data planes: stored before they are acknowledged, once, then fed to the hooks.

`store()` writes one EventBatch in one transaction: its events new to the database as one row
of `clustering_dp_event_batches` (a JSON array in a text column: PostgreSQL stores it without
parsing it, see migration 0007) and, for each of them, the deliveries of the event hooks it
matches (the hook engine's own fan-out: cp/hooks/dispatch.emit_batch). An event is new when
its sequence number is above the highest stored for its data plane and boot id: a data plane
sends a boot's events in order and a session stores its batches in order, so what was resent
after a reconnect is dropped, whichever CP node stored the first copy (a lock per data plane
and boot orders the nodes). Only after the commit does the caller send the EventAck, so an
acknowledged event is durable and an event stored twice fires no hook twice.

A batch carries its events as one JSON array (`events_json`, what tidegate data planes send)
or, as the first data planes did, as protobuf Events with a JSON payload each; both are read.
An `events_json` exactly as a data plane's uplink encodes it (`as_sent`) is checked in one pass
that builds no payload and stored as it came; the hooks decode a payload only when one of them
may want it. Any other batch is decoded whole, checked row by row (what no data plane sends is
skipped, text jsonb cannot hold mended) and encoded again with one call.

Events are kept for `retention` seconds after they were received (CP setting
`dp_events_retention`); `prune_forever()` deletes older rows in small chunks.
`page()` serves GET /clustering/data-planes/{id}/events, newest first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import operator
import time
import uuid
from typing import Any

import msgspec
import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool

from cp.hooks.dispatch import emit_batch, object_of
from shared.proto_gen import cluster_pb2 as pb

log = logging.getLogger("tidegate.cluster")

RETENTION = 7 * 24 * 3600.0
PRUNE_CHUNK = 1_000  # rows (batches) per DELETE
ROW_EVENTS = 65_536  # events per row at most: a page cursor is n x ROW_EVENTS + the index
_PAGE_ROWS = 64  # rows read at once at most while filling a page

_LOCK = ("SELECT pg_advisory_xact_lock(hashtext('tidegate_dp_events'), "
         "hashtext(%s || '/' || %s))")
# A statement of its own, after the lock: its snapshot then sees what the lock waited for.
_MARK = ("SELECT coalesce(max(last_seq), 0) FROM clustering_dp_event_batches "
         "WHERE dp_id = %s AND boot_id = %s")
_INSERT = """
INSERT INTO clustering_dp_event_batches (dp_id, boot_id, first_seq, last_seq, count, events)
VALUES (%s, %s, %s, %s, %s, %s)
"""
_ROWS = """
SELECT n, events, extract(epoch FROM received_at)::float8, boot_id
  FROM clustering_dp_event_batches
 WHERE dp_id = %s AND n < %s ORDER BY n DESC LIMIT %s
"""
_PRUNE = """
DELETE FROM clustering_dp_event_batches WHERE n IN (
    SELECT n FROM clustering_dp_event_batches
     WHERE received_at < clock_timestamp() - make_interval(secs => %s) LIMIT %s)
RETURNING count
"""
# Strict JSON (no NaN/Infinity), for a row orjson refuses (an integer beyond 64 bits, which
# msgspec and the stdlib read exactly): what the jsonb of the `clustering_dp_events` view reads.
_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
MAX_TS = 1e11  # seconds: beyond this (year 5138) PostgreSQL's timestamps end; "now" instead
_IDS = uuid.UUID("6f0c2a43-1d7e-4f5b-9a8e-3c1b2d4e5f60")  # namespace of the events' ids

Row = list[Any]  # [source, event, data, ts, seq], checked


# A batch as tidegate data planes send it, read in one pass that builds no payload: each data is
# checked to be JSON and kept as its text (msgspec.Raw), typed fields checked as they are read.
_AS_SENT = msgspec.json.Decoder(list[tuple[str, str, msgspec.Raw, float, int]])
_first_byte = operator.itemgetter(0)


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
        try:  # msgspec reads integers beyond 64 bits exactly (orjson makes them floats)
            rows = msgspec.json.decode(batch.events_json)
        except msgspec.DecodeError:  # NaN, a lone surrogate: the stdlib reads them
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


def as_sent(batch: pb.EventBatch) -> tuple[list[Row], str] | None:
    """The batch's rows, with each data still JSON text, and the batch's text to store as it
    is, when `events_json` is exactly what a tidegate data plane sends: [source, event, object,
    ts, seq] rows with a source, an event, a timestamp `_checked` would keep and each seq its
    place, in UTF-8 that PostgreSQL's jsonb can hold (no NUL character; msgspec refuses lone
    surrogates and NaN). Anything else is None, for `decode` to mend or skip: this only spares
    the common case from building every payload (~5x cheaper) and encoding it again."""
    raw = batch.events_json
    if not raw or b"\\u0000" in raw:
        return None
    try:
        rows = _AS_SENT.decode(raw)
        text = raw.decode()
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    if not 0 < len(rows) == batch.count <= ROW_EVENTS:
        return None
    # Column by column, each check one call (no Python code per event).
    sources, events, data, times, seqs = zip(*rows, strict=True)
    first = batch.first_seq
    if seqs != tuple(range(first, first + len(rows))) or not all(sources) or not all(events) \
            or not 0 < min(times) <= max(times) < MAX_TS \
            or set(map(_first_byte, map(memoryview, data))) != {ord("{")}:
        return None
    return rows, text  # type: ignore[return-value]  # tuples: read, never changed


def _read(row: Row) -> Row:
    """A row of `as_sent` with its data decoded (for a batch stored only in part)."""
    return [*row[:2], object_of(row[2]), *row[3:]]


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
    """The rows as one JSON array, encoded at once (orjson writes NaN as null), and the rows in
    it. Only when the batch has text PostgreSQL's jsonb cannot hold (a NUL character, a lone
    surrogate) or a row orjson refuses are the rows encoded one by one, that text mended
    (for what the hooks see too) and rows JSON cannot hold skipped."""
    try:
        text = orjson.dumps(rows)
        if b"\\u0000" not in text:
            return text.decode(), rows
    except TypeError:
        pass
    kept, parts = [], []
    for row in rows:
        row[:3] = _mended(row[:3])
        try:
            parts.append(_row_json(row))
        except ValueError as exc:
            _skip(boot_id, row[4], exc)
            continue
        kept.append(row)
    return (b"[" + b",".join(parts) + b"]").decode(), kept


def _row_json(row: Row) -> bytes:
    try:
        return orjson.dumps(row)
    except TypeError:  # an integer beyond 64 bits: the stdlib writes it (and refuses NaN)
        return _dumps(row).encode()


def _mended(value: Any) -> Any:
    """`value` with NUL characters removed and lone surrogates replaced by '?'."""
    if isinstance(value, str):
        return value.replace("\x00", "").encode("utf-8", "replace").decode()
    if isinstance(value, dict):
        return {_mended(k): _mended(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mended(v) for v in value]
    return value


async def _insert_rows(conn: psycopg.AsyncConnection[Any], dp_id: str, boot_id: str,
                       rows: list[Row]) -> list[Row]:
    """`rows` encoded and stored, ROW_EVENTS to a row of the table; the rows kept."""
    stored: list[Row] = []
    for start in range(0, len(rows), ROW_EVENTS):
        text, kept = _rows(boot_id, rows[start:start + ROW_EVENTS])
        if kept:
            await conn.execute(_INSERT, (dp_id, boot_id, kept[0][4], kept[-1][4], len(kept),
                                         text))
            stored += kept
    return stored


def _shown(dp_id: str, boot_id: str, row: Row, received_at: float) -> dict[str, Any]:
    source, event, data, at, seq = row
    return {"id": str(uuid.uuid5(_IDS, f"{dp_id}/{boot_id}/{seq}")), "source": source,
            "event": event, "data": data, "at": round(at, 3),
            "received_at": round(received_at, 3), "boot_id": boot_id, "seq": seq}


class DataPlaneEvents:
    def __init__(self, pool: AsyncConnectionPool, *, retention: float = RETENTION,
                 hook_retry_period: float = 24 * 3600.0) -> None:
        self.pool = pool
        self.retention = retention
        self.hook_retry_period = hook_retry_period

    async def store(self, dp_id: str, batch: pb.EventBatch) -> int:
        """Store a batch durably (see the module docstring); returns the last sequence number
        it covers, to acknowledge. Raises EventStoreError when nothing may be acknowledged."""
        sent = as_sent(batch)
        if sent is not None:
            (rows, text), covered = sent, batch.count
        else:
            (rows, covered), text = decode(batch, time.time()), None
        if not covered:
            return 0
        if rows:
            try:
                await self._insert(dp_id, batch.boot_id, rows, text)
            except (psycopg.Error, OSError) as exc:
                raise EventStoreError(f"could not store events: {exc}") from exc
        return batch.first_seq + covered - 1

    async def _insert(self, dp_id: str, boot_id: str, rows: list[Row], text: str | None) -> None:
        """What is new of `rows`, and its deliveries, in one transaction. `text` is their JSON
        array as sent (see `as_sent`): stored as it is when all of them are new."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(_LOCK, (dp_id, boot_id))
            mark = (await (await conn.execute(_MARK, (dp_id, boot_id))).fetchone() or (0,))[0]
            # Rows come in sequence order: usually all of them are new.
            new = rows if rows[0][4] > mark else [r for r in rows if r[4] > mark]
            if text is not None and new is rows:
                await conn.execute(_INSERT, (dp_id, boot_id, rows[0][4], rows[-1][4],
                                             len(rows), text))
                stored = rows
            else:
                stored = await _insert_rows(conn, dp_id, boot_id, new if text is None else
                                            [_read(r) for r in new])
            if stored:
                await emit_batch(conn, stored, self.hook_retry_period)

    async def known(self, dp_id: str) -> bool:
        """A data plane the cluster has seen (recorded, or with stored events)."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(
                "SELECT EXISTS (SELECT 1 FROM clustering_data_planes WHERE id = %s) "
                "OR EXISTS (SELECT 1 FROM clustering_dp_event_batches WHERE dp_id = %s)",
                (dp_id, dp_id))).fetchone()
        return bool(row and row[0])

    async def page(self, dp_id: str, size: int, before: int | None, source: str | None = None,
                   event: str | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """Newest first, from the event before cursor `before`; returns (page, cursor to
        continue before, or None on the last page). The rows are read a few at a time and
        decoded here, each event's cursor being n x ROW_EVENTS + its index in the row."""
        found: list[tuple[int, str, Row, float]] = []
        below = 2**63 - 1 if before is None else before // ROW_EVENTS + 1
        limit = 1  # rows read at once, doubling: a page usually fits in the newest row
        async with self.pool.connection() as conn:
            while len(found) <= size:
                batches = await (await conn.execute(_ROWS, (dp_id, below, limit))).fetchall()
                for n, text, received_at, boot_id in batches:
                    events = msgspec.json.decode(text)
                    for i in range(len(events) - 1, -1, -1):
                        cursor, row = n * ROW_EVENTS + i, events[i]
                        if (before is None or cursor < before) and \
                                (source is None or row[0] == source) and \
                                (event is None or row[1] == event):
                            found.append((cursor, boot_id, row, received_at))
                    if len(found) > size:
                        break
                if len(batches) < limit:
                    break
                below, limit = batches[-1][0], min(limit * 2, _PAGE_ROWS)
        more = found[size - 1][0] if len(found) > size else None
        return [_shown(dp_id, boot, row, at) for _, boot, row, at in found[:size]], more

    async def prune(self) -> int:
        """Delete events received more than `retention` seconds ago; returns how many."""
        deleted = 0
        while True:
            async with self.pool.connection() as conn:
                cur = await conn.execute(_PRUNE, (self.retention, PRUNE_CHUNK))
                deleted += sum(r[0] for r in await cur.fetchall())
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
