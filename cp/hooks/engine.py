"""The event-hook engine of one control-plane node: dispatcher, delivery workers, listener.

- the dispatcher follows the change log (woken by the store's NOTIFY, and polling as a safety
  net), turning committed writes into deliveries — see `dispatch`;
- `workers` delivery loops claim due deliveries — see `deliver`. New deliveries wake one idle
  loop; a loop that claims a full batch wakes another, so light traffic costs one claim per
  event while a backlog gets every loop;
- a pruning loop deletes finished deliveries older than the retention period — see `prune`;
- while Admin API writes come in a burst, the dispatcher and the delivery loops hold back,
  for a bounded time — see `pressure`;
- `emit(source, event, data)` records any other event (the data planes' balancer and
  rate-limiting-advanced events) durably through the same fan-out.

Nothing here runs on the Admin API's write path: a write only appends to the change log.
The engine's PostgreSQL sessions yield to the Admin API's: their commits do not wait for the
WAL flush, and they run at the engine process's niceness where allowed (see `priority`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from cp.hooks import deliver, dispatch, handlers, priority, prune
from cp.hooks.config import HooksConfig
from cp.hooks.fanout import DELIVERIES_CHANNEL
from cp.hooks.handlers import HandlerContext
from cp.hooks.outcome import Outcome
from cp.hooks.pressure import WritePressure
from cp.store import NOTIFY_CHANNEL

log = logging.getLogger("tidegate.hooks")
# Named, so pg_stat_activity (and the benchmark) tell the engine's sessions from the Admin API's.
CONNECT: dict[str, Any] = {"autocommit": True, "application_name": "tidegate-hooks"}


class HookEngine:
    def __init__(self, dsn: str, config: HooksConfig | None = None) -> None:
        self.dsn = dsn
        self.config = config or HooksConfig()
        self.ctx = HandlerContext(self.config)
        self.pool = AsyncConnectionPool(dsn, min_size=1, max_size=self.config.workers + 2,
                                        open=False, kwargs=CONNECT,
                                        configure=priority.configure)
        self._changes = asyncio.Event()
        self._due: list[asyncio.Event] = [asyncio.Event() for _ in range(self.config.workers)]
        self._idle: set[int] = set()  # delivery loops waiting for work
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._stopped = asyncio.Event()  # ends the waits of loops that wait long
        self.pressure = WritePressure(self.config.defer_above, self.config.max_defer)

    async def start(self) -> None:
        await self.pool.open(wait=True, timeout=30)
        loops = [self._listen(), self._dispatch_loop()]
        if self.config.retention > 0:  # 0: keep every delivery
            loops.append(self._prune_loop())
        loops += [self._worker_loop(i) for i in range(self.config.workers)]
        self._tasks = [asyncio.create_task(c, name="event-hooks") for c in loops]

    async def stop(self) -> None:
        self._stopping = True  # loops also check it: a cancellation can get swallowed
        self._stopped.set()
        self._changes.set()
        self._wake_workers()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.ctx.close()
        await self.pool.close()

    async def emit(self, source: str, event: str, data: dict[str, Any]) -> int:
        """Record an event of any catalogue source; returns the deliveries queued."""
        async with self.pool.connection() as conn:
            queued = await dispatch.emit(conn, source, event, data, self.config.retry_period)
        if queued:
            self._wake_one()
        return queued

    async def run_now(self, hook: dict[str, Any], payload: dict[str, Any],
                      delivery_id: str) -> Outcome:
        """Run a handler at once, outside the queue (POST /test, GET /ping)."""
        return await handlers.run(hook, payload, delivery_id, self.ctx)

    def _wake_workers(self) -> None:
        for event in self._due:
            event.set()

    def _wake_one(self) -> None:
        """Wake an idle delivery loop (busy ones look again when their batch is done)."""
        for index in self._idle:
            if not self._due[index].is_set():
                self._due[index].set()
                return

    async def _hold_back(self) -> None:
        """Wait while a burst of Admin API writes is on (see `pressure`)."""
        while not self._stopping and (hold := self.pressure.hold()) > 0:
            await _wait(self._stopped, min(hold, 0.05))

    async def _guarded(self, what: str, step: Any) -> None:
        """Run `step` until stopped, surviving database outages and bugs. (psycopg may turn a
        cancellation into a QueryCanceled error; the stopping flag ends the loop regardless.)"""
        while not self._stopping:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:
                    return
                if isinstance(exc, psycopg.Error | OSError):
                    log.warning("event hooks %s interrupted (%s); retrying", what, exc)
                else:
                    log.exception("event hooks %s failed; retrying", what)
                await asyncio.sleep(1)

    async def _listen(self) -> None:
        async def step() -> None:
            async with await psycopg.AsyncConnection.connect(self.dsn, **CONNECT) as conn:
                await priority.configure(conn)
                await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                await conn.execute(f"LISTEN {DELIVERIES_CHANNEL}")
                self._changes.set()
                self._wake_workers()
                while not self._stopping:
                    async for note in conn.notifies(timeout=self.config.poll):
                        if note.channel == NOTIFY_CHANNEL:
                            self.pressure.note_write()
                            self._changes.set()
                        else:
                            self._wake_one()

        await self._guarded("listener", step)

    async def _dispatch_loop(self) -> None:
        async def step() -> None:
            while not self._stopping:
                self._changes.clear()
                await self._hold_back()
                async with self.pool.connection() as conn:
                    # New deliveries notify DELIVERIES_CHANNEL on commit: that wakes a loop.
                    while await dispatch.dispatch_batch(conn, self.config.retry_period):
                        if self.pressure.hold():
                            self._changes.set()  # more may be waiting: look after the hold
                            break
                await _wait(self._changes, self.config.poll)
                # A burst of writes becomes one batch, not one pass (and transaction) each.
                await _wait(self._stopped, self.config.gather)

        await self._guarded("dispatcher", step)

    async def _prune_loop(self) -> None:
        async def step() -> None:
            while not self._stopping:
                async with self.pool.connection() as conn:
                    gone = await prune.prune(conn, self.config.retention)
                if gone:
                    log.info("pruned %d event-hook deliveries finished more than %g s ago",
                             gone, self.config.retention)
                await _wait(self._stopped, self.config.prune_every)

        await self._guarded("pruning", step)

    async def _worker_loop(self, index: int) -> None:
        due = self._due[index]

        async def step() -> None:
            while not self._stopping:
                due.clear()
                await self._hold_back()
                async with self.pool.connection() as conn:
                    while await deliver.work_batch(conn, self.ctx, on_full=self._wake_one):
                        if self.pressure.hold():
                            due.set()  # more may be due: look after the hold
                            break
                    until = await deliver.seconds_until_due(conn)
                wait = self.config.poll if until is None else min(self.config.poll, until)
                self._idle.add(index)
                try:
                    await _wait(due, max(wait, 0.005))
                finally:
                    self._idle.discard(index)

        await self._guarded("delivery worker", step)


async def _wait(event: asyncio.Event, timeout: float) -> None:
    """Until `event` is set or `timeout` passes. (asyncio.timeout, not wait_for: on 3.11
    wait_for can swallow a cancellation that races with the event, and stop() would hang.)"""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
