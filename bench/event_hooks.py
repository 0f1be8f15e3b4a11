"""Event-hook benchmark: a real control plane (`tidegate cp start`, embedded PostgreSQL) and a
real local webhook receiver, driven over the real Admin API.

    .venv/bin/python bench/event_hooks.py [--writes 1000] [--latency-writes 500]

Prints:
  writes/s without hooks   POST /consumers, 16 in flight, no event hook
  latency                  Admin API write -> webhook received, one hook, writes paced at
                           100/s: p50 / p99 (goal p99 <= 100 ms)
  writes/s with 10 hooks   the same write load with 10 webhook hooks on consumers, and the
                           ratio to the run without hooks (goal >= 0.9)
  deliveries/s             the 10 x writes deliveries of that run, counted at the receiver from
                           the first to the last one (goal >= 500/s)

The receiver runs in this process (aiohttp); the control plane and PostgreSQL in their own
processes, all on this machine, so on 2 cores they share the CPU. Everything started here is
stopped at the end, also on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cp.pg_embedded import EmbeddedPostgres  # noqa: E402


class Receiver:
    """Records the arrival time of every delivery, by consumer username."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = {}
        self.times: list[float] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        now = time.perf_counter()
        if body.get("event") != "ping":
            name = body["entity"]["username"]
            self.arrivals.setdefault(name, []).append(now)
            self.times.append(now)
        return web.Response(text="ok")

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(session: aiohttp.ClientSession, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit("control plane exited")
        try:
            async with session.get("/status") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("control plane not ready")


async def writes(session: aiohttp.ClientSession, prefix: str, n: int,
                 concurrency: int = 16) -> float:
    """n consumer creates with `concurrency` in flight; returns writes/s."""
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            async with session.post("/consumers", json={"username": f"{prefix}{i}"}) as r:
                assert r.status == 201, await r.text()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


async def paced_latency(session: aiohttp.ClientSession, rx: Receiver, n: int,
                        rate: float = 100.0) -> list[float]:
    """Writes at `rate`/s; latency from just before each request to its delivery."""
    sent: dict[str, float] = {}
    start = time.perf_counter()
    tasks = []

    async def one(name: str) -> None:
        sent[name] = time.perf_counter()
        async with session.post("/consumers", json={"username": name}) as r:
            assert r.status == 201

    for i in range(n):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one(f"lat{i}")))
    await asyncio.gather(*tasks)
    await until(lambda: all(k in rx.arrivals for k in sent), 30)
    return sorted((rx.arrivals[k][0] - t) * 1000 for k, t in sent.items())


async def until(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for deliveries")
        await asyncio.sleep(0.01)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))]


async def add_hook(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post("/event-hooks", json={
            "source": "crud", "event": "consumers", "handler": "webhook",
            "config": {"url": url}}) as r:
        assert r.status == 201, await r.text()


async def run(admin: str, args: argparse.Namespace) -> None:
    rx = Receiver()
    url = await rx.start()
    async with aiohttp.ClientSession(base_url=admin) as session:
        await writes(session, "warm", 200)
        base = await writes(session, "plain", args.writes)
        print(f"writes/s without hooks     {base:8.0f}")
        await add_hook(session, url)
        lat = await paced_latency(session, rx, args.latency_writes)
        print(f"latency write->received    p50 {pct(lat, 0.5):6.1f} ms   "
              f"p99 {pct(lat, 0.99):6.1f} ms   max {lat[-1]:6.1f} ms   (goal p99 <= 100 ms)")
        for _ in range(9):
            await add_hook(session, url)
        rx.times.clear()
        hooked = await writes(session, "hooked", args.writes)
        print(f"writes/s with 10 hooks     {hooked:8.0f}   ratio {hooked / base:.2f} "
              "(goal >= 0.9)")
        expected = 10 * args.writes
        await until(lambda: len(rx.times) >= expected, 120)
        span = rx.times[expected - 1] - rx.times[0]
        print(f"deliveries/s               {expected / span:8.0f}   ({expected} deliveries "
              f"in {span:.2f} s; goal >= 500/s)")
    await rx.runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--latency-writes", type=int, default=500)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tgbench-", dir="/tmp"))
    root.chmod(0o755)
    pg = EmbeddedPostgres(root / "pg")
    proc = None
    try:
        dsn = pg.start()
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "cp", "start", "--pg-dsn", dsn,
             "--prefix", str(root / "cp"), "--admin-listen", f"127.0.0.1:{port}",
             "--cluster-listen", f"127.0.0.1:{free_port()}"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        admin = f"http://127.0.0.1:{port}"

        async def go() -> None:
            async with aiohttp.ClientSession(base_url=admin) as s:
                await wait_ready(s, proc)
            await run(admin, args)

        asyncio.run(go())
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
