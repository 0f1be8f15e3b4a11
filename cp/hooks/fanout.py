"""One event → the deliveries of the hooks it matches, inserted in the caller's transaction."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from cp.hooks import payloads, throttle
from cp.hooks.payloads import Event
from shared.events import SOURCE_PLANE

DELIVERIES_CHANNEL = "tidegate_hook_deliveries"
NOTIFY = f"SELECT pg_notify('{DELIVERIES_CHANNEL}', '')"
_INSERT = (
    "INSERT INTO event_hook_deliveries "
    "(id, hook_id, kind, source, event, payload, hook, change_id, expires_at) VALUES "
    "(%s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp() + make_interval(secs => %s))")


def delivery_row(hook_id: str, kind: str, source: str, event: str, payload: dict[str, Any],
                 *, hook: dict[str, Any] | None, change_id: int | None,
                 period: float) -> tuple[Any, ...]:
    return (str(uuid.uuid4()), hook_id, kind, source, event, Jsonb(payload),
            Jsonb(hook) if hook is not None else None, change_id, period)


async def insert(conn: psycopg.AsyncConnection[Any], rows: list[tuple[Any, ...]]) -> int:
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(_INSERT, rows)
    return len(rows)


def _runs_here(hook: dict[str, Any], source: str) -> bool:
    """The log handler runs on the plane where the event happened (Kong's hybrid mode)."""
    return not (hook.get("handler") == "log" and SOURCE_PLANE.get(source) == "dp")


async def fan_out(conn: psycopg.AsyncConnection[Any], hooks: list[dict[str, Any]],
                  event: Event, *, change_id: int | None, period: float) -> list[tuple]:
    """Delivery rows for every matching hook that snooze/on_change let through."""
    rows = []
    for hook in hooks:
        name = payloads.matches(hook, event)
        if name is None or not _runs_here(hook, event.source):
            continue
        if not await throttle.should_fire(conn, hook, event.source, name, event.data):
            continue
        rows.append(delivery_row(hook["id"], "event", event.source, name,
                                 payloads.payload(event, name), hook=None,
                                 change_id=change_id, period=period))
    return rows
