"""Instructions per proxied request, counted by valgrind's callgrind: the data plane's own work
per request, free of what timing on a shared machine mixes in.

    .venv/bin/python bench/instructions.py [--requests 2000] [--rounds 2]

The data plane's proxy (dp.proxy.server.ProxyServer, on uvloop) runs in a child process under
`valgrind --tool=callgrind` with counting off; an nginx upstream answers a small fixed body,
and a redis-server backs the Redis route. For each route this process warms it up (400
requests), then switches counting on (`callgrind_control -i on`), sends `--requests` keep-alive
requests over 4 connections, dumps the counts and switches counting off. It prints the user-space
instructions per request of each route (the lowest of `--rounds`) and each route's excess over
`plain`. Kernel work (system calls, TCP) is not counted: the figure is the Python, uvloop and
parser work a change adds or saves, to about 1%, where bench/rate_limit.py's req/s move by
5-10% from one run to the next on this kind of machine. Slow (the proxy runs ~50 times
slower under valgrind): about a minute per route and round.

Routes: plain (no plugin), local (rate-limiting-advanced, one window, identifier ip, headers
shown: the plugin's usual config, limits never reached), redis-1s (the same on Redis with
sync_rate 1). Needs valgrind, nginx and redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from http_proxy import free_port, lacks, nginx, scratch

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 4
WARM_UP = 400


def routes(redis_port: int) -> dict[str, list[dict[str, Any]]]:
    def rla(namespace: str, **extra: Any) -> list[dict[str, Any]]:
        return [{"name": "rate-limiting-advanced", "config": {
            "limit": [1_000_000_000], "window_size": [60], "identifier": "ip",
            "namespace": namespace, **extra}}]
    return {"plain": [], "local": rla("local"),
            "redis-1s": rla("redis-1s", strategy="redis", sync_rate=1,
                            redis={"host": "127.0.0.1", "port": redis_port})}


async def serve(up_port: int, port_file: Path, plugins: dict[str, list[dict[str, Any]]]) -> None:
    """The child under callgrind: the proxy with one route per entry of `plugins`."""
    sys.path.insert(0, str(ROOT))
    from dp.events import EventQueue
    from dp.proxy.server import ProxyServer
    from dp.running import Snapshot
    from shared import declarative
    from shared.config_set import ConfigSet

    proxy = ProxyServer(EventQueue())
    doc = {"_format_version": "3.0", "services": [{
        "name": "s", "url": f"http://127.0.0.1:{up_port}",
        "routes": [{"name": n, "paths": [f"/{n}"], "plugins": p} for n, p in plugins.items()]}]}
    proxy.apply(Snapshot("bench", ConfigSet.from_lists(declarative.load(doc)), "file"))
    port = await proxy.listen("127.0.0.1", 0, "http")
    port_file.write_text(str(port))
    await asyncio.Event().wait()


async def load(port: int, path: str, n: int) -> None:
    """`n` GET requests over CONNECTIONS keep-alive connections, each answer read whole."""
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()

    async def one(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            if not head.startswith(b"HTTP/1.1 200") or length is None:
                raise SystemExit(f"unexpected answer on {path}: {head[:200]!r}")
            await reader.readexactly(int(length.group(1)))
        writer.close()

    await asyncio.gather(*(one(n // CONNECTIONS) for _ in range(CONNECTIONS)))


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def counted(pid: int, out: Path, port: int, path: str, n: int) -> float:
    """Instructions per request of `n` requests to `path`."""
    control(pid, "-z")
    control(pid, "-i", "on")
    asyncio.run(load(port, path, n))
    before = set(out.parent.glob(f"{out.name}.*"))
    control(pid, "-d")
    control(pid, "-i", "off")
    deadline = time.monotonic() + 30
    while not (dumped := set(out.parent.glob(f"{out.name}.*")) - before):
        if time.monotonic() > deadline:
            raise SystemExit("callgrind wrote no dump")
        time.sleep(0.1)
    text = dumped.pop().read_text()
    total = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    if total is None:
        raise SystemExit("no total in the callgrind dump")
    return int(total.group(1)) / n


def run(tmp: Path, args: argparse.Namespace, procs: list[subprocess.Popen]) -> None:
    up_port, redis_port = free_port(), free_port()
    procs.append(nginx(tmp, "upstream", f"""
    server {{ listen 127.0.0.1:{up_port} backlog=4096;
             location / {{ default_type application/json;
                          return 200 '{{"hello":"world","padding":"................"}}'; }} }}"""))
    procs.append(subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL))
    plugins = routes(redis_port)
    port_file, out = tmp / "port", tmp / "callgrind.out"
    child = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         sys.executable, __file__, "--serve", str(up_port), str(port_file), json.dumps(plugins)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(tmp / "valgrind.log").open("w"))
    procs.append(child)
    deadline = time.monotonic() + 300
    while not (port_file.exists() and port_file.read_text()):
        if child.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the proxy did not start: {(tmp / 'valgrind.log').read_text()}")
        time.sleep(0.2)
    port = int(port_file.read_text())
    for name in plugins:
        asyncio.run(load(port, f"/{name}/x", WARM_UP))
    print(f"{args.requests} requests per route and round over {CONNECTIONS} connections, "
          f"{args.rounds} round(s), lowest shown")
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name in plugins:
            figure = counted(child.pid, out, port, f"/{name}/x", args.requests)
            best[name] = min(best.get(name, figure), figure)
    for name, figure in best.items():
        excess = "" if name == "plain" else f"  +{figure - best['plain']:,.0f} over plain"
        print(f"{name:<10} {figure:>10,.0f} instructions/request{excess}")


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":  # the child, on the data plane's loop
        import uvloop
        uvloop.run(serve(int(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if lacks(("valgrind", "callgrind_control", "nginx", "redis-server"),
             "valgrind nginx-light redis-server"):
        return 1
    with scratch("tg-bench-instr-") as (tmp, procs):
        run(tmp, args, procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
