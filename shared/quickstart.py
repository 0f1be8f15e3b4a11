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


def register(groups: Any) -> None:
    p = groups.add_parser("quickstart", help="run a control plane and a data plane on this machine")
    p.add_argument("--prefix", default=".tidegate", help="state directory (default ./.tidegate)")
    p.set_defaults(handler=run)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.loads(resp.read())


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
    try:
        procs.append(subprocess.Popen(
            [*tidegate, "cp", "start", "--prefix", str(prefix / "cp"), "--admin-listen", ADMIN,
             "--cluster-listen", CLUSTER, "--cluster-cert", str(cert), "--cluster-key", str(key)],
            stdout=cp_log.open("ab"), stderr=subprocess.STDOUT))
        _wait(f"http://{ADMIN}/status", procs[0], cp_log, "control plane")
        procs.append(subprocess.Popen(
            [*tidegate, "dp", "start", "--prefix", str(prefix / "dp"), "--cp", CLUSTER,
             "--cert", str(cert), "--key", str(key), "--status-listen", STATUS],
            stdout=dp_log.open("ab"), stderr=subprocess.STDOUT))
        _wait(f"http://{STATUS}/status/ready", procs[1], dp_log, "data plane")
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
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)
        print("stopped", flush=True)


def _banner(cp_log: Path, dp_log: Path) -> str:
    admin, status = f"http://{ADMIN}", f"http://{STATUS}"
    return f"""
tidegate is running: control plane (embedded PostgreSQL) + data plane over mTLS.

  Admin API          {admin}
  data plane status  {status}/status
  logs               {cp_log} (cp), {dp_log} (dp)

Try:
  curl -s -X POST {admin}/services -d name=echo -d url=http://127.0.0.1:9000
  curl -s -X POST {admin}/services/echo/routes -d name=echo -d 'paths[]=/echo'
  curl -s {admin}/clustering/data-planes
  curl -s {status}/config

Ctrl-C stops both planes.
"""
