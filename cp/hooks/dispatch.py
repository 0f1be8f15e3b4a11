"""The dispatcher: change-log rows (and emitted events) → delivery rows, exactly once.

The cursor row (`event_hook_cursor`) is locked for the whole batch and advanced in the same
transaction that inserts the deliveries, so with several control-plane nodes each change is
dispatched by exactly one of them, and a crash simply rolls the batch back. Hooks are taken as
they were at each change: the current table, rewound through the later change-log rows of
`event_hooks`, then replayed row by row; a hook does not see changes made before it existed.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from cp.hooks import payloads
from cp.hooks.fanout import NOTIFY, delivery_row, fan_out, insert
from shared.events import check_source_event

BATCH = 500


async def _hooks_as_of(conn: psycopg.AsyncConnection[Any], version: int) -> dict[str, dict]:
    rows = await (await conn.execute("SELECT id::text, entity FROM event_hooks")).fetchall()
    hooks = {hid: entity for hid, entity in rows}
    later = await (await conn.execute(
        "SELECT DISTINCT ON (entity_id) entity_id::text, old_entity FROM change_log "
        "WHERE entity_type = 'event_hooks' AND id > %s ORDER BY entity_id, id", (version,),
    )).fetchall()
    for hid, old in later:
        if old is None:
            hooks.pop(hid, None)
        else:
            hooks[hid] = old
    return hooks


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
                         hook=subject, change_id=row["id"], period=period)]


async def dispatch_batch(conn: psycopg.AsyncConnection[Any], period: float) -> int:
    """Turn the next change-log rows into deliveries; returns how many rows were consumed."""
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT last_change FROM event_hook_cursor WHERE id = 1 FOR UPDATE")
        version = (await cur.fetchone() or (0,))[0]
        rc = conn.cursor(row_factory=dict_row)
        await rc.execute(
            "SELECT id, op, entity_type, entity_id, old_entity, new_entity FROM change_log "
            "WHERE id > %s ORDER BY id LIMIT %s", (version, BATCH))
        changes = await rc.fetchall()
        if not changes:
            return 0
        hooks = await _hooks_as_of(conn, version)
        off = await _disabled(conn) if hooks else set()
        rows: list[tuple] = []
        for change in changes:
            active = [h for hid, h in hooks.items() if hid not in off]
            for event in payloads.from_change(change) if active else ():
                rows += await fan_out(conn, active, event, change_id=change["id"],
                                      period=period)
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
        rows_ = await (await conn.execute(
            "SELECT h.entity FROM event_hooks h WHERE NOT EXISTS "
            "(SELECT 1 FROM event_hook_disabled d WHERE d.hook_id = h.id)")).fetchall()
        hooks = [r[0] for r in rows_]
        ev = payloads.Event(source, (event,), dict(data))
        rows = await fan_out(conn, hooks, ev, change_id=None, period=period)
        if await insert(conn, rows):
            await conn.execute(NOTIFY)
    return len(rows)
