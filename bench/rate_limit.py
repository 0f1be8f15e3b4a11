"""HTTP proxy throughput with rate-limiting-advanced (local, redis) against without, same run.

    .venv/bin/python bench/rate_limit.py [--duration 10] [--connections 50] [--workers 1]

One data plane (`tidegate dp start --declarative-config`), one nginx upstream answering a small
fixed body, one `redis-server`, one load generator (`wrk`, one thread), four routes:

- plain:     no plugin
- local:     rate-limiting-advanced, strategy local
- redis:     strategy redis, sync_rate 0 (every request is one Redis round trip)
- redis-1s:  strategy redis, sync_rate 1 (counted locally, pushed every second)

The limits are far above what the run sends (no request is denied: the cost measured is the
counting and the headers, which every allowed request pays). Each is loaded in turn for
`--duration` seconds, in `--rounds` rounds (default 3; each round starts one route later, so
no route always runs first), and the script prints req/s, p99, the data plane's CPU per
request, Redis' CPU per request, and each plugin route's req/s divided by the plain route's
from the same round (goals: local >= 0.8, redis >= 0.6).

The verdict is on the median of those per-round ratios. On a shared machine req/s swings
with whatever else runs; the data plane's CPU per request is much steadier, so the summary
also gives the median CPU per request of each route and plain's divided by it (the ratio the
req/s would have if the data plane alone were the bottleneck), and the load average. For the
plugin's own work without that noise, bench/instructions.py counts instructions per request of
the same routes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from statistics import median

from http_proxy import cpu_seconds, free_port, lacks, nginx, scratch, wait_http, wrk

ROOT = Path(__file__).resolve().parent.parent
GOALS = {"local": 0.8, "redis": 0.6, "redis-1s": 0.6}


def kong_yml(up_port: int, redis_port: int) -> str:
    plugin = """      - name: rate-limiting-advanced
        config:
          limit: [1000000000]
          window_size: [60]
          identifier: ip
          namespace: bench-{name}
{extra}"""
    redis = f"""          strategy: redis
          sync_rate: {{sync}}
          redis: {{{{host: 127.0.0.1, port: {redis_port}}}}}
"""
    routes = [("plain", None), ("local", ""), ("redis", redis.format(sync=0)),
              ("redis-1s", redis.format(sync=1))]
    out = ['_format_version: "3.0"', "services:", "- name: backend",
           f"  url: http://127.0.0.1:{up_port}", "  routes:"]
    for name, extra in routes:
        out += [f"  - name: {name}", f"    paths: [/{name}]"]
        if extra is not None:
            out += ["    plugins:", plugin.format(name=name, extra=extra).rstrip("\n")]
    return "\n".join(out) + "\n"


def measure(port: int, name: str, args: argparse.Namespace, dp: int, redis: int
            ) -> tuple[float, float, float, float]:
    """(req/s, p99 ms, DP CPU us/req, Redis CPU us/req) of one route."""
    before, redis_before = cpu_seconds(dp), cpu_seconds(redis)
    rps, p99, total = wrk(f"http://127.0.0.1:{port}/{name}/x", args.duration, args.connections)
    dp_us = (cpu_seconds(dp) - before) / total * 1e6
    redis_us = (cpu_seconds(redis) - redis_before) / total * 1e6
    return rps, p99, dp_us, redis_us


def run(tmp: Path, args: argparse.Namespace, procs: list[subprocess.Popen]) -> None:
    up_port, dp_port, status_port, redis_port = (free_port() for _ in range(4))
    procs.append(nginx(tmp, "upstream", f"""
    server {{ listen 127.0.0.1:{up_port} backlog=4096;
             location / {{ default_type application/json;
                          return 200 '{{"hello":"world","padding":"................"}}'; }} }}"""))
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                             stdout=subprocess.DEVNULL)
    procs.append(redis)
    (tmp / "kong.yml").write_text(kong_yml(up_port, redis_port))
    dp = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "dp", "start", "--prefix", str(tmp / "dp"),
         "--declarative-config", str(tmp / "kong.yml"),
         "--status-listen", f"127.0.0.1:{status_port}",
         "--proxy-listen", f"127.0.0.1:{dp_port}", "--proxy-ssl-listen", "off",
         "--workers", str(args.workers)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(dp)
    wait_http(f"http://127.0.0.1:{status_port}/status/ready")
    names = ["plain", "local", "redis", "redis-1s"]
    for name in names:
        wait_http(f"http://127.0.0.1:{dp_port}/{name}/")
        wrk(f"http://127.0.0.1:{dp_port}/{name}/x", 2, args.connections)  # warm up
    compare(dp_port, names, args, dp.pid, redis.pid)


def compare(port: int, names: list[str], args: argparse.Namespace, dp: int, redis: int) -> None:
    """The rounds, then the medians and the verdicts."""
    print(f"wrk -t1 -c{args.connections} -d{args.duration}s, {args.workers} proxy worker(s), "
          f"{os.cpu_count()} cores, {args.rounds} round(s), load average {load_average()}")
    print(f"{'route':<10} {'req/s':>9} {'p99 ms':>8} {'DP CPU us/req':>14} {'Redis us/req':>13}")
    ratios: dict[str, list[float]] = {n: [] for n in names[1:]}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for i in range(args.rounds):
        rps_of: dict[str, float] = {}
        for name in names[i % len(names):] + names[:i % len(names)]:
            rps, p99, dp_us, redis_us = measure(port, name, args, dp, redis)
            rps_of[name] = rps
            cpu[name].append(dp_us)
            print(f"{name:<10} {rps:>9.0f} {p99:>8.2f} {dp_us:>14.1f} {redis_us:>13.1f}")
        for name in names[1:]:
            ratios[name].append(rps_of[name] / rps_of["plain"])
        print("  this round / plain: " + ", ".join(f"{n} {ratios[n][-1]:.2f}" for n in names[1:]))
    plain_cpu = median(cpu["plain"])
    print(f"load average {load_average()}; medians over {args.rounds} round(s):")
    print(f"plain: DP CPU {plain_cpu:.1f} us/req")
    for name, values in ratios.items():
        verdict = "ok" if median(values) >= GOALS[name] else "BELOW GOAL"
        print(f"{name}: req/s with the plugin / without = {median(values):.2f} "
              f"(goal >= {GOALS[name]}) {verdict}; DP CPU {median(cpu[name]):.1f} us/req, "
              f"plain's / this = {plain_cpu / median(cpu[name]):.2f}")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if lacks(("wrk", "nginx", "redis-server"), "wrk nginx-light redis-server"):
        return 1
    with scratch("tg-bench-rl-") as (tmp, procs):
        run(tmp, args, procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
