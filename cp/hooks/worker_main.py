"""The event-hooks worker process: `python -m cp.hooks.worker_main`, started by `tidegate cp start`.

It runs the whole delivery engine (`HookEngine`: change-log dispatcher, delivery workers, and
through them the Lua sandbox processes) at a lower CPU priority than the control plane, so that
on a small machine Admin API writes keep the CPU they need and deliveries — durable rows in
PostgreSQL — catch up with what is left.

It reads its `WorkerSpec` as the first line of stdin and never outlives the control plane:
- the kernel SIGKILLs it when its parent dies (`prctl(PR_SET_PDEATHSIG)`), even if the parent
  was SIGKILLed; deliveries are recorded before they are attempted, so that is as safe as
  killing the control plane itself;
- EOF on stdin (the parent closed the pipe, or died) stops it cleanly, as does SIGTERM.
SIGINT is ignored: a Ctrl-C in a terminal reaches the whole process group, and the control
plane, which also gets it, stops this process itself.
Log lines go to the inherited stderr — the control plane's log — and name the plane `cp`.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys
import threading

from cp.hooks import counts
from cp.hooks.engine import HookEngine
from cp.hooks.worker_spec import WorkerSpec
from shared.logs import setup_logging

log = logging.getLogger("tidegate.hooks.worker")
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent exits; exit now if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the prctl took effect
        os._exit(1)


def watch_lifeline(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set `stop` when stdin reaches EOF (a blocking read, so in a daemon thread)."""
    def wait_eof() -> None:
        # os.read, not sys.stdin: a daemon thread blocked inside a buffered reader makes the
        # interpreter abort at exit ("could not acquire lock for <stdin>").
        while os.read(sys.stdin.fileno(), 4096):
            pass
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_eof, name="lifeline", daemon=True).start()


async def serve(spec: WorkerSpec) -> None:
    """Run the engine until SIGTERM or the lifeline closes."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    watch_lifeline(loop, stop)
    engine = HookEngine(spec.dsn, spec.config)
    await engine.start()
    reporter = None
    if spec.report_fd >= 0:  # delivery counts for the control plane's /metrics
        reporter = asyncio.create_task(counts.report(engine.ctx.deliveries, spec.report_fd))
    log.info("event-hooks worker running (pid %d, nice %d, %d delivery loops)",
             os.getpid(), os.nice(0), spec.config.workers)
    try:
        await stop.wait()
    finally:
        if reporter is not None:
            reporter.cancel()
        await engine.stop()
        log.info("event-hooks worker stopped")


def main() -> int:
    parent = os.getppid()
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    line = sys.stdin.buffer.readline()
    if not line:
        return 1  # the control plane went away before sending the spec
    spec = WorkerSpec.decode(line)
    setup_logging("cp", spec.node_id, spec.log_format)
    if spec.nice:
        os.nice(spec.nice)
    import uvloop

    uvloop.run(serve(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
