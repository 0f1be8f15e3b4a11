"""Real tidegate processes for integration tests: start, wait for readiness, stop, read logs."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

TIDEGATE = [sys.executable, "-m", "shared.cli"]


_HANDED_OUT: deque[int] = deque(maxlen=256)  # the ports handed out last


def free_port() -> int:
    """A free port below the kernel's ephemeral range: a port the kernel hands out for port 0
    can be taken again by any outgoing connection before the child process binds it. Not one
    of the last ports it handed out: calls in a row (a data plane's http and https listeners)
    must not get the same port, free again because nobody has bound it yet."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(20000, min(low, 32768))
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.append(port)
            return port


def http(method: str, url: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, _decode(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _decode(exc.read())


def _decode(raw: bytes) -> Any:
    """JSON bodies as data, anything else as text."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def wait_for(check: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy (errors count as not yet)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, KeyError, TypeError, ValueError) as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


class Proc:
    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None,
                 wrap: list[str] | None = None) -> None:
        """`wrap` prefixes the command, e.g. `ip netns exec NS` to run on another host."""
        self.log = log
        self._file = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen([*(wrap or []), *TIDEGATE, *args], stdout=self._file,
                                      stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.alive():
            self.popen.send_signal(sig)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._file.close()
        return self.popen.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class ControlPlane(Proc):
    def __init__(self, tmp: Path, dsn: str | None, certs: dict[str, Path], name: str = "cp",
                 extra: list[str] | None = None, *, host: str = "127.0.0.1",
                 wrap: list[str] | None = None, ports: tuple[int, int] | None = None) -> None:
        """`dsn=None`: the CP's embedded PostgreSQL; `host`: the address both listeners use;
        `ports`: (admin, cluster), e.g. a restarted CP's old ones."""
        self.admin_port, self.cluster_port = ports or (free_port(), free_port())
        self.admin = f"http://{host}:{self.admin_port}"
        self.cluster = f"{host}:{self.cluster_port}"
        super().__init__([
            "cp", "start", *(["--pg-dsn", dsn] if dsn else []), "--prefix", str(tmp / name),
            "--admin-listen", f"{host}:{self.admin_port}",
            "--cluster-listen", self.cluster,
            "--cluster-cert", str(certs["cert"]), "--cluster-key", str(certs["key"]),
            *(extra or []),
        ], tmp / f"{name}.log", wrap=wrap)
        wait_for(lambda: self._ready(), 60, f"{name} ready")

    def _ready(self) -> bool:
        assert self.alive(), self.output()
        return http("GET", f"{self.admin}/status")[0] == 200

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return http(method, self.admin + path, body)

    def data_planes(self) -> dict[str, dict[str, Any]]:
        return {dp["id"]: dp for dp in self.api("GET", "/clustering/data-planes")[1]["data"]}


class DataPlane(Proc):
    def __init__(self, tmp: Path, name: str, cp: str | None, certs: dict[str, Path] | None,
                 *extra: str, wait_ready: bool = True, host: str = "127.0.0.1",
                 wrap: list[str] | None = None) -> None:
        """`host`: the address every listener uses; `wrap`: see Proc."""
        self.prefix = tmp / name
        self.status_port = free_port()
        self.status_url = f"http://{host}:{self.status_port}"
        self.proxy_port, self.proxy_ssl_port = free_port(), free_port()
        self.proxy_url = f"http://{host}:{self.proxy_port}"
        args = ["dp", "start", "--prefix", str(self.prefix),
                "--status-listen", f"{host}:{self.status_port}",
                "--proxy-listen", f"{host}:{self.proxy_port}",
                "--proxy-ssl-listen", f"{host}:{self.proxy_ssl_port}", *extra]
        if cp is not None and certs is not None:
            args += ["--cp", cp, "--cert", str(certs["cert"]), "--key", str(certs["key"])]
        super().__init__(args, tmp / f"{name}.log", wrap=wrap)
        wait_for(self._listening, 30, f"{name} status listener")
        if wait_ready:
            wait_for(lambda: self.get("/status/ready")[0] == 200, 30, f"{name} ready")

    def _listening(self) -> bool:
        assert self.alive(), self.output()
        return self.get("/health")[0] == 200

    def get(self, path: str) -> tuple[int, Any]:
        return http("GET", self.status_url + path)

    @property
    def node_id(self) -> str:
        return (self.prefix / "node_id").read_text().strip()

    def status(self) -> dict[str, Any]:
        return self.get("/status")[1]

    def routes(self) -> dict[str, dict[str, Any]]:
        status, body = self.get("/config")
        if status != 200:
            return {}
        return {r["name"] or r["id"]: r for r in body["config"]["routes"]}
