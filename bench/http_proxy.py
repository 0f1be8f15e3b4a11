"""HTTP proxy throughput: direct to an upstream, through nginx, through the tidegate data plane.

    .venv/bin/python bench/http_proxy.py [--duration 10] [--connections 50] [--workers 1]

One run, one load generator (`wrk`, one thread) for the three targets:

- direct:   wrk → upstream (an nginx answering a small fixed body, keep-alive)
- nginx:    wrk → nginx reverse proxy (N workers, upstream keep-alive pool) → upstream
- tidegate: wrk → `tidegate dp start --declarative-config --workers N` → upstream

N is `--workers` (default 1: tidegate proxies in its main process; more: worker processes
sharing the port with SO_REUSEPORT, as nginx's `worker_processes N`).

Prints requests/s and p99 latency of each, and the CPU seconds the proxy process(es) used per
request (from /proc), then tidegate's CPU per request divided by nginx's (goal: <= 3x).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its children processes (nginx workers)."""
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, IndexError):
            pass
    return total


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError):
                pass
    return out


def stop_all(procs: list[subprocess.Popen], timeout: float = 10) -> None:
    """SIGTERM every process, then wait for each (killed after `timeout` seconds)."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()


def lacks(tools: tuple[str, ...], packages: str) -> bool:
    """Whether a program the bench needs is not installed (then says what to install)."""
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing:
        print(f"needs {', '.join(missing)}: apt-get install -y {packages}")
    return bool(missing)


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[tuple[Path, list[subprocess.Popen]]]:
    """A temporary directory (readable by nginx's workers, which run as another user) and a
    list for the processes a bench starts: all of them stopped and the directory removed at the
    end."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    tmp.chmod(0o755)
    procs: list[subprocess.Popen] = []
    try:
        yield tmp, procs
    finally:
        stop_all(procs)
        shutil.rmtree(tmp, ignore_errors=True)


def nginx(tmp: Path, name: str, server_block: str, workers: int = 1) -> subprocess.Popen:
    prefix = tmp / name
    (prefix / "logs").mkdir(parents=True)
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    {server_block}
}}
""")
    return subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(conf)])


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def wrk(url: str, duration: int, connections: int) -> tuple[float, float, int]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99 is not None, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"  warning: {errors.group(1)} non-2xx answers from {url}")
    return rps, float(p99.group(1)) * scale, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1,
                        help="proxy worker processes of nginx and of tidegate (default 1)")
    args = parser.parse_args()
    if lacks(("wrk", "nginx"), "wrk nginx-light"):
        return 1
    up_port, ngx_port, dp_port, status_port = (free_port() for _ in range(4))
    with scratch("tg-bench-") as (tmp, procs):
        procs.append(nginx(tmp, "upstream", f"""
    server {{ listen 127.0.0.1:{up_port} backlog=4096;
             location / {{ default_type application/json;
                          return 200 '{{"hello":"world","padding":"................"}}'; }} }}"""))
        proxy = nginx(tmp, "proxy", f"""
    upstream backend {{ server 127.0.0.1:{up_port}; keepalive 128; }}
    server {{ listen 127.0.0.1:{ngx_port} backlog=4096;
             location /api/ {{ proxy_pass http://backend/;
                              proxy_http_version 1.1;
                              proxy_set_header Connection "";
                              proxy_set_header Host $host;
                              proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                              proxy_set_header X-Forwarded-Proto $scheme;
                              proxy_set_header X-Forwarded-Host $host;
                              proxy_set_header X-Forwarded-Port $server_port;
                              proxy_set_header X-Real-IP $remote_addr;
                              proxy_set_header Via "1.1 nginx";
                              add_header Via "1.1 nginx"; }} }}""", args.workers)
        procs.append(proxy)
        (tmp / "kong.yml").write_text(f"""_format_version: "3.0"
services:
- name: backend
  url: http://127.0.0.1:{up_port}
  routes:
  - name: api
    paths: [/api]
""")
        dp = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "dp", "start", "--prefix", str(tmp / "dp"),
             "--declarative-config", str(tmp / "kong.yml"),
             "--status-listen", f"127.0.0.1:{status_port}",
             "--proxy-listen", f"127.0.0.1:{dp_port}", "--proxy-ssl-listen", "off",
             "--workers", str(args.workers)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(dp)
        wait_http(f"http://127.0.0.1:{up_port}/")
        wait_http(f"http://127.0.0.1:{ngx_port}/api/")
        wait_http(f"http://127.0.0.1:{status_port}/status/ready")  # every worker listening
        wait_http(f"http://127.0.0.1:{dp_port}/api/")
        for url in (f"http://127.0.0.1:{ngx_port}/api/x", f"http://127.0.0.1:{dp_port}/api/x"):
            wrk(url, 2, args.connections)  # warm up
        print(f"wrk -t1 -c{args.connections} -d{args.duration}s, {args.workers} proxy worker(s), "
              f"{os.cpu_count()} cores")
        print(f"{'target':<10} {'req/s':>10} {'p99 ms':>8} {'proxy CPU us/req':>17}")
        cpu_per: dict[str, float] = {}
        for name, port, pid in (("direct", up_port, None), ("nginx", ngx_port, proxy.pid),
                                ("tidegate", dp_port, dp.pid)):
            path = "/x" if name == "direct" else "/api/x"
            before = cpu_seconds(pid) if pid else 0.0
            rps, p99, total = wrk(f"http://127.0.0.1:{port}{path}", args.duration,
                                  args.connections)
            used = cpu_seconds(pid) - before if pid else 0.0
            per = used / total * 1e6 if pid else 0.0
            cpu_per[name] = per
            shown = f"{per:>17.1f}" if pid else f"{'-':>17}"
            print(f"{name:<10} {rps:>10.0f} {p99:>8.2f} {shown}")
        ratio = cpu_per["tidegate"] / cpu_per["nginx"] if cpu_per["nginx"] else float("nan")
        print(f"tidegate CPU per request / nginx CPU per request = {ratio:.2f}x (goal <= 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
