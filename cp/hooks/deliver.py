"""The delivery worker: claims due deliveries, runs their handlers, records every attempt.

A batch is claimed in one transaction that locks its rows and, with a transaction-level
advisory lock, each of their hooks, until its results are written: a hook is worked by one
loop of one node at a time, so its deliveries go out one after another in creation order (a
failed one is retried later, without holding back the rest); different hooks are served
concurrently. A node killed mid-delivery loses its transaction, the locks go, and the delivery
is attempted again (at-least-once; receivers dedupe on the `webhook-id` header, the
delivery's id).

Only a 2xx answer is a success. Other answers, connect errors and timeouts are retried with
exponential backoff and jitter (never sooner than `Retry-After`) until the retry period ends;
410 Gone disables the hook; errors that would repeat identically (Lua errors, template errors,
denied destinations) fail at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
from collections.abc import Callable
from itertools import groupby
from typing import Any

import psycopg
from psycopg.rows import dict_row

from cp.hooks import handlers
from cp.hooks.config import HooksConfig
from cp.hooks.handlers import HandlerContext
from cp.hooks.outcome import Outcome, failed

# Taken row by row in queue order, so a claim gets a hook's due deliveries from the first on,
# or none when another loop is working that hook (the lock is free again at its commit).
# Without it, two loops could split a hook's backlog and race each other to the receiver.
_HOOK_FREE = ("pg_try_advisory_xact_lock(hashtext('tidegate_hook_deliveries'), "
              "hashtext(d.hook_id::text))")
_CLAIM = f"""
SELECT d.id::text, d.hook_id::text, d.kind, d.payload, d.hook AS snapshot, d.attempts,
       extract(epoch FROM d.expires_at - clock_timestamp()) AS remaining,
       h.entity AS hook, EXISTS (SELECT 1 FROM event_hook_disabled x
                                 WHERE x.hook_id = d.hook_id) AS disabled
  FROM event_hook_deliveries d LEFT JOIN event_hooks h ON h.id = d.hook_id
 WHERE d.status = 'pending' AND d.next_attempt_at <= statement_timestamp() AND {_HOOK_FREE}
 ORDER BY d.next_attempt_at, d.seq
 LIMIT %s
 FOR UPDATE OF d
"""
# A batch's bookkeeping is one statement whatever its size: each delivery's new state and
# attempt (appended to its `tries`) travel as arrays, one per column, sent in binary (psycopg's
# text arrays cost ~15x more to build), and are unnested on the server. It is never prepared:
# a generic plan cannot see how many rows the arrays hold and may pick a hash join over the
# whole table (planned when the table was small, then kept as it grows); planned with its
# arrays, it looks each delivery up by its primary key.
_RESULTS = """
UPDATE event_hook_deliveries d
   SET status = r.status, attempts = d.attempts + r.tried,
       next_attempt_at = clock_timestamp() + make_interval(secs => r.delay),
       finished_at = CASE WHEN r.status = 'pending' THEN NULL ELSE clock_timestamp() END,
       last_error = r.error, last_status = r.http,
       tries = CASE WHEN r.try IS NULL THEN d.tries
                    ELSE d.tries || jsonb_build_array(r.try::jsonb) END
  FROM unnest(%b::uuid[], %b::text[], %b::int[], %b::float8[], %b::text[], %b::int[],
              %b::text[]) AS r(id, status, tried, delay, error, http, try)
 WHERE d.id = r.id
"""
_DISABLE = (
    "INSERT INTO event_hook_disabled (hook_id, reason) VALUES (%s, %s) "
    "ON CONFLICT (hook_id) DO NOTHING")


def backoff(attempts: int, config: HooksConfig) -> float:
    """Delay before retry number `attempts` (1-based): base x 4^(n-1), capped, +-20 % jitter."""
    delay = min(config.retry_max_delay, config.retry_base * 4 ** max(0, attempts - 1))
    return delay * random.uniform(0.8, 1.2)


def next_state(outcome: Outcome, attempts: int, remaining: float,
               config: HooksConfig) -> tuple[str, float]:
    """(status, seconds until the next attempt) after an attempt."""
    if outcome.ok:
        return "succeeded", 0.0
    if outcome.gone or not outcome.retry:
        return "failed", 0.0
    delay = backoff(attempts, config)
    if outcome.retry_after is not None:
        delay = max(delay, min(outcome.retry_after, config.retry_max_delay))
    return ("pending", delay) if delay < remaining else ("failed", 0.0)


async def _attempt(row: dict[str, Any], ctx: HandlerContext) -> Outcome | None:
    """Run one delivery; None means it is cancelled (its hook is gone or disabled)."""
    hook = row["snapshot"] if row["kind"] == "ping" else row["hook"]
    if hook is None or (row["disabled"] and row["kind"] != "ping"):
        return None
    try:
        return await handlers.run(hook, row["payload"], row["id"], ctx)
    except Exception as exc:  # a handler bug must not wedge the queue
        return failed(f"internal error: {type(exc).__name__}: {exc}", retry=True)


async def _serve_hook(rows: list[dict[str, Any]], ctx: HandlerContext) -> list[tuple]:
    """One hook's deliveries, in order: (row, started_at, outcome) triples."""
    done = []
    for row in rows:
        started = dt.datetime.now(dt.UTC)
        done.append((row, started, await _attempt(row, ctx)))
    return done


def _try(n: int, started: dt.datetime, outcome: Outcome, node_id: str) -> str:
    """One element of a delivery's `tries` (what GET .../deliveries shows as `attempts`)."""
    return json.dumps({
        "n": n, "at": round(started.timestamp(), 6), "response_status": outcome.status,
        "latency_ms": round(outcome.latency_ms, 3), "error": outcome.error, "node_id": node_id})


async def _record(conn: psycopg.AsyncConnection[Any], done: list[tuple],
                  config: HooksConfig) -> list[str]:
    """Write the attempts and results; returns each delivery's new status."""
    results: list[tuple[Any, ...]] = []
    gone = []
    for row, started, outcome in done:
        if outcome is None:
            results.append((row["id"], "cancelled", 0, 0.0, "hook deleted or disabled", None,
                            None))
            continue
        n = row["attempts"] + 1
        status, delay = next_state(outcome, n, float(row["remaining"]), config)
        results.append((row["id"], status, 1, delay, outcome.error, outcome.status,
                        _try(n, started, outcome, config.node_id)))
        if outcome.gone:
            gone.append((row["hook_id"], "receiver answered 410 Gone"))
    async with conn.cursor() as cur:
        await cur.execute(_RESULTS, _columns(results), prepare=False)
        if gone:
            await cur.executemany(_DISABLE, gone)
    return [r[1] for r in results]


def _columns(rows: list[tuple]) -> list[list[Any]]:
    """Rows → one list per column (the arrays the set-based statements unnest)."""
    return [list(column) for column in zip(*rows, strict=True)]


async def work_batch(conn: psycopg.AsyncConnection[Any], ctx: HandlerContext,
                     on_full: Callable[[], None] | None = None) -> int:
    """Claim, deliver and record one batch; returns how many deliveries it handled.
    `on_full` is called when the claim filled a whole batch: more may be waiting."""
    async with conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_CLAIM, (ctx.config.batch,))
        rows = await cur.fetchall()
        if not rows:
            return 0
        if on_full is not None and len(rows) == ctx.config.batch:
            on_full()
        by_hook = [list(g) for _, g in groupby(sorted(rows, key=lambda r: r["hook_id"]),
                                                key=lambda r: r["hook_id"])]
        served = await asyncio.gather(*(_serve_hook(g, ctx) for g in by_hook))
        statuses = await _record(conn, [d for group in served for d in group], ctx.config)
    ctx.deliveries.record(statuses)  # committed: count it
    return len(rows)


async def seconds_until_due(conn: psycopg.AsyncConnection[Any]) -> float | None:
    """How long until the earliest pending delivery of a hook nobody is working on is due
    (None: none). (`conn` is in autocommit: the hook lock it takes goes with the statement.)"""
    row = await (await conn.execute(
        "SELECT extract(epoch FROM d.next_attempt_at - clock_timestamp()) "
        f"FROM event_hook_deliveries d WHERE d.status = 'pending' AND {_HOOK_FREE} "
        "ORDER BY d.next_attempt_at LIMIT 1")).fetchone()
    return None if row is None or row[0] is None else max(0.0, float(row[0]))
