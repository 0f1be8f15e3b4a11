"""The README's first command: `tidegate quickstart` starts everything, and every command it
prints works as printed; Ctrl-C stops every process it started."""

from __future__ import annotations

import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from shared import quickstart
from tests.procs import wait_for

PORTS = [int(a.rsplit(":", 1)[1]) for a in (quickstart.ADMIN, quickstart.CLUSTER,
                                            quickstart.STATUS, quickstart.PROXY, quickstart.DEMO)]


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _quickstart() -> tuple[subprocess.Popen[bytes], Path, Path]:
    """`tidegate quickstart` in a new state directory: the process, the directory, its output."""
    busy = [p for p in PORTS if _port_busy(p)]
    if busy:
        pytest.skip(f"the quickstart's fixed ports are in use: {busy}")
    root = Path(tempfile.mkdtemp(prefix="tgqs-", dir="/tmp"))
    root.chmod(0o755)
    out = root / "out.txt"
    proc = subprocess.Popen([sys.executable, "-m", "shared.cli", "quickstart", "--prefix",
                             str(root / "state")], stdout=out.open("wb"),
                            stderr=subprocess.STDOUT)
    return proc, root, out


def test_quickstart_and_its_printed_commands() -> None:
    proc, root, out = _quickstart()
    try:
        wait_for(lambda: proc.poll() is None and "Ctrl-C stops" in out.read_text(), 120,
                 "quickstart ready")
        commands = [line.strip() for line in out.read_text().splitlines()
                    if line.strip().startswith(("curl ", sys.executable))]
        assert len(commands) >= 6
        for command in commands:
            if "websockets" in command:  # interactive client: send one message, read the echo
                result = subprocess.run(shlex.split(command), input="hello-through-tidegate\n",
                                        capture_output=True, text=True, timeout=20)
                assert "Connected to" in result.stdout, result.stdout + result.stderr
                continue
            args = [*shlex.split(command), "--fail", "--max-time", "10"]
            ok = wait_for(lambda a=args: subprocess.run(a, capture_output=True).returncode == 0,
                          10, command)  # a new route takes a moment to reach the data plane
            assert ok
        hello = subprocess.run(["curl", "-s", f"http://{quickstart.PROXY}/hello/world"],
                               capture_output=True, text=True, check=True).stdout
        assert '"path": "/world"' in hello, "the route added over the Admin API proxies"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(90)
    assert "stopped" in out.read_text()
    deadline = time.monotonic() + 10
    while any(_port_busy(p) for p in PORTS) and time.monotonic() < deadline:
        time.sleep(0.1)  # polling until the children have released their ports
    assert not any(_port_busy(p) for p in PORTS), "every process the quickstart started stopped"
    subprocess.run(["rm", "-rf", str(root)])


def test_a_stop_signal_while_starting_stops_what_already_runs() -> None:
    """SIGTERM (or Ctrl-C) before the data plane is ready: the control plane and the demo
    upstream, already running, are stopped too, and the quickstart says so and exits 0."""
    proc, root, out = _quickstart()
    admin, demo = PORTS[0], PORTS[4]
    try:
        wait_for(lambda: _port_busy(admin) and _port_busy(demo), 90, "the control plane")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
        assert "Ctrl-C stops" not in out.read_text(), "the signal came after the start"
        assert "stopped" in out.read_text()
        wait_for(lambda: not any(_port_busy(p) for p in PORTS), 10, "every port released")
    finally:
        proc.kill()
        for leftover in (str(root), f"shared.demo_echo --listen {quickstart.DEMO}"):
            subprocess.run(["pkill", "-f", leftover])  # what a failed stop left behind
        subprocess.run(["rm", "-rf", str(root)])
