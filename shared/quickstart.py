"""`tidegate quickstart`: the README's first command — a control plane with its embedded
PostgreSQL and a data plane connected to it over mTLS, on this machine, with nothing to set up.

Certificates are generated on first run into the state directory; both planes log to files
there; Ctrl-C stops both.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from shared.certs import gen_cluster_cert

ADMIN = "127.0.0.1:8001"
CLUSTER = "127.0.0.1:8005"
STATUS = "127.0.0.1:8100"
PROXY = "127.0.0.1:8000"  # loopback for a demo; a real edge listens on 0.0.0.0:8000
DEMO = "127.0.0.1:9000"

# The demo configuration, applied with idempotent PUTs (so a second run changes nothing).
DEMO_CONFIG: list[tuple[str, dict[str, Any]]] = [
    ("/services/demo", {"url": f"http://{DEMO}"}),
    ("/routes/demo", {"paths": ["/demo"], "service": {"name": "demo"}}),
    ("/services/demo-ws", {"url": f"ws://{DEMO}/ws"}),
    ("/routes/demo-ws", {"protocols": ["ws"], "paths": ["/ws"],
                         "service": {"name": "demo-ws"}}),
    ("/plugins/5f7c2b1e-3c1d-4c57-9a59-1b8f0d1e2a01", {
        "name": "websocket-size-limit", "route": {"name": "demo-ws"},
        "config": {"client_max_payload": 65536}}),
]


def register(groups: Any) -> None:
    p = groups.add_parser("quickstart", help="run a control plane and a data plane on this machine")
    p.add_argument("--prefix", default=".tidegate", help="state directory (default ./.tidegate)")
    p.set_defaults(handler=run)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.loads(resp.read()) if "json" in resp.headers.get("Content-Type", "") else None


def _put(url: str, body: dict[str, Any]) -> None:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited; see {log}:\n" + log.read_text()[-2000:])
        try:
            _get(url)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not become ready; see {log}")


def run(args: argparse.Namespace) -> int:
    prefix = Path(args.prefix).absolute()
    prefix.mkdir(parents=True, exist_ok=True)
    cert, key = prefix / "cluster.crt", prefix / "cluster.key"
    if not cert.exists():
        gen_cluster_cert(cert, key)
        print(f"generated cluster certificate {cert}")
    tidegate = [sys.executable, "-m", "shared.cli"]
    cp_log, dp_log = prefix / "cp.log", prefix / "dp.log"
    procs: list[subprocess.Popen[bytes]] = []
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    for sig in stop_signals:
        # While starting, either one unwinds to the `finally` that stops what already runs
        # (SIGTERM's default would leave the children behind; a shell that starts a command
        # in the background has it ignore SIGINT).
        signal.signal(sig, _interrupted)
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "shared.demo_echo", "--listen", DEMO],
            stdout=(prefix / "demo.log").open("ab"), stderr=subprocess.STDOUT))
        procs.append(subprocess.Popen(
            [*tidegate, "cp", "start", "--prefix", str(prefix / "cp"), "--admin-listen", ADMIN,
             "--cluster-listen", CLUSTER, "--cluster-cert", str(cert), "--cluster-key", str(key)],
            stdout=cp_log.open("ab"), stderr=subprocess.STDOUT))
        _wait(f"http://{ADMIN}/status", procs[1], cp_log, "control plane")
        for path, body in DEMO_CONFIG:
            _put(f"http://{ADMIN}{path}", body)
        procs.append(subprocess.Popen(
            [*tidegate, "dp", "start", "--prefix", str(prefix / "dp"), "--cp", CLUSTER,
             "--cert", str(cert), "--key", str(key), "--status-listen", STATUS,
             "--proxy-listen", PROXY, "--proxy-ssl-listen", "off"],
            stdout=dp_log.open("ab"), stderr=subprocess.STDOUT))
        _wait(f"http://{STATUS}/status/ready", procs[2], dp_log, "data plane")
        _wait(f"http://{PROXY}/demo/health", procs[2], dp_log, "demo route through the proxy")
        print(_banner(cp_log, dp_log), flush=True)
        # Blocked only now: children inherit the signal mask and must still get SIGTERM.
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        signal.sigwait(stop_signals)
        return 0
    except RuntimeError as exc:
        print(f"tidegate quickstart: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for sig in stop_signals:  # a second Ctrl-C must not cut the stopping short
            signal.signal(sig, signal.SIG_IGN)
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)
        print("stopped", flush=True)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _banner(cp_log: Path, dp_log: Path) -> str:
    admin, status, proxy = f"http://{ADMIN}", f"http://{STATUS}", f"http://{PROXY}"
    return f"""
tidegate is running: a control plane (embedded PostgreSQL), a data plane connected to it over
mTLS, and a demo echo upstream on {DEMO} behind the routes /demo (http) and /ws (ws, with
websocket-size-limit).

  proxy              {proxy}
  Admin API          {admin}
  data plane status  {status}/status
  logs               {cp_log} (cp), {dp_log} (dp)

Try:
  curl -s {proxy}/demo/hello
  curl -s -X POST {admin}/services/demo/routes -d name=hello -d 'paths[]=/hello'
  curl -s {proxy}/hello/world
  curl -s {admin}/clustering/data-planes
  curl -s {status}/config
  {sys.executable} -m websockets ws://{PROXY}/ws

Ctrl-C stops everything.
"""
