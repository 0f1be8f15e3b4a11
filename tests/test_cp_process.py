"""`tidegate cp start` as users run it: embedded PostgreSQL, Admin API on 127.0.0.1:8001-style
address, data kept across restarts, migrations commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import free_port

TIDEGATE = [sys.executable, "-m", "shared.cli"]


@pytest.fixture
def prefix() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="tgcp-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    pg = root / "postgres"
    if (pg / "postmaster.pid").exists():  # a failed test must not leave a server behind
        subprocess.run(["pg_ctl", "stop", "-D", str(pg), "-m", "immediate"],
                       capture_output=True, user="nobody" if os.geteuid() == 0 else None)
    subprocess.run(["rm", "-rf", str(root)])


def http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def start_cp(prefix: Path, port: int, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*TIDEGATE, "cp", "start", "--prefix", str(prefix / "state"),
         "--admin-listen", f"127.0.0.1:{port}", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if http("GET", f"http://127.0.0.1:{port}/status")[0] == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.1)  # polling for readiness, with a deadline
    proc.kill()
    raise AssertionError("control plane did not become ready")


def stop_cp(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def test_start_serves_and_keeps_data(prefix: Path) -> None:
    (prefix / "state").mkdir(mode=0o755)
    port = free_port()
    proc = start_cp(prefix, port)
    status, svc = http("POST", f"http://127.0.0.1:{port}/services",
                       {"name": "kept", "url": "http://kept.test"})
    assert status == 201
    out = stop_cp(proc)
    assert "embedded PostgreSQL" in out and f"127.0.0.1:{port}" in out

    proc = start_cp(prefix, port)
    try:
        status, again = http("GET", f"http://127.0.0.1:{port}/services/kept")
        assert status == 200 and again["id"] == svc["id"]
        status, root = http("GET", f"http://127.0.0.1:{port}/")
        assert "key-auth" in root["plugins"]["available_on_server"]
    finally:
        stop_cp(proc)


def test_admin_listens_on_loopback_by_default() -> None:
    from cp.settings import CPSettings

    assert CPSettings.from_sources(env={}).admin_listen == "127.0.0.1:8001"
    assert CPSettings.from_sources(env={"TIDEGATE_ADMIN_LISTEN": "0.0.0.0:9001"}).admin_listen \
        == "0.0.0.0:9001"


def test_migrations_commands(prefix: Path) -> None:
    state = ["--prefix", str(prefix / "state")]
    (prefix / "state").mkdir(mode=0o755)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*TIDEGATE, "cp", "migrations", *args, *state],
                              capture_output=True, text=True, timeout=120)

    status = run("status")
    assert "pending  0001_initial" in status.stdout
    up = run("up")
    assert up.returncode == 1 and "not bootstrapped" in up.stderr
    boot = run("bootstrap")
    assert boot.returncode == 0 and "migrated 0001_initial" in boot.stdout
    again = run("bootstrap")
    assert again.returncode == 1 and "already bootstrapped" in again.stderr
    status = run("status")
    assert "applied  0001_initial" in status.stdout and "up to date" in status.stdout


def test_bootstrap_password_with_rbac_enforced(prefix: Path) -> None:
    """`migrations bootstrap --password` sets the super-admin token `--enforce-rbac` requires."""
    (prefix / "state").mkdir(mode=0o755)
    boot = subprocess.run([*TIDEGATE, "cp", "migrations", "bootstrap", "--prefix",
                           str(prefix / "state"), "--password", "boot-secret-1"],
                          capture_output=True, text=True, timeout=120)
    assert boot.returncode == 0, boot.stderr
    assert "boot-secret-1" not in boot.stdout + boot.stderr, "secrets are never logged"
    port = free_port()
    proc = subprocess.Popen(
        [*TIDEGATE, "cp", "start", "--prefix", str(prefix / "state"),
         "--admin-listen", f"127.0.0.1:{port}", "--enforce-rbac"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/services"

        def answered() -> int | None:
            assert proc.poll() is None
            try:
                return http("GET", url)[0]
            except OSError:
                return None

        deadline = time.monotonic() + 60
        while answered() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # polling for readiness, with a deadline
        assert http("GET", url)[0] == 401
        req = urllib.request.Request(url, headers={"Kong-Admin-Token": "boot-secret-1"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
    finally:
        out = stop_cp(proc)
    assert "boot-secret-1" not in out
