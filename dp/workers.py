"""The main process's side of `--workers N`: start, feed, watch and stop N proxy workers.

Each worker (dp/worker.py) is a fresh `python -m dp.worker` process (spawned, not forked: the
main process runs an event loop and the cluster link's TLS state, which a fork would copy) with
one unix socket pair to the main process. The pool sends every worker the current config when it
starts and each new one as it is applied (encoded once, see dp/ipc.py), plus target health
decided here (dp/health_sync.py); it collects the workers' events into the node's one event
queue, their request counters for /status and their traffic counters for /metrics
(dp/metrics.py). A worker that exits is logged and started again
(with a growing delay if it keeps dying at once); `stop()` asks every worker to drain and waits
for them up to a deadline, then kills what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dp import ipc
from dp.balancer import Balancers
from dp.events import EventQueue
from dp.health_sync import HealthRow, apply_reported, health_rows
from dp.metrics import Counts
from dp.running import Snapshot

log = logging.getLogger("tidegate.dp.workers")
ROOT = Path(__file__).resolve().parent.parent  # so `-m dp.worker` imports this checkout
STATS_TIMEOUT = 1.0


@dataclass
class WorkerHandle:
    """One worker slot; its process is replaced when it dies."""

    index: int
    proc: asyncio.subprocess.Process | None = None
    channel: ipc.Channel | None = None
    started_at: float = 0.0
    restarts: int = 0
    listening: bool = False
    version: str | None = None  # the config it last applied
    served: bool = False  # has listened with a config at least once (stays true)
    stats: dict[str, Any] = field(default_factory=dict)
    waiter: asyncio.Future[None] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # its last Counts.snapshot()
    metrics_waiter: asyncio.Future[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def send(self, kind: int, payload: bytes) -> None:
        if self.channel is not None:
            self.channel.send(kind, payload)


class WorkerPool:
    def __init__(self, count: int, hello: dict[str, Any], balancers: Balancers,
                 events: EventQueue) -> None:
        self.hello = hello
        self.balancers = balancers
        self.events = events
        self.workers = [WorkerHandle(i) for i in range(count)]
        self.ports: dict[str, int] = {}
        self._config: bytes | None = None
        self._stopping = asyncio.Event()
        self.retired = Counts()  # what exited workers had counted (counters never go back)
        self._tasks: list[asyncio.Task[None]] = []

    # -- what the node calls -----------------------------------------------------------

    def start(self) -> None:
        for w in self.workers:
            self._tasks.append(asyncio.get_running_loop().create_task(
                self._supervise(w), name=f"worker-{w.index}"))

    def publish(self, snapshot: Snapshot) -> None:
        """A RunningConfig listener: send the new config (and the health that goes with the
        rebuilt balancers) to every worker."""
        self._config = ipc.encode_snapshot(snapshot)
        health = self._health_frame(health_rows(self.balancers))
        for w in self.workers:
            w.send(ipc.CONFIG, self._config)
            w.send(ipc.HEALTH, health)

    def broadcast_health(self, rows: list[HealthRow]) -> None:
        frame = self._health_frame(rows)
        for w in self.workers:
            w.send(ipc.HEALTH, frame)

    @property
    def ready(self) -> bool:
        """Every worker has served with a config (a later restart does not undo this)."""
        return all(w.served for w in self.workers)

    async def refresh_stats(self) -> None:
        """Ask every live worker for its counters; wait up to STATS_TIMEOUT for the answers."""
        loop = asyncio.get_running_loop()
        waiting = []
        for w in self.workers:
            if w.channel is None or not w.alive:
                continue
            if w.waiter is None or w.waiter.done():
                w.waiter = loop.create_future()
                w.send(ipc.STATS, b"{}")
            waiting.append(w.waiter)
        if waiting:
            await asyncio.wait(waiting, timeout=STATS_TIMEOUT)

    async def traffic(self) -> Counts:
        """The workers' traffic counters, summed: each live worker's as it answers now (its last
        answer if it is slow), plus those of workers that exited."""
        loop = asyncio.get_running_loop()
        waiting = []
        for w in self.workers:
            if w.channel is None or not w.alive:
                continue
            if w.metrics_waiter is None or w.metrics_waiter.done():
                w.metrics_waiter = loop.create_future()
                w.send(ipc.METRICS, b"{}")
            waiting.append(w.metrics_waiter)
        if waiting:
            await asyncio.wait(waiting, timeout=STATS_TIMEOUT)
        total = Counts()
        total.add(self.retired.snapshot())
        for w in self.workers:
            total.add(w.metrics)
        return total

    def status(self) -> list[dict[str, Any]]:
        return [{"index": w.index, "pid": w.pid, "alive": w.alive, "listening": w.listening,
                 "restarts": w.restarts, "config_version": w.version,
                 "connections": w.stats.get("connections", 0),
                 "requests": w.stats.get("requests", 0)} for w in self.workers]

    async def stop(self, drain: float) -> None:
        """Ask every worker to drain for up to `drain` seconds; kill any still there after."""
        self._stopping.set()
        body = json.dumps({"drain": drain}).encode()
        for w in self.workers:
            w.send(ipc.STOP, body)
        procs = [w.proc for w in self.workers if w.alive and w.proc is not None]
        if procs:
            _, late = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in procs],
                                         timeout=drain + 3)
            for p in procs:
                if p.returncode is None:
                    log.warning("worker pid %d did not stop in time; killing it", p.pid)
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
            for t in late:
                await t
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- one worker's life ---------------------------------------------------------------

    async def _supervise(self, w: WorkerHandle) -> None:
        delay = 0.1
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                await self._spawn(w)
                await self._serve_channel(w)
                assert w.proc is not None
                code = await w.proc.wait()
            except OSError as exc:
                log.error("worker %d could not start: %s", w.index, exc)
                code = None
            finally:
                w.listening = False
                if w.channel is not None:
                    w.channel.close()
                    w.channel = None
                if w.waiter is not None and not w.waiter.done():
                    w.waiter.set_result(None)
                self.retired.add(w.metrics)
                w.metrics = {}
                if w.metrics_waiter is not None and not w.metrics_waiter.done():
                    w.metrics_waiter.set_result(None)
            if self._stopping.is_set():
                return
            w.restarts += 1
            log.warning("worker %d (pid %s) exited (%s); restarting", w.index, w.pid,
                        _describe(code))
            delay = 0.1 if time.monotonic() - started > 5 else min(delay * 2, 5.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _spawn(self, w: WorkerHandle) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT),
                                                            os.environ.get("PYTHONPATH"))))}
        try:
            w.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "dp.worker", "--channel-fd", str(child.fileno()),
                "--index", str(w.index), pass_fds=(child.fileno(),), env=env)
        except OSError:
            parent.close()
            raise
        finally:
            child.close()
        w.started_at = time.time()
        w.version, w.stats = None, {}
        w.channel = await ipc.Channel.from_socket(parent)
        w.channel.send_json(ipc.HELLO, {**self.hello, "index": w.index})
        if self._config is not None:  # read after the awaits: the newest config
            w.send(ipc.CONFIG, self._config)
            w.send(ipc.HEALTH, self._health_frame(health_rows(self.balancers)))
        w.send(ipc.START, b"{}")
        log.info("worker %d started (pid %d)", w.index, w.proc.pid)

    async def _serve_channel(self, w: WorkerHandle) -> None:
        """Handle what the worker sends until its channel closes (it exited)."""
        channel = w.channel
        assert channel is not None
        while True:
            try:
                kind, payload = await channel.receive()
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            body = json.loads(payload)
            if kind == ipc.READY:
                w.listening = True
                self.ports.update(body["listeners"])
                w.served = w.served or w.version is not None
            elif kind == ipc.APPLIED:
                w.version = body["version"]
                w.served = w.served or w.listening
            elif kind == ipc.EVENT:
                self._event(body)
            elif kind == ipc.STATS:
                w.stats = body
                if w.waiter is not None and not w.waiter.done():
                    w.waiter.set_result(None)
            elif kind == ipc.METRICS:
                w.metrics = body
                if w.metrics_waiter is not None and not w.metrics_waiter.done():
                    w.metrics_waiter.set_result(None)

    def _event(self, body: dict[str, Any]) -> None:
        if body.get("source") == "balancer" and body.get("event") == "health":
            apply_reported(self.balancers, body["data"])  # queued (once) if it is news here
        else:
            self.events.put(body["source"], body["event"], body["data"], body.get("at"))

    @staticmethod
    def _health_frame(rows: list[HealthRow]) -> bytes:
        return json.dumps({"targets": rows}, separators=(",", ":")).encode()


def _describe(code: int | None) -> str:
    if code is None:
        return "never started"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
