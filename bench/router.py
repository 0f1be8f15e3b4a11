"""Router match time at 100, 1 000 and 10 000 routes (goal: <= 20 us median at 10 000).

    .venv/bin/python bench/router.py [--lookups 20000]

Routes look like a real gateway's: a host per 20 routes (a tenth wildcards), two prefix paths
each, one route in ten with a regex path, some with methods or headers. Lookups hit random
routes plus 10% misses; the median and p99 of single `match()` calls are printed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dp.router import Router


def make_routes(n: int) -> tuple[list[dict], dict]:
    service = {"id": "s", "host": "up", "port": 80, "protocol": "http", "path": None}
    routes = []
    for i in range(n):
        group = i // 20
        host = f"*.tenant{group}.test" if group % 10 == 0 else f"api{group}.example.com"
        paths = [f"/svc{i}/v1", f"/svc{i}/v2"]
        if i % 10 == 0:
            paths = [rf"~/svc{i}/items/\d+$"]
        route = {"id": f"r{i}", "protocols": ["http", "https"], "hosts": [host], "paths": paths,
                 "strip_path": True, "regex_priority": i % 3, "service": {"id": "s"},
                 "created_at": i}
        if i % 7 == 0:
            route["methods"] = ["GET", "POST"]
        if i % 11 == 0:
            route["headers"] = {"x-tenant": [f"t{group}"]}
        routes.append(route)
    return routes, {"s": service}


def lookups(n: int, count: int, rng: random.Random) -> list[tuple]:
    out = []
    for _ in range(count):
        i = rng.randrange(n)
        group = i // 20
        host = f"x.tenant{group}.test" if group % 10 == 0 else f"api{group}.example.com"
        path = f"/svc{i}/items/42" if i % 10 == 0 else f"/svc{i}/v1/users/7"
        if rng.random() < 0.1:
            path = "/nowhere/at/all"
        headers = {"x-tenant": f"t{group}", "user-agent": "bench", "accept": "*/*"}
        out.append(("GET", host, path, headers))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lookups", type=int, default=20000)
    args = parser.parse_args()
    rng = random.Random(7)
    print(f"{'routes':>8} {'build ms':>9} {'median us':>10} {'p99 us':>8} {'hit %':>6}")
    for n in (100, 1000, 10000):
        routes, services = make_routes(n)
        start = time.perf_counter()
        router = Router(routes, services)
        build = (time.perf_counter() - start) * 1000
        samples, hits = [], 0
        clock = time.perf_counter_ns
        for method, host, path, headers in lookups(n, args.lookups, rng):
            t0 = clock()
            m = router.match(method, host, path, headers)
            samples.append(clock() - t0)
            hits += m is not None
        samples.sort()
        median = statistics.median(samples) / 1000
        p99 = samples[int(len(samples) * 0.99)] / 1000
        print(f"{n:>8} {build:>9.1f} {median:>10.2f} {p99:>8.2f} {100 * hits / len(samples):>6.1f}")


if __name__ == "__main__":
    main()
