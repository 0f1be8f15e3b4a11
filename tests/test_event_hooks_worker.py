"""The event-hooks worker process of a real `tidegate cp start`: it runs at lower CPU priority
without secrets on its command line, its log lines reach the CP's log, the CP restarts it when
it dies, it dies with the CP (even a SIGKILLed one), it stops when its lifeline closes, and its
PostgreSQL sessions run at its own lower priority."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg

from cp.hooks.config import HooksConfig
from cp.hooks.priority import renice_backend_pid
from cp.hooks.worker_spec import WorkerSpec
from tests.procs import ControlPlane, wait_for

WORKER_MODULE = "cp.hooks.worker_main"


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def gone(pid: int) -> bool:
    """Exited: no longer listed, or a zombie nobody reaped (a container's PID 1 may not)."""
    stat = _stat(pid)
    return stat is None or stat[0] in ("Z", "X")


def workers_of(parent: int) -> list[int]:
    """Live event-hooks worker processes whose parent is `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is None or stat[1] != parent or gone(int(entry.name)):
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if WORKER_MODULE.encode() in cmdline:
            found.append(int(entry.name))
    return found


def one_worker(cp: ControlPlane, other_than: int | None = None) -> int:
    """The CP's single running worker (and not `other_than`), once it has lowered its priority."""
    def check() -> int | None:
        pids = [p for p in workers_of(cp.popen.pid) if p != other_than]
        if len(pids) == 1 and os.getpriority(os.PRIO_PROCESS, pids[0]) >= 10:
            return pids[0]
        return None

    return wait_for(check, 30, "one niced event-hooks worker")


def test_worker_lives_and_dies_with_the_control_plane(tmp_path, dsn, certs):
    cp = ControlPlane(tmp_path, dsn, certs, name="cp")
    try:
        first = one_worker(cp)
        cmdline = Path(f"/proc/{first}/cmdline").read_bytes().decode()
        assert dsn not in cmdline and "dbname" not in cmdline  # secrets go through the pipe

        status, _ = cp.api("POST", "/event-hooks", {"source": "crud", "event": "consumers",
                                                    "handler": "log"})
        assert status == 201
        assert cp.api("POST", "/consumers", {"username": "lois"})[0] == 201
        line = wait_for(lambda: next((ln for ln in cp.output().splitlines()
                                      if "log callback" in ln and "lois" in ln), None),
                        what="the log handler's line in the CP's log")
        assert "[cp " in line  # the worker's lines name the plane

        os.kill(first, signal.SIGKILL)  # the worker alone dies: the CP starts another
        second = one_worker(cp, other_than=first)
        wait_for(lambda: f"worker (pid {first}) exited with signal SIGKILL; restarting"
                 in cp.output(), what="the restart logged")
        assert cp.api("POST", "/consumers", {"username": "clark"})[0] == 201
        wait_for(lambda: "clark" in cp.output(), what="the new worker delivering")
    finally:
        cp.kill()
    wait_for(lambda: gone(second), 10, "the worker gone after the CP's SIGKILL")


def test_worker_stops_when_its_lifeline_closes(dsn):
    spec = WorkerSpec(dsn=dsn, config=HooksConfig(poll=0.2), node_id="lifeline", nice=0)
    proc = subprocess.Popen([sys.executable, "-m", WORKER_MODULE], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.write(spec.encode())
        proc.stdin.flush()
        for line in proc.stderr:  # wait until the engine runs (readiness, not a sleep)
            if b"event-hooks worker running" in line:
                break
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
        assert b"event-hooks worker stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_spec_round_trips_without_losing_settings():
    spec = WorkerSpec(dsn="postgresql://u:secret@h/db", config=HooksConfig(workers=3, poll=0.5),
                      node_id="n1", log_format="json", nice=5)
    assert WorkerSpec.decode(spec.encode()) == spec
    assert "secret" not in repr(spec)


def test_the_workers_database_sessions_run_at_its_priority(tmp_path, dsn, certs):
    """The worker's PostgreSQL backends get its niceness; the Admin API's keep theirs."""
    cp = ControlPlane(tmp_path, dsn, certs, name="cp")
    try:
        worker = one_worker(cp)
        nice = os.getpriority(os.PRIO_PROCESS, worker)

        def sessions() -> tuple[list[int], list[int]] | None:
            with psycopg.connect(dsn) as conn:
                rows = conn.execute(
                    "SELECT pid, application_name FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
            hooks = [pid for pid, app in rows if app == "tidegate-hooks"]
            others = [pid for pid, app in rows if app != "tidegate-hooks"]
            reniced = all(os.getpriority(os.PRIO_PROCESS, pid) == nice for pid in hooks)
            # (a session is reniced just after it connects: poll for it)
            return (hooks, others) if len(hooks) >= 2 and others and reniced else None

        assert nice >= 10
        _, others = wait_for(sessions, what="the worker's sessions (listener and pool) at "
                                            "its niceness")
        assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in others] == [0] * len(others)
    finally:
        cp.stop()


def test_only_a_fresh_local_postgres_backend_is_reniced():
    assert not renice_backend_pid(os.getpid(), 19)  # not a postgres process
    assert os.getpriority(os.PRIO_PROCESS, 0) == 0
    assert not renice_backend_pid(2**22 + 1, 19)  # no such process
