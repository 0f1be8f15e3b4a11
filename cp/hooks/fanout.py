"""One event → the deliveries of the hooks it matches, inserted in the caller's transaction."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from typing import Any

import psycopg

from cp.hooks import payloads, throttle
from cp.hooks.payloads import Event
from shared.entities.event_hooks import runs_on_data_plane

DELIVERIES_CHANNEL = "tidegate_hook_deliveries"
NOTIFY = f"SELECT pg_notify('{DELIVERIES_CHANNEL}', '')"
# One statement for any number of deliveries: one array per column (binary: psycopg's text
# arrays cost ~15x more to build), unnested in order, so `seq` follows the order of `rows`.
# JSON travels as text: a payload matched by ten hooks is encoded once (see `fan_out`).
_INSERT = """
INSERT INTO event_hook_deliveries
       (id, hook_id, kind, source, event, payload, hook, change_id, expires_at)
SELECT u.id, u.hook_id, u.kind, u.source, u.event, u.payload::jsonb, u.hook::jsonb,
       u.change_id, clock_timestamp() + make_interval(secs => u.period)
  FROM unnest(%b::uuid[], %b::uuid[], %b::text[], %b::text[], %b::text[], %b::text[],
              %b::text[], %b::bigint[], %b::float8[])
       WITH ORDINALITY AS u(id, hook_id, kind, source, event, payload, hook, change_id, period, n)
 ORDER BY u.n
"""


def to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def delivery_id(at: float | None = None, key: str | None = None) -> str:
    """A delivery id in the UUIDv7 layout (RFC 9562): 48 bits of Unix milliseconds, then 74
    bits, random or derived from `key` (the same time and key give the same id). Ids increase
    with time, so new rows append to the primary key (fewer page splits and full-page images
    in the WAL) and old ones are a range of it (`prune`)."""
    ms = int((time.time() if at is None else at) * 1000)
    seed = hashlib.sha256(key.encode()).digest()[:10] if key is not None else os.urandom(10)
    rand = int.from_bytes(seed, "big")  # 80 bits, 74 used
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62) | (
        rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def first_id_at(at: float) -> str:
    """The smallest delivery id `delivery_id` can give at time `at` (seconds)."""
    return str(uuid.UUID(int=int(at * 1000) << 80))


def delivery_row(hook_id: str, kind: str, source: str, event: str, payload: dict[str, Any] | str,
                 *, hook: dict[str, Any] | None, change_id: int | None, period: float,
                 at: float | None = None) -> tuple[Any, ...]:
    """A row for `insert`; `payload` may already be JSON text. A delivery of a change-log row
    (`change_id`, committed at `at`) gets an id derived from the change, the hook and the
    kind: dispatching the same change again (after a database crash lost an asynchronous
    commit, see priority.py) gives the same ids, so receivers still dedupe."""
    body = payload if isinstance(payload, str) else to_json(payload)
    key = f"{change_id}/{hook_id}/{kind}" if change_id is not None else None
    return (delivery_id(at, key), hook_id, kind, source, event, body,
            to_json(hook) if hook is not None else None, change_id, period)


async def insert(conn: psycopg.AsyncConnection[Any], rows: list[tuple[Any, ...]]) -> int:
    if rows:
        columns = [list(column) for column in zip(*rows, strict=True)]
        await conn.execute(_INSERT, columns)
    return len(rows)


def _runs_here(hook: dict[str, Any], source: str) -> bool:
    """The log handler runs on the plane where the event happened (Kong's hybrid mode): such
    hooks are streamed to data planes instead (shared/entities/event_hooks.py)."""
    return not runs_on_data_plane({**hook, "source": source})


async def fan_out(conn: psycopg.AsyncConnection[Any], hooks: list[dict[str, Any]],
                  event: Event, *, change_id: int | None, period: float,
                  at: float | None = None) -> list[tuple]:
    """Delivery rows for every matching hook that snooze/on_change let through (`change_id`
    and `at`: the change-log row the event comes from, and when it was committed)."""
    rows, encoded = [], {}  # event name -> payload JSON, shared by the hooks that match
    for hook in hooks:
        name = payloads.matches(hook, event)
        if name is None or not _runs_here(hook, event.source):
            continue
        if not await throttle.should_fire(conn, hook, event.source, name, event.data):
            continue
        if name not in encoded:
            encoded[name] = to_json(payloads.payload(event, name))
        rows.append(delivery_row(hook["id"], "event", event.source, name, encoded[name],
                                 hook=None, change_id=change_id, period=period, at=at))
    return rows
