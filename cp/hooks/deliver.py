"""The delivery worker: claims due deliveries, runs their handlers, records every attempt.

A batch is claimed with `FOR UPDATE SKIP LOCKED` and stays locked until its results are written,
so each delivery is worked by one node at a time; a node killed mid-delivery loses its
transaction, the rows unlock, and the delivery is attempted again (at-least-once; receivers
dedupe on the `webhook-id` header, the delivery's id). Within a batch, a hook's deliveries go
out one after another in creation order; different hooks are served concurrently.

Only a 2xx answer is a success. Other answers, connect errors and timeouts are retried with
exponential backoff and jitter (never sooner than `Retry-After`) until the retry period ends;
410 Gone disables the hook; errors that would repeat identically (Lua errors, template errors,
denied destinations) fail at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from itertools import groupby
from typing import Any

import psycopg
from psycopg.rows import dict_row

from cp.hooks import handlers
from cp.hooks.config import HooksConfig
from cp.hooks.handlers import HandlerContext
from cp.hooks.outcome import Outcome, failed

_CLAIM = """
SELECT d.id::text, d.hook_id::text, d.kind, d.payload, d.hook AS snapshot, d.attempts,
       extract(epoch FROM d.expires_at - clock_timestamp()) AS remaining,
       h.entity AS hook, EXISTS (SELECT 1 FROM event_hook_disabled x
                                 WHERE x.hook_id = d.hook_id) AS disabled
  FROM event_hook_deliveries d LEFT JOIN event_hooks h ON h.id = d.hook_id
 WHERE d.status = 'pending' AND d.next_attempt_at <= clock_timestamp()
 ORDER BY d.next_attempt_at, d.seq
 LIMIT %s
 FOR UPDATE OF d SKIP LOCKED
"""
_ATTEMPT = (
    "INSERT INTO event_hook_attempts (delivery_id, n, started_at, latency_ms, response_status, "
    "error, node_id) VALUES (%s, %s, %s, %s, %s, %s, %s)")
_RESULT = (
    "UPDATE event_hook_deliveries SET status = %s, attempts = attempts + %s, "
    "next_attempt_at = clock_timestamp() + make_interval(secs => %s), "
    "finished_at = CASE WHEN %s = 'pending' THEN NULL ELSE clock_timestamp() END, "
    "last_error = %s, last_status = %s WHERE id = %s")
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


async def _record(conn: psycopg.AsyncConnection[Any], done: list[tuple],
                  config: HooksConfig) -> None:
    attempts, results, gone = [], [], []
    for row, started, outcome in done:
        if outcome is None:
            results.append(("cancelled", 0, 0.0, "cancelled", "hook deleted or disabled",
                            None, row["id"]))
            continue
        status, delay = next_state(outcome, row["attempts"] + 1, float(row["remaining"]),
                                   config)
        attempts.append((row["id"], row["attempts"] + 1, started, outcome.latency_ms,
                         outcome.status, outcome.error, config.node_id))
        results.append((status, 1, delay, status, outcome.error, outcome.status, row["id"]))
        if outcome.gone:
            gone.append((row["hook_id"], "receiver answered 410 Gone"))
    async with conn.cursor() as cur:
        if attempts:
            await cur.executemany(_ATTEMPT, attempts)
        await cur.executemany(_RESULT, results)
        if gone:
            await cur.executemany(_DISABLE, gone)


async def work_batch(conn: psycopg.AsyncConnection[Any], ctx: HandlerContext) -> int:
    """Claim, deliver and record one batch; returns how many deliveries it handled."""
    async with conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_CLAIM, (ctx.config.batch,))
        rows = await cur.fetchall()
        if not rows:
            return 0
        by_hook = [list(g) for _, g in groupby(sorted(rows, key=lambda r: r["hook_id"]),
                                                key=lambda r: r["hook_id"])]
        served = await asyncio.gather(*(_serve_hook(g, ctx) for g in by_hook))
        await _record(conn, [d for group in served for d in group], ctx.config)
    return len(rows)


async def seconds_until_due(conn: psycopg.AsyncConnection[Any]) -> float | None:
    """How long until the earliest pending delivery nobody is working on is due (None: none)."""
    row = await (await conn.execute(
        "SELECT extract(epoch FROM next_attempt_at - clock_timestamp()) "
        "FROM event_hook_deliveries WHERE status = 'pending' "
        "ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED")).fetchone()
    return None if row is None or row[0] is None else max(0.0, float(row[0]))
