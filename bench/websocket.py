"""WebSocket proxying: direct to an echo server, through nginx, through the tidegate data plane.

    .venv/bin/python bench/websocket.py [--duration 8] [--connections 50] [--idle 10000]

One run, one load generator (bench/ws_peers.py: pre-built masked frames over raw sockets,
uvloop) and one echo server (a minimal RFC 6455 echo) for every target:

- direct:            client → echo
- nginx:             client → nginx (1 worker, `proxy_pass` with Upgrade) → echo
- tidegate:          client → `tidegate dp start --declarative-config` (1 process) → echo
- tidegate+plugins:  the same with websocket-size-limit and websocket-validator (a draft-4
                     schema checked on every message, both directions)

Prints, for 256 B and 8 KiB text messages (closed loop, one message in flight per connection):
round trips/s, p50/p99 round-trip latency, and the proxy's CPU time per proxied frame (from
/proc; a round trip is two frames); then the DP's CPU per frame divided by nginx's (goals:
<= 2.0 without plugins, <= 2.5 with them); the added p99 latency at a fixed 5 000 messages/s
(goal <= 1 ms); and the DP's memory per idle proxied connection with `--idle` connections open
(goal <= 20 KiB; measured with 2 worker processes when one process may not hold 2 sockets per
connection under this machine's file-descriptor limit).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop
from http_proxy import ROOT, cpu_seconds, free_port, nginx, stop_all
from ws_peers import hold_idle, run_load, serve_echo

SIZES = (256, 8192)
RATE = 5000
MiB = 1024 * 1024

KONG_YML = """_format_version: "3.0"
services:
- name: echo
  url: ws://127.0.0.1:{echo}
  routes:
  - name: plain
    paths: [/ws]
    protocols: [ws]
    strip_path: false
- name: checked
  url: ws://127.0.0.1:{echo}
  routes:
  - name: checked
    paths: [/ws]
    protocols: [ws]
    strip_path: false
    hosts: [checked]
    plugins:
    - name: websocket-size-limit
      config: {{client_max_payload: 65536, upstream_max_payload: 65536}}
    - name: websocket-validator
      config:
        client:
          text: {{type: draft4, schema: '{schema}'}}
        upstream:
          text: {{type: draft4, schema: '{schema}'}}
"""
SCHEMA = '{"type": "object", "required": ["d"], "properties": {"d": {"type": "string"}}}'


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def start_dp(tmp: Path, name: str, port: int, workers: int) -> subprocess.Popen:
    status = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "dp", "start", "--prefix", str(tmp / name),
         "--declarative-config", str(tmp / "kong.yml"), "--status-listen", f"127.0.0.1:{status}",
         "--proxy-listen", f"127.0.0.1:{port}", "--proxy-ssl-listen", "off",
         "--workers", str(workers)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(port)
    return proc


def _wait_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"port {port} did not open")


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="tg-ws-bench-"))
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        self.echo = free_port()
        self.procs.append(subprocess.Popen([sys.executable, __file__, "--echo", str(self.echo)]))
        self.ngx = free_port()
        self.nginx = nginx(self.tmp, "nginx", f"""
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{ listen 127.0.0.1:{self.ngx} backlog=4096;
             location /ws {{ proxy_pass http://127.0.0.1:{self.echo};
                            proxy_http_version 1.1;
                            proxy_set_header Upgrade $http_upgrade;
                            proxy_set_header Connection $connection_upgrade;
                            proxy_set_header Host $host;
                            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                            proxy_read_timeout 3600s; }} }}""")
        self.procs.append(self.nginx)
        (self.tmp / "kong.yml").write_text(KONG_YML.format(echo=self.echo, schema=SCHEMA))
        self.dp_port = free_port()
        self.dp = start_dp(self.tmp, "dp", self.dp_port, 1)
        self.procs.append(self.dp)
        for port in (self.echo, self.ngx):
            _wait_port(port)

    def stop(self) -> None:
        stop_all(self.procs, 15)

    async def closed_loop(self, port: int, size: int, pid: int | None,
                          host: str = "bench") -> dict[str, float]:
        before = cpu_seconds(pid) if pid else 0.0
        out = await run_load(port, self.args.connections, size, self.args.duration, host=host)
        used = cpu_seconds(pid) - before if pid else 0.0
        rtts = out["rtts"]
        return {"rps": out["round_trips"] / out["elapsed"],
                "p50": percentile(rtts, 0.5) * 1000, "p99": percentile(rtts, 0.99) * 1000,
                "cpu_per_frame": used / (2 * out["round_trips"]) * 1e6 if pid else 0.0}

    async def throughput(self) -> None:
        targets: list[tuple[str, int, int | None, str]] = [
            ("direct", self.echo, None, "bench"), ("nginx", self.ngx, self.nginx.pid, "bench"),
            ("tidegate", self.dp_port, self.dp.pid, "bench"),
            ("tidegate+plugins", self.dp_port, self.dp.pid, "checked")]
        for _, port, _, host in targets:  # warm-up
            await run_load(port, self.args.connections, 256, 1.0, host=host)
        print(f"closed loop, {self.args.connections} connections, {self.args.duration:g} s each, "
              f"{os.cpu_count()} cores")
        print(f"{'size':>6} {'target':<17} {'round trips/s':>13} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'proxy CPU us/frame':>19}")
        for size in SIZES:
            per: dict[str, float] = {}
            for name, port, pid, host in targets:
                r = await self.closed_loop(port, size, pid, host)
                per[name] = r["cpu_per_frame"]
                cpu = f"{r['cpu_per_frame']:>19.2f}" if pid else f"{'-':>19}"
                print(f"{size:>6} {name:<17} {r['rps']:>13.0f} {r['p50']:>7.2f} "
                      f"{r['p99']:>7.2f} {cpu}")
            print(f"{size:>6} DP CPU per frame / nginx: {per['tidegate'] / per['nginx']:.2f}x "
                  f"(goal <= 2.0), with plugins {per['tidegate+plugins'] / per['nginx']:.2f}x "
                  f"(goal <= 2.5)")

    async def fixed_rate(self) -> None:
        """p99 at a fixed rate; the targets take turns, three rounds, the median round counts
        (a neighbour's burst on this shared machine then spoils one round, not the figure)."""
        targets = (("direct", self.echo), ("nginx", self.ngx), ("tidegate", self.dp_port))
        rounds: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in targets}
        for _ in range(3):
            for name, port in targets:
                out = await run_load(port, 50, 256, self.args.duration / 2, rate=RATE)
                rounds[name].append((percentile(out["rtts"], 0.99) * 1000,
                                     percentile(out["rtts"], 0.5) * 1000,
                                     out["round_trips"] / out["elapsed"]))
        p99: dict[str, float] = {}
        for name, results in rounds.items():
            p99[name], p50, got = sorted(results)[1]
            print(f"fixed {RATE} msg/s, 256 B, {name:<8}: {got:.0f} msg/s answered, "
                  f"p50 {p50:.3f} ms, p99 {p99[name]:.3f} ms (median of 3)")
        print(f"added p99 at {RATE} msg/s: tidegate {p99['tidegate'] - p99['direct']:.3f} ms "
              f"(goal <= 1 ms), nginx {p99['nginx'] - p99['direct']:.3f} ms")

    async def idle_memory(self) -> None:
        count = self.args.idle
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        workers = 1 if 2 * count + 100 <= hard else 2
        port = free_port()
        dp = start_dp(self.tmp, "dp-idle", port, workers)
        self.procs.append(dp)
        await asyncio.sleep(1.0)  # let the workers finish starting before the baseline
        pids = [dp.pid] + [int(p) for p in _children(dp.pid)]
        base = rss_kib(pids)
        conns = await hold_idle(port, count)
        await asyncio.sleep(1.0)
        grown = rss_kib(pids) - base
        print(f"memory per idle proxied connection at {count} connections "
              f"({workers} DP process{'es' if workers > 1 else ''}): "
              f"{grown / count:.1f} KiB (goal <= 20 KiB)")
        for c in conns:
            c.transport.close()


def _children(pid: int) -> list[int]:
    from http_proxy import children

    return children(pid)


async def amain(args: argparse.Namespace) -> int:
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    bench = Bench(args)
    try:
        bench.start()
        await bench.throughput()
        await bench.fixed_rate()
        if args.idle:
            await bench.idle_memory()
    finally:
        bench.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--idle", type=int, default=10000, help="idle connections (0: skip)")
    parser.add_argument("--echo", type=int, help=argparse.SUPPRESS)  # run the echo server
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    if args.echo:
        uvloop.run(serve_echo(args.echo))
        return 0
    return uvloop.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
