"""The `redis` strategy: one set of counters for every data plane that shares the Redis.

Keys are `tidegate:rla:{namespace}:{size}:{index}:{key}` (the window index is floor(now / size),
the same on every node), incremented with INCRBY and expiring two windows later. One Lua script
increments the current window's keys and reads the previous window's, so a request costs one
round trip for all its windows; and while a round trip is in flight, the requests that arrive
wait for the next one together (merged per key, each still told its own exact count), so under
load one round trip serves many requests.

`sync_rate` says when hits reach Redis:

- 0: every request increments in Redis and uses the totals it answers (exact across nodes);
- > 0: hits are counted here and pushed every `sync_rate` seconds, which also refreshes the
  totals the other nodes pushed; the first hit on a key in a window reads Redis once, so a node
  starts from the shared count rather than from zero;
- WebSocket frame handlers cannot wait, so frames are always counted here and pushed at once in
  the background (`add_nowait`).

Redis trouble never fails a request. On the first error the store is marked down, logged once,
and every node counts on its own (`LocalCounters`, which always counts this node's hits); a
background probe PINGs until Redis answers, logs that it is back, and pushes what was counted
meanwhile (for windows still open). The client has no retries with back-off and bounded
timeouts (`redis.connect_timeout`/`read_timeout`, else `timeout`), so a dead Redis costs a
request at most one timeout, and only the first request after it went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from math import floor
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from dp.ratelimit.local import LocalCounters
from dp.ratelimit.windows import Clock, number

log = logging.getLogger("tidegate.plugin.rate-limiting-advanced")

PROBE_FIRST, PROBE_MAX = 0.25, 2.0  # seconds between reconnect attempts (doubling)
PRUNE_EVERY = 30.0
MAX_IN_FLIGHT = 1  # one round trip at a time: calls made meanwhile share the next

# KEYS: current and previous window key per slot; ARGV: increment and ttl per slot.
# Per slot: INCRBY (a plain GET for 0) with the ttl, then GET the previous window's count.
COUNT_SCRIPT = """
local out = {}
for i = 1, #KEYS, 2 do
  local n = tonumber(ARGV[i])
  local current
  if n ~= 0 then
    current = redis.call('INCRBY', KEYS[i], n)
    redis.call('EXPIRE', KEYS[i], ARGV[i + 1])
  else
    current = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
  out[#out + 1] = current
  out[#out + 1] = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
end
return out
"""
FAILURES = (RedisError, OSError, asyncio.TimeoutError)

Slot = tuple[str, float, int]  # (key, window size, window index)
_NOTHING = (0.0, 0.0)


def client_for(conf: dict[str, Any]) -> aioredis.Redis:
    """A redis-py asyncio client from the plugin's `redis` record (Kong's field names): a
    pool of at most `keepalive_pool_size` connections (a request waits for a free one rather
    than failing), one immediate retry (a connection Redis dropped), no back-off."""
    default = conf.get("timeout") or 2000

    def seconds(name: str) -> float | None:
        ms = conf.get(name)
        ms = default if ms is None else ms
        return ms / 1000 if ms else None

    options: dict[str, Any] = {"connection_class": Connection}
    if conf.get("ssl"):
        verify = bool(conf.get("ssl_verify"))
        options = {"connection_class": SSLConnection, "ssl_check_hostname": verify,
                   "ssl_cert_reqs": "required" if verify else "none"}
    pool = aioredis.BlockingConnectionPool(
        max_connections=int(conf.get("keepalive_pool_size") or 256),
        timeout=seconds("connect_timeout"),
        host=conf.get("host") or "127.0.0.1", port=int(conf.get("port") or 6379),
        db=int(conf.get("database") or 0), username=conf.get("username"),
        password=conf.get("password"), socket_connect_timeout=seconds("connect_timeout"),
        socket_timeout=seconds("read_timeout"), retry=Retry(NoBackoff(), 1), **options)
    return aioredis.Redis(connection_pool=pool)


class RedisCounters:
    """Shared counters of one namespace, with local fallback and background sync."""

    def __init__(self, namespace: str, conf: dict[str, Any], sync_rate: float,
                 clock: Clock) -> None:
        self.namespace = namespace
        self.where = f"{conf.get('host')}:{conf.get('port')}"
        self.sync_rate = sync_rate
        self.clock = clock
        self.client = client_for(conf)
        self._script = self.client.register_script(COUNT_SCRIPT)
        self._waiting: list[tuple[dict[Slot, float], asyncio.Future[Any]]] = []
        self._in_flight = 0
        self.local = LocalCounters()  # this node's own hits: the fallback
        self.shared: dict[Slot, tuple[float, float]] = {}  # last totals Redis answered
        self.pending: dict[Slot, float] = {}  # hits not yet in Redis
        self.up = True
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._spawn(self._sync_loop())

    # ---- the request path ---------------------------------------------------------------------

    async def add(self, key: str, sizes: list[float], now: float,
                  n: float = 1) -> list[tuple[float, float]]:
        """Count `n` hits on every window; (current, previous) totals per window.
        (Every request of a Redis-limited route: loops rather than comprehensions, and no
        coroutine below this one.)"""
        ready = self.add_ready(key, sizes, now, n)
        if ready is not None:
            return ready
        local = self.local.add_many(key, sizes, now, n)
        slots = self._slots(key, sizes, now)
        try:
            if self.sync_rate == 0:
                return await self._enqueue(dict.fromkeys(slots, n))
            shared = self.shared
            missing: dict[Slot, float] = {}
            for slot in slots:
                if slot not in shared:
                    missing[slot] = 0
            await self._enqueue(missing)
        except FAILURES as exc:
            self._went_down(exc)
            self._queue(slots, n)
            return local
        self._queue(slots, n)
        return self._views(slots, local)

    def add_ready(self, key: str, sizes: list[float], now: float,
                  n: float = 1) -> list[tuple[float, float]] | None:
        """`add` when it has nothing to wait for: Redis is down (counted here), or hits are
        pushed later (`sync_rate` > 0) and every window's shared total is known. Otherwise
        None, and nothing is counted: then `add` must be awaited. Most requests of a
        `sync_rate` > 0 route are ready, and then cost no coroutine."""
        if self.up:
            if self.sync_rate == 0:
                return None
            shared = self.shared
            for size in sizes:
                if (key, size, floor(now / size)) not in shared:
                    return None
        return [self._count_ready(key, size, floor(now / size), now, n) for size in sizes]

    def add_one_ready(self, key: str, size: float, now: float,
                      n: float = 1) -> tuple[float, float] | None:
        """`add_ready` on one window size (the usual config): its totals, or None."""
        index = floor(now / size)
        if self.up and (self.sync_rate == 0 or (key, size, index) not in self.shared):
            return None
        return self._count_ready(key, size, index, now, n)

    def _count_ready(self, key: str, size: float, index: int, now: float,
                     n: float) -> tuple[float, float]:
        """Count `n` hits on one window whose shared total is known (or with Redis down),
        here and in the queue for Redis; the totals to judge by (`_view`)."""
        mine = self.local.window(size).add(key, now, n)
        slot = (key, size, index)
        self.pending[slot] = self.pending.get(slot, 0) + n
        if not self.up:
            return mine.current, mine.previous
        return self._view(slot, mine.current, mine.previous)

    def add_nowait(self, key: str, sizes: list[float], now: float,
                   n: float = 1) -> list[tuple[float, float]]:
        """Count `n` hits without waiting (frame handlers): pushed in the background."""
        out = [self._count_ready(key, size, floor(now / size), now, n) for size in sizes]
        if self.up and self.sync_rate == 0:
            self._wake.set()
        return out

    @staticmethod
    def _slots(key: str, sizes: list[float], now: float) -> list[Slot]:
        out = []
        for size in sizes:
            out.append((key, size, floor(now / size)))
        return out

    def undo(self, key: str, sizes: list[float], now: float, n: float = 1) -> None:
        """Take back hits counted by `add` (a denied request that must not count)."""
        self.local.undo(key, sizes, now, n)
        for size in sizes:
            slot = (key, size, floor(now / size))
            self.pending[slot] = self.pending.get(slot, 0) - n
        self._wake.set()

    def _views(self, slots: list[Slot], local: list[tuple[float, float]]
               ) -> list[tuple[float, float]]:
        """`_view` of each slot, with this node's own counts of it."""
        return [self._view(slot, *mine) for slot, mine in zip(slots, local, strict=True)]

    def _view(self, slot: Slot, mine: float, mine_before: float) -> tuple[float, float]:
        """The (current, previous) totals Redis last gave for a slot plus what is not pushed
        yet; never below this node's own counts. (Every counted hit with `sync_rate` > 0:
        comparisons rather than max(), a slower call on Python 3.11.)"""
        key, size, index = slot
        pending = self.pending
        current, previous = self.shared.get(slot, _NOTHING)
        current += pending.get(slot, 0)
        previous += pending.get((key, size, index - 1), 0)
        return (current if current > mine else mine,
                previous if previous > mine_before else mine_before)

    def _queue(self, slots: list[Slot], n: float) -> None:
        for slot in slots:
            self.pending[slot] = self.pending.get(slot, 0) + n

    # ---- talking to Redis ----------------------------------------------------------------------

    def _rkey(self, slot: Slot) -> str:
        key, size, index = slot
        return f"tidegate:rla:{self.namespace}:{number(size)}:{index}:{key}"

    async def _push(self, increments: dict[Slot, float]) -> list[tuple[float, float]]:
        """INCRBY each slot (0 just reads it) and read its previous window; (current,
        previous) per slot, as if this call's increments were applied alone, in order."""
        return await self._enqueue(increments)

    def _enqueue(self, increments: dict[Slot, float]
                 ) -> asyncio.Future[list[tuple[float, float]]]:
        """`_push` without its coroutine (the request path awaits this future directly).

        Calls are batched: while a round trip is in flight, the calls made meanwhile wait and
        go together in the next one, merged per slot (one script for all their keys), so under
        load a round trip serves many requests and each still gets its own exact count."""
        future: asyncio.Future[list[tuple[float, float]]] = (
            asyncio.get_running_loop().create_future())
        self._waiting.append((increments, future))
        if self._in_flight < MAX_IN_FLIGHT:
            self._in_flight += 1
            self._spawn(self._drain())
        return future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._round_trip(batch)
        finally:
            self._in_flight -= 1

    async def _round_trip(self, batch: list[tuple[dict[Slot, float], asyncio.Future[Any]]]
                          ) -> None:
        merged: dict[Slot, float] = {}
        for increments, _ in batch:
            for slot, n in increments.items():
                merged[slot] = merged.get(slot, 0) + n
        keys: list[str] = []
        args: list[int] = []
        for (key, size, index), n in merged.items():
            keys += [self._rkey((key, size, index)), self._rkey((key, size, index - 1))]
            args += [int(n), math.ceil(2 * size) + 1]
        try:
            reply = await self._script(keys=keys, args=args)
        except FAILURES as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        running: dict[Slot, float] = {}
        for i, (slot, n) in enumerate(merged.items()):
            current, previous = float(reply[2 * i]), float(reply[2 * i + 1])
            self.shared[slot] = (current, previous)
            running[slot] = current - n  # before this batch
        for increments, future in batch:
            out = []
            for slot, n in increments.items():
                running[slot] += n
                out.append((running[slot], self.shared[slot][1]))
            if not future.done():
                future.set_result(out)

    def _prune(self, now: float) -> set[Slot]:
        """Forget windows that closed (older than the previous one); the open slots."""
        def live(slot: Slot) -> bool:
            return slot[2] >= floor(now / slot[1]) - 1

        self.shared = {s: v for s, v in self.shared.items() if live(s)}
        self.pending = {s: n for s, n in self.pending.items() if live(s)}
        return {s for s in self.shared if s[2] >= floor(now / s[1])}

    async def flush(self) -> None:
        """Push pending hits (and, with sync_rate > 0, refresh the totals of open windows)."""
        open_slots = self._prune(self.clock())
        batch, self.pending = self.pending, {}
        if self.sync_rate > 0:
            batch.update({s: batch.get(s, 0) for s in open_slots})
        if not batch:
            return
        try:
            await self._push(batch)
        except FAILURES as exc:
            for slot, n in batch.items():  # keep them for when Redis is back
                self.pending[slot] = self.pending.get(slot, 0) + n
            self._went_down(exc)

    async def _sync_loop(self) -> None:
        """Flush every `sync_rate` seconds, and whenever woken (frames, undos, Redis back);
        with sync_rate 0 at least every PRUNE_EVERY seconds, which forgets closed windows."""
        interval = self.sync_rate if self.sync_rate > 0 else PRUNE_EVERY
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            try:
                if self.up:
                    await self.flush()
                else:
                    self._prune(self.clock())
            except Exception:  # a bug here must not stop syncing for good
                log.exception("rate-limiting-advanced: syncing counters failed")

    # ---- losing and finding Redis --------------------------------------------------------------

    def _went_down(self, exc: BaseException) -> None:
        if not self.up:
            return
        self.up = False
        log.warning("rate-limiting-advanced: Redis at %s unreachable (%s); counting locally "
                    "on this data plane until it is back", self.where,
                    str(exc) or type(exc).__name__)
        self._spawn(self._probe())

    async def _probe(self) -> None:
        delay = PROBE_FIRST
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                await self.client.ping()
            except FAILURES:
                delay = min(delay * 2, PROBE_MAX)
                continue
            self.up = True
            log.warning("rate-limiting-advanced: Redis at %s reachable again; counters are "
                        "shared again", self.where)
            self._wake.set()
            return

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(*FAILURES):
            await self.client.aclose()
