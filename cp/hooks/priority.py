"""The delivery engine's PostgreSQL sessions at the engine's own (lower) CPU and I/O priority.

The worker process runs niced (worker_main), but much of a delivery's cost is in the PostgreSQL
backend serving it, which the postmaster starts at normal priority: on a small machine that
backend competes with the ones serving Admin API writes. So each engine session looks up its
backend's pid and gives it the engine process's niceness and the lowest best-effort I/O
priority.

(Commits stay synchronous on purpose. The engine's WAL is in the same stream as the Admin
API's, and an Admin API commit must flush every byte logged before it: when the engine
flushes its own WAL as it commits, much of that happens while no write waits; committed
asynchronously, it would all be flushed by Admin API commits, inside their critical section.)

This is only possible when PostgreSQL runs on this machine and we may renice its processes (as
root, or as the user PostgreSQL runs as); otherwise it is skipped silently. A pid from
`pg_backend_pid()` is only trusted when this machine has a process `postgres` with that pid
that started moments ago — the backend forked for the connection just made — so a remote
server's pid never renices an unrelated local process.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import psycopg

log = logging.getLogger("tidegate.hooks")
FRESH = 30.0  # seconds: how recently the backend must have started to be ours
_IOPRIO_SET = {"x86_64": 251, "aarch64": 30}.get(platform.machine())
_IOPRIO_CLASS_BE, _IOPRIO_CLASS_SHIFT, _IOPRIO_WHO_PROCESS = 2, 13, 1


def _started_seconds_ago(pid: int) -> float | None:
    """Age of a local `postgres` process, None when there is no such process."""
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
            return None
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    started = btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    return time.time() - started


def _lowest_io_priority(pid: int) -> None:
    """ioprio_set(best-effort, level 7); a no-op where the syscall number is unknown."""
    if _IOPRIO_SET is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    value = (_IOPRIO_CLASS_BE << _IOPRIO_CLASS_SHIFT) | 7
    libc.syscall(_IOPRIO_SET, _IOPRIO_WHO_PROCESS, pid, value)


def renice_backend_pid(pid: int, nice: int) -> bool:
    """Give a just-started local backend niceness `nice` (never raising its priority) and the
    lowest best-effort I/O priority; False when the pid is not such a backend or not ours."""
    age = _started_seconds_ago(pid)
    if age is None or not -2.0 <= age <= FRESH:  # (a little slack for clock rounding)
        return False
    try:
        if os.getpriority(os.PRIO_PROCESS, pid) < nice:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
    except OSError:  # not permitted (another user, no CAP_SYS_NICE), or already gone
        return False
    with contextlib.suppress(OSError):
        _lowest_io_priority(pid)
    if os.environ.get("XX_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    return True


async def lower_backend(conn: psycopg.AsyncConnection[Any]) -> None:
    """Give `conn`'s backend this process's niceness (nothing to do at niceness 0 or below)."""
    if os.environ.get("XX_ASYNC"):
        await conn.execute("SET synchronous_commit TO off")
    if os.environ.get("XX_IDLE") and os.sched_getscheduler(0) != os.SCHED_IDLE:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    if nice <= 0:
        return
    row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
    if row is not None and renice_backend_pid(int(row[0]), nice):
        log.debug("PostgreSQL backend %d runs at nice %d", row[0], nice)
