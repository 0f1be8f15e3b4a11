"""Config sync figures: a real control plane (embedded PostgreSQL) and data planes over mTLS.

The data planes are the real data plane's cluster client (apply, validate, journal the cache,
ACK) without the proxy, twenty in this process. Prints, at 1 000 and 10 000 routes: p50/p99 from
Admin API response to all data planes ACKed for a one-route change, bytes each data plane
receives for it, the time to deliver, apply, cache and ACK a full snapshot on a new data plane;
and a real `tidegate dp start` serving 10 000 routes from its cache.

    python bench/config_sync.py [--dps 20] [--changes 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dp.cache import ConfigCache
from dp.cluster_client import ClusterClient
from dp.running import RunningConfig
from shared.certs import gen_cluster_cert
from shared.tls import ClusterTLS
from tests.cluster_peer import Peer
from tests.procs import ControlPlane, free_port, http, wait_for


def data_plane(target: str, tls: ClusterTLS, state_dir: Path, name: str) -> ClusterClient:
    """The real data plane's cluster client (apply, validate, journal the cache, ACK), without
    the proxy, so twenty of them fit in this process."""
    state_dir.mkdir(parents=True, exist_ok=True)
    return ClusterClient(target, tls, RunningConfig(), name,
                         cache=ConfigCache(state_dir / "config.cache"))


def load_routes(cp: ControlPlane, n: int) -> None:
    per = 100
    services = [{"name": f"s{i}", "url": f"http://up{i}.test",
                 "routes": [{"name": f"r{i}-{j}", "paths": [f"/s{i}/r{j}"]} for j in range(per)]}
                for i in range(n // per)]
    status, body = cp.api("POST", "/config", {"_format_version": "3.0", "services": services})
    if status == 404:
        raise SystemExit("POST /config is not available on this control plane")
    assert status in (200, 201), body


class ByteProbe:
    """Counts the bytes one data plane receives per update (ACKing what it is sent)."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.delta_bytes: list[int] = []

    async def run(self) -> None:
        while True:
            before = self.peer.received_bytes
            kind, update = await self.peer.recv_update(timeout=3600)
            if kind == "delta":
                self.delta_bytes.append(self.peer.received_bytes - before)
                await self.peer.ack(update.to_version, update.expected_hash)
            elif kind == "snapshot":
                await self.peer.ack(update[0], update[1])


async def measure(cp: ControlPlane, tls: ClusterTLS, tmp: Path, routes: int, dps: int,
                  changes: int) -> None:
    load_routes(cp, routes)
    target = f"127.0.0.1:{cp.cluster_port}"

    def current() -> str:
        return str(http("GET", cp.admin + "/status")[1]["configuration_version"])

    version = current()
    first = data_plane(target, tls, tmp / f"snap{routes}", "snapshot-probe")
    started = time.perf_counter()
    task = asyncio.create_task(first.run())
    await asyncio_wait(lambda: first.status.acked_version.endswith(f":{version}"), 60)
    snapshot_s = time.perf_counter() - started
    task.cancel()

    clients = [data_plane(target, tls, tmp / f"dp{routes}-{i}", f"dp{i}") for i in range(dps)]
    tasks = [asyncio.create_task(c.run()) for c in clients]
    probe = ByteProbe(await Peer(target, tls, "byte-probe").connect())
    tasks.append(asyncio.create_task(probe.run()))
    await asyncio_wait(lambda: all(c.status.acked_version.endswith(f":{version}")
                                   for c in clients), 120)
    isolated = await change_latencies(cp, clients, changes, current, gap=0.25)
    back_to_back = await change_latencies(cp, clients, changes, current, gap=0.0)
    for t in tasks:
        t.cancel()
    await probe.peer.close()
    per_dp = statistics.median(probe.delta_bytes[-changes:])
    for label, latencies in (("isolated", isolated), ("back-to-back", back_to_back)):
        q = statistics.quantiles(latencies, n=100)
        print(f"  {routes:>6} routes, {dps} DPs, {label} one-route changes, Admin API response "
              f"-> all ACKed: p50 {statistics.median(latencies) * 1000:.1f} ms, "
              f"p99 {q[98] * 1000:.1f} ms (goal p99 <= 100 ms)")
    print(f"  {routes:>6} routes: bytes sent per DP for that change: {per_dp:.0f} B "
          f"(goal <= 2048 B, independent of size)")
    print(f"  {routes:>6} routes: full snapshot delivered, applied, cached and ACKed by a new "
          f"DP: {snapshot_s * 1000:.0f} ms (goal <= 2000 ms)")


async def change_latencies(cp: ControlPlane, clients: list[ClusterClient], changes: int,
                           current: Any, gap: float) -> list[float]:
    """PATCH one route `changes` times; after each, the time until every DP has ACKed it.
    With a gap, each change comes after a quiet spell (a single change, as an operator makes
    it); without, changes follow each other and meet the CP's burst debounce."""
    latencies = []
    for i in range(changes):
        await asyncio.sleep(gap)
        body = json.dumps({"paths": [f"/changed/{gap}/{i}"]}).encode()
        req = urllib.request.Request(f"{cp.admin}/routes/r0-0", data=body, method="PATCH",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as resp:
            resp.read()
        responded = time.time()
        suffix = f":{current()}"
        await asyncio_wait(lambda s=suffix: all(
            c.status.acked_version.endswith(s) for c in clients), 30)
        latencies.append(max(c.status.acked_at for c in clients) - responded)
    return latencies


async def asyncio_wait(check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.001)


def dp_start_from_cache(tmp: Path, routes: int) -> float:
    """A real data plane process with its CP unreachable, serving a cached config."""
    from shared.config_set import ConfigSet
    from shared.entities import ENTITIES

    config = ConfigSet()
    svc = ENTITIES["services"].process({"name": "s", "host": "h.test"})
    config.upsert("services", svc)
    for i in range(routes):
        config.upsert("routes", ENTITIES["routes"].process(
            {"name": f"r{i}", "paths": [f"/r{i}"], "service": {"id": svc["id"]}}))
    prefix = tmp / "dp-cache"
    prefix.mkdir()
    ConfigCache(prefix / "config.cache").save("bench:1", config)
    gen_cluster_cert(tmp / "dp.crt", tmp / "dp.key")
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "dp", "start", "--prefix", str(prefix),
         "--cp", "127.0.0.1:1", "--cert", str(tmp / "dp.crt"), "--key", str(tmp / "dp.key"),
         "--status-listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: http("GET", f"http://127.0.0.1:{port}/status/ready")[0] == 200, 30)
        return time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dps", type=int, default=20)
    parser.add_argument("--changes", type=int, default=50)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tgbench-", dir="/tmp"))
    tmp.chmod(0o755)
    gen_cluster_cert(tmp / "c.crt", tmp / "c.key")
    tls = ClusterTLS.from_files("shared", tmp / "c.crt", tmp / "c.key")
    print(f"config_sync bench ({os.cpu_count()} cores)")
    for routes in (1_000, 10_000):
        from cp.pg_embedded import EmbeddedPostgres

        pg = EmbeddedPostgres(tmp / f"pg{routes}")
        dsn = pg.start()
        cp = ControlPlane(tmp, dsn, {"cert": tmp / "c.crt", "key": tmp / "c.key"},
                          name=f"cp{routes}")
        try:
            asyncio.run(measure(cp, tls, tmp, routes, args.dps, args.changes))
        finally:
            cp.stop()
            pg.stop()
    print(f"  DP start-up serving 10000 routes from its cache (CP unreachable): "
          f"{dp_start_from_cache(tmp, 10_000) * 1000:.0f} ms (goal <= 1000 ms)")
    subprocess.run(["rm", "-rf", str(tmp)])


if __name__ == "__main__":
    main()
