"""The delivery engine's PostgreSQL sessions yield to the Admin API's (`configure`).

- Commits do not wait for the WAL flush (`synchronous_commit = off`). Admin API writes are
  serialized by the change-log lock, held until their commit is flushed; every flush the
  engine asks for competes with theirs for the WAL (one lock, one device), and the engine
  commits often (each dispatched batch, each delivered batch). Measured on a 2-core VM: with
  the engine running but no hook at all, Admin API writes ran ~25 % faster while the engine
  was stopped. Nothing that matters is lost: a database crash can lose the last engine
  commits; a lost delivery result means the delivery goes out again with the same id (at
  least once, as after a control-plane crash), and a lost dispatch is redone from the change
  log with the same delivery ids (fanout.delivery_row). `emit`, whose caller acknowledges once
  it returns, sets it back on for its transaction.
- CPU and I/O priority: the worker process runs niced (worker_main), but much of a delivery's
  cost is in the PostgreSQL backend serving it, which the postmaster starts at normal
  priority. So each engine session looks up its backend's pid and gives it the engine
  process's niceness and the lowest best-effort I/O priority.

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


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (field 3, the state, is [0])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _started_seconds_ago(pid: int) -> float | None:
    """Age of a local `postgres` process, None when there is no such process."""
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
            return None
        fields = _stat(pid)
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
    lower_autogroup(pid, nice)
    return True


def lower_autogroup(pid: int, nice: int) -> None:
    """Give `pid`'s autogroup niceness `nice` (never less nice), when `pid` leads its
    session: then the autogroup is that session's, not shared with processes we did not mean.

    With autogroups (kernel.sched_autogroup_enabled, the default on most distributions) the
    scheduler first shares the CPU between sessions, then by niceness within each. Every
    PostgreSQL backend starts a session of its own (setsid), so a backend's own niceness
    decides nothing against the other backends': its autogroup's niceness does."""
    try:
        session = int(_stat(pid)[3])  # field 6
        if session != pid:  # its autogroup may hold other processes: leave it alone
            return
        group = Path(f"/proc/{pid}/autogroup")
        current = int(group.read_text().rsplit("nice", 1)[1])
        if current < nice:
            group.write_text(str(nice))
    except (OSError, IndexError, ValueError):  # no autogroups, not permitted, gone
        pass


async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
    """Set up a new engine session (an autocommit connection) as described above."""
    await conn.execute("SET synchronous_commit TO off")
    await lower_backend(conn)


async def lower_backend(conn: psycopg.AsyncConnection[Any]) -> None:
    """Give `conn`'s backend this process's niceness (nothing to do at niceness 0 or below)."""
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    if nice <= 0:
        return
    row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
    if row is not None and renice_backend_pid(int(row[0]), nice):
        log.debug("PostgreSQL backend %d runs at nice %d", row[0], nice)
