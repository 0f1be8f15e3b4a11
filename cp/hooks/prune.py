"""Deleting old deliveries: finished ones (succeeded, failed, cancelled) once they have been
finished for longer than the retention period. Their attempts live in their rows.

Pending deliveries are never deleted, however old: they are still owed to their receiver.
A finished delivery was created before it finished, and delivery ids begin with their
creation time (fanout.delivery_id), so every one that qualifies has an id below the first id
of the cutoff time: the scan is a range of the primary key, its old end. Chunks are small and
skip rows another node is deleting (or a retry is resetting), so pruning never holds many
locks for long and several control-plane nodes can prune at once.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from cp.hooks.fanout import first_id_at

CHUNK = 2000

_PRUNE = """
DELETE FROM event_hook_deliveries WHERE id IN (
    SELECT id FROM event_hook_deliveries
     WHERE id < %(below)s::uuid
       AND status <> 'pending'
       AND finished_at < clock_timestamp() - make_interval(secs => %(keep)s)
     ORDER BY id
     LIMIT %(chunk)s
       FOR UPDATE SKIP LOCKED)
"""


async def prune(conn: psycopg.AsyncConnection[Any], retention: float,
                chunk: int = CHUNK) -> int:
    """Delete every delivery finished more than `retention` seconds ago, a chunk per
    transaction (`conn` in autocommit); returns how many were deleted."""
    if retention <= 0:
        return 0
    below = first_id_at(time.time() - retention)
    total = 0
    while True:
        cur = await conn.execute(_PRUNE, {"below": below, "keep": retention, "chunk": chunk},
                                 prepare=False)  # planned for this bound: a range of the key
        total += cur.rowcount
        if cur.rowcount < chunk:
            return total
