"""The control plane's side of the event-hooks worker process: start it, restart it, stop it.

`WorkerSupervisor.start()` spawns `python -m cp.hooks.worker_main` with stdout and stderr
inherited (its lines land in the control plane's log), writes the `WorkerSpec` to its stdin and
keeps that pipe open as the worker's lifeline. When the worker exits while the control plane is
running it is logged and started again, after a delay that grows while it keeps dying young
(a database that is down, say) and resets once it has run for a while. `stop()` closes the
lifeline and sends SIGTERM, and SIGKILL if the worker has not exited within `grace` seconds.
Given `counts`, each worker also gets a pipe to report its delivery counts on (cp/hooks/counts.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import time

from cp.hooks import counts as delivery_counts
from cp.hooks.counts import DeliveryCounts
from cp.hooks.worker_spec import WorkerSpec

log = logging.getLogger("tidegate.cp")
WORKER = [sys.executable, "-m", "cp.hooks.worker_main"]


class WorkerSupervisor:
    def __init__(self, spec: WorkerSpec, grace: float = 10.0, first_delay: float = 0.5,
                 max_delay: float = 30.0, healthy_after: float = 30.0,
                 counts: DeliveryCounts | None = None) -> None:
        self.spec = spec
        self.counts = counts
        self._followers: set[asyncio.Task[None]] = set()  # one per worker, ends at its EOF
        self.grace = grace
        self.first_delay, self.max_delay, self.healthy_after = first_delay, max_delay, healthy_after
        self.proc: asyncio.subprocess.Process | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def start(self) -> None:
        """Spawn the worker and keep it running until `stop()`."""
        await self._spawn()
        self._task = asyncio.create_task(self._supervise(), name="event-hooks supervisor")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.proc is not None and self.proc.returncode is None:
            await self._terminate(self.proc)

    async def _spawn(self) -> None:
        if self.counts is None:
            proc = await asyncio.create_subprocess_exec(*WORKER, stdin=asyncio.subprocess.PIPE)
            spec = self.spec
        else:
            read_end, write_end = os.pipe()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *WORKER, stdin=asyncio.subprocess.PIPE, pass_fds=(write_end,))
            except OSError:
                os.close(read_end)
                raise
            finally:
                os.close(write_end)
            spec = dataclasses.replace(self.spec, report_fd=write_end)
            follower = asyncio.create_task(delivery_counts.follow(read_end, self.counts),
                                           name="event-hooks counts")
            self._followers.add(follower)
            follower.add_done_callback(self._followers.discard)
        assert proc.stdin is not None
        proc.stdin.write(spec.encode())
        await proc.stdin.drain()
        self.proc = proc
        log.info("event-hooks worker started (pid %d)", proc.pid)

    async def _supervise(self) -> None:
        delay = self.first_delay
        while not self._stopping.is_set():
            assert self.proc is not None
            started = time.monotonic()
            code = await self.proc.wait()
            if self._stopping.is_set():
                return
            delay = self.first_delay if time.monotonic() - started > self.healthy_after else delay
            log.warning("event-hooks worker (pid %d) exited with %s; restarting in %.1f s",
                        self.proc.pid, _describe(code), delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()  # a stop during the delay ends supervision
                    return
            delay = min(delay * 2, self.max_delay)
            try:
                await self._spawn()
            except OSError as exc:
                log.error("cannot start the event-hooks worker: %s", exc)

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        if proc.stdin is not None:
            proc.stdin.close()  # the lifeline: EOF alone stops the worker
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(self.grace):
                await proc.wait()
        except TimeoutError:
            log.warning("event-hooks worker (pid %d) did not stop in %.0f s; killing it",
                        proc.pid, self.grace)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _describe(code: int) -> str:
    """'code 1' or 'signal SIGKILL' (asyncio reports death by signal N as -N)."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"code {code}"
