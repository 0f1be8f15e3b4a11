"""Reading and resetting deliveries for the Admin API (`/event-hooks/{id}/deliveries`)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from cp.hooks.fanout import NOTIFY

_LIST = """
SELECT d.seq, d.id::text, d.kind, d.source, d.event, d.status, d.attempts, d.change_id,
       d.created_at, d.next_attempt_at, d.expires_at, d.finished_at, d.last_error,
       d.last_status, d.tries
  FROM event_hook_deliveries d
 WHERE d.hook_id = %s AND (%s::bigint IS NULL OR d.seq < %s::bigint)
 ORDER BY d.seq DESC LIMIT %s
"""


def _epoch(value: Any) -> float | None:
    return None if value is None else round(value.timestamp(), 3)


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "kind": row["kind"], "source": row["source"], "event": row["event"],
        "status": row["status"], "attempts": row["tries"], "attempt_count": row["attempts"],
        "change_version": row["change_id"], "created_at": _epoch(row["created_at"]),
        "next_attempt_at": _epoch(row["next_attempt_at"]) if row["status"] == "pending"
        else None,
        "expires_at": _epoch(row["expires_at"]), "finished_at": _epoch(row["finished_at"]),
        "last_error": row["last_error"], "last_status": row["last_status"],
    }


async def list_deliveries(conn: psycopg.AsyncConnection[Any], hook_id: str, size: int,
                          before: int | None) -> tuple[list[dict[str, Any]], int | None]:
    """Newest first; returns (page, seq to continue before, or None on the last page)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_LIST, (hook_id, before, before, size + 1))
    rows = await cur.fetchall()
    more = rows[size - 1]["seq"] if len(rows) > size else None
    return [_shown(r) for r in rows[:size]], more


async def disabled_reason(conn: psycopg.AsyncConnection[Any], hook_id: str) -> str | None:
    row = await (await conn.execute(
        "SELECT reason FROM event_hook_disabled WHERE hook_id = %s", (hook_id,))).fetchone()
    return None if row is None else str(row[0])


async def retry(conn: psycopg.AsyncConnection[Any], hook_id: str, delivery_id: str,
                period: float) -> bool:
    """Queue a delivery again now, with a fresh retry period; False if there is no such one."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE event_hook_deliveries SET status = 'pending', "
            "next_attempt_at = clock_timestamp(), finished_at = NULL, "
            "expires_at = clock_timestamp() + make_interval(secs => %s) "
            "WHERE id = %s AND hook_id = %s", (period, delivery_id, hook_id))
        if cur.rowcount == 0:
            return False
        await conn.execute("DELETE FROM event_hook_disabled WHERE hook_id = %s", (hook_id,))
        await conn.execute(NOTIFY)
    return True
