"""The dispatcher: change-log rows (and emitted events) → delivery rows, exactly once.

The cursor row (`event_hook_cursor`) is locked for the whole batch and advanced in the same
transaction that inserts the deliveries, so with several control-plane nodes each change is
dispatched by exactly one of them, and a crash simply rolls the batch back. (The engine commits
asynchronously, so a database crash may also lose a batch that was already delivered: it is
dispatched again with the same delivery ids, see fanout.delivery_row.) Hooks are taken as
they were at each change: the current table, rewound through the later change-log rows of
`event_hooks`, then replayed row by row; a hook does not see changes made before it existed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg
from psycopg.rows import dict_row

from cp.hooks import payloads
from cp.hooks.fanout import NOTIFY, delivery_row, fan_out, insert
from shared.events import catalogue, check_source_event

BATCH = 500
_CHANGES = """
SELECT id, op, entity_type, entity_id, extract(epoch FROM created_at)::float8 AS at,
       CASE WHEN %(all)s OR entity_type = ANY(%(tables)s) THEN old_entity END AS old_entity,
       CASE WHEN %(all)s OR entity_type = ANY(%(tables)s) THEN new_entity END AS new_entity
  FROM change_log WHERE id > %(version)s ORDER BY id LIMIT %(limit)s
"""
# Looked at before the cursor is locked: locking it writes WAL, for nothing when all is done.
_ANY_NEW = ("SELECT EXISTS (SELECT 1 FROM change_log WHERE id > "
            "(SELECT last_change FROM event_hook_cursor WHERE id = 1))")


async def _hooks_as_of(conn: psycopg.AsyncConnection[Any],
                       version: int) -> tuple[dict[str, dict], bool]:
    """The hooks as they were at `version`, and whether any changed since."""
    rows = await (await conn.execute("SELECT id::text, entity FROM event_hooks")).fetchall()
    hooks = {hid: entity for hid, entity in rows}
    later = await (await conn.execute(
        "SELECT DISTINCT ON (entity_id) entity_id::text, old_entity FROM change_log "
        "WHERE entity_type = 'event_hooks' AND id > %s ORDER BY entity_id, id", (version,),
        prepare=False,  # planned for this version: a range of the primary key, never a scan
    )).fetchall()
    for hid, old in later:
        if old is None:
            hooks.pop(hid, None)
        else:
            hooks[hid] = old
    return hooks, bool(later)


def _watched(hooks: Any) -> set[str] | None:
    """The tables whose changes some crud/dao:crud hook receives (None: every table)."""
    tables: set[str] = set()
    for hook in hooks:
        if hook.get("source") == "dao:crud" or (
                hook.get("source") == "crud" and not hook.get("event")):
            return None
        if hook.get("source") == "crud":
            tables.add(str(hook["event"]).split(":", 1)[0])
    return tables


async def _disabled(conn: psycopg.AsyncConnection[Any]) -> set[str]:
    rows = await (await conn.execute("SELECT hook_id::text FROM event_hook_disabled")).fetchall()
    return {r[0] for r in rows}


async def _hook_changed(conn: psycopg.AsyncConnection[Any], row: dict[str, Any],
                        hooks: dict[str, dict], period: float) -> list[tuple]:
    """Apply a change of a hook itself: update the set, reset its state, ping webhooks."""
    hid, new, old = str(row["entity_id"]), row["new_entity"], row["old_entity"]
    if new is None:
        hooks.pop(hid, None)
        await conn.execute("DELETE FROM event_hook_throttle WHERE hook_id = %s", (hid,))
    else:
        hooks[hid] = new
    await conn.execute("DELETE FROM event_hook_disabled WHERE hook_id = %s", (hid,))
    subject = new or old
    if subject is None or subject.get("handler") != "webhook":
        return []
    return [delivery_row(hid, "ping", payloads.PING_SOURCE, "ping", payloads.ping(subject),
                         hook=subject, change_id=row["id"], period=period, at=row["at"])]


async def _changes(conn: psycopg.AsyncConnection[Any], version: int,
                   tables: set[str] | None) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_CHANGES, {"version": version, "limit": BATCH, "all": tables is None,
                                 "tables": sorted(tables or ())})
    return await cur.fetchall()


async def dispatch_batch(conn: psycopg.AsyncConnection[Any], period: float) -> int:
    """Turn the next change-log rows into deliveries; returns how many rows were consumed."""
    row = await (await conn.execute(_ANY_NEW)).fetchone()
    if not (row and row[0]):
        return 0
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT last_change FROM event_hook_cursor WHERE id = 1 FOR UPDATE")
        version = (await cur.fetchone() or (0,))[0]
        hooks, hooks_changed = await _hooks_as_of(conn, version)
        # Entities are read (and decoded) only for the tables a hook watches; when hooks
        # changed since `version`, for all, since a new hook may watch any table. (A hook
        # change committed after that look shows up in the batch itself: read it again.)
        tables = None if hooks_changed else _watched(hooks.values())
        changes = await _changes(conn, version, tables)
        if tables is not None and any(c["entity_type"] == "event_hooks" for c in changes):
            tables = None
            changes = await _changes(conn, version, tables)
        if not changes:
            return 0
        off = await _disabled(conn) if hooks else set()
        rows: list[tuple] = []
        for change in changes:
            active = [h for hid, h in hooks.items() if hid not in off]
            watched = tables is None or change["entity_type"] in tables
            for event in payloads.from_change(change) if active and watched else ():
                rows += await fan_out(conn, active, event, change_id=change["id"],
                                      period=period, at=change["at"])
            if change["entity_type"] == "event_hooks":
                rows += await _hook_changed(conn, change, hooks, period)
        await conn.execute("UPDATE event_hook_cursor SET last_change = %s WHERE id = 1",
                           (changes[-1]["id"],))
        if await insert(conn, rows):
            await conn.execute(NOTIFY)
    return len(changes)


async def emit(conn: psycopg.AsyncConnection[Any], source: str, event: str,
               data: dict[str, Any], period: float) -> int:
    """Record an event from any source (data planes' balancer, rate-limiting-advanced) as
    deliveries, durably and with snooze/on_change applied; returns deliveries queued."""
    errors = check_source_event(source, event)
    if errors:
        raise ValueError(next(iter(errors.values())))
    async with conn.transaction():
        # The caller may acknowledge the event once this returns: the commit must be flushed,
        # also on the engine's own sessions (which commit asynchronously, see priority.py).
        await conn.execute("SET LOCAL synchronous_commit TO on")
        return await emit_batch(conn, [(source, event, data)], period)


def object_of(data: Any) -> dict[str, Any]:
    """An event's data as a dict of its own: from a dict, or from the JSON text of one (bytes
    or msgspec.Raw: a data plane's batch keeps each payload as text until a hook may want it,
    see cp/cluster/dp_events.as_sent)."""
    if isinstance(data, dict):
        return dict(data)
    return msgspec.json.decode(data)  # exact beyond 64 bits, where orjson gives a float


async def emit_batch(conn: psycopg.AsyncConnection[Any], events: Sequence[Sequence[Any]],
                     period: float) -> int:
    """`emit` for many events, each (source, event, data, ...), in the caller's transaction
    (the data planes' uplink stores a batch and its deliveries together); each data as
    `object_of` reads it, and only for a hook that wants it. Events outside the catalogue match
    no hook."""
    known = catalogue()
    sources = {e[0] for e in events}.intersection(known)
    if not sources:
        return 0
    hooks = [r[0] for r in await (await conn.execute(
        "SELECT h.entity FROM event_hooks h WHERE h.entity->>'source' = ANY(%s) AND NOT EXISTS "
        "(SELECT 1 FROM event_hook_disabled d WHERE d.hook_id = h.id)",
        (sorted(sources),))).fetchall()]
    rows: list[tuple] = []
    for e in events if hooks else ():
        source, event = e[0], e[1]
        if event in known.get(source, {}):
            ev = payloads.Event(source, (event,), object_of(e[2]))
            rows += await fan_out(conn, hooks, ev, change_id=None, period=period)
    if await insert(conn, rows):
        await conn.execute(NOTIFY)
    return len(rows)
