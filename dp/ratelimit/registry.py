"""Counters by namespace, for the life of the process.

Plugin instances are rebuilt with every config snapshot; counters must not be. They live here,
one set per namespace (as Kong keeps them per namespace in a shared dict), so a config change
that keeps a plugin's namespace keeps its counts. Redis counters are rebuilt when what they
depend on changes (the `redis` record, `sync_rate`, the event loop); the old ones are closed.
WebSocket message counters are a namespace of their own (`<namespace>:messages`), so messages
and handshakes do not eat each other's budget.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from dp.ratelimit import clock
from dp.ratelimit.limiter import Counters, Policy, windows_of
from dp.ratelimit.local import LocalCounters
from dp.ratelimit.redis_store import RedisCounters

_local: dict[str, LocalCounters] = {}
_redis: dict[str, tuple[str, RedisCounters]] = {}
_closing: set[asyncio.Task[None]] = set()


def counters_for(namespace: str, conf: dict[str, Any]) -> Counters:
    """The counters a config uses: local unless it syncs with Redis."""
    if conf.get("strategy") != "redis" or conf.get("sync_rate") == -1:
        return _local.setdefault(namespace, LocalCounters())
    loop = asyncio.get_running_loop()
    fingerprint = json.dumps([id(loop), conf.get("sync_rate"), conf.get("redis")],
                             sort_keys=True)
    found = _redis.get(namespace)
    if found is not None and found[0] == fingerprint:
        return found[1]
    if found is not None:
        task = loop.create_task(found[1].close())
        _closing.add(task)
        task.add_done_callback(_closing.discard)
    counters = RedisCounters(namespace, conf.get("redis") or {}, float(conf["sync_rate"]),
                             lambda: clock.now())  # the clock of the moment, see clock.py
    _redis[namespace] = (fingerprint, counters)
    return counters


def policy_for(conf: dict[str, Any]) -> Policy:
    """The plugin's limits on requests (and WebSocket handshakes)."""
    return Policy(windows_of(conf["limit"], conf["window_size"]), conf["window_type"],
                  bool(conf.get("disable_penalty")), counters_for(conf["namespace"], conf))


def message_policy_for(conf: dict[str, Any]) -> Policy:
    """The plugin's limits on WebSocket client messages (`websocket.limit`, else `limit`)."""
    ws = conf.get("websocket") or {}
    limits, sizes = ws.get("limit"), ws.get("window_size")
    if not limits or not sizes:
        limits, sizes = conf["limit"], conf["window_size"]
    return Policy(windows_of(limits, sizes), conf["window_type"],
                  bool(conf.get("disable_penalty")),
                  counters_for(f"{conf['namespace']}:messages", conf))


async def close_all() -> None:
    """Close every Redis connection and forget all counters (tests, shutdown)."""
    redis = [counters for _, counters in _redis.values()]
    _redis.clear()
    _local.clear()
    for counters in redis:
        await counters.close()
