"""Event-hook benchmark: a real control plane (`tidegate cp start` on its own PostgreSQL), a real
webhook receiver in its own process, driven over the real Admin API.

    .venv/bin/python bench/event_hooks.py [--writes 3000] [--rounds 3] [--latency-writes 500]

Prints:
  latency        Admin API write -> webhook received, one hook, writes paced at 100/s:
                 p50 / p99 / max (goal p99 <= 100 ms)
  write runs     POST /consumers, 16 in flight, alternately with no hook and with 10 webhook
                 hooks on consumers (order A B B A A B ..., so drift hits both alike); each run
                 with the CPU seconds of every process involved
  ratio          median writes/s with 10 hooks / median without (goal >= 0.9). A run of
                 --writes is a burst: the engine holds its deliveries back while it lasts,
                 for at most event_hooks_max_defer seconds (cp/hooks/pressure.py); a run
                 longer than that (--writes 20000) shows writes and deliveries competing
  deliveries/s   each hooked run's 10 x writes deliveries, counted at the receiver from the
                 first to the last one (goal >= 500/s); every run checks that each write
                 reached each hook exactly once (distinct delivery ids), else the bench fails

Fairness: the receiver is a separate, minimal HTTP server process (uvloop, no framework) that
runs through every run, idle in the ones without hooks, at the same niceness throughout
(`--receiver-nice`). It stands in for a remote service, so its CPU is reported on its own.
The write load comes from `wrk` (one thread, C) when installed, else from an aiohttp client
in this process. Before each run the system is quiet: the change log is fully dispatched and
no delivery is pending. Load average is printed at the start and the end: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CLK = os.sysconf("SC_CLK_TCK")
HOOKS = 10


# ---- the receiver (runs as `event_hooks.py --serve-receiver`) ----------------------------------

class _Arrivals:
    """What the receiver saw: per username the arrival times, and every delivery id."""

    def __init__(self) -> None:
        self.names: dict[str, list[float]] = {}
        self.ids: set[str] = set()
        self.pings = 0

    def hook(self, head: str, body: bytes) -> None:
        now = time.monotonic()
        event = json.loads(body)
        if event.get("event") == "ping":
            self.pings += 1
            return
        self.names.setdefault(event["entity"]["username"], []).append(now)
        for line in head.split("\r\n"):
            if line[:11].lower() == "webhook-id:":
                self.ids.add(line[11:].strip())

    def stats(self, prefix: str, arrivals: bool) -> dict[str, Any]:
        mine = {k: v for k, v in self.names.items() if k.startswith(prefix)}
        times = sorted(t for v in mine.values() for t in v)
        out: dict[str, Any] = {
            "deliveries": len(times), "names": len(mine), "pings": self.pings,
            "ids": len(self.ids), "first": times[0] if times else None,
            "last": times[-1] if times else None,
            "per_name": sorted({len(v) for v in mine.values()})}
        if arrivals:
            out["arrivals"] = {k: v[0] for k, v in mine.items()}
        return out


class _Http(asyncio.Protocol):
    """Just enough HTTP/1.1 (keep-alive, Content-Length bodies) for webhooks and /stats."""

    def __init__(self, seen: _Arrivals) -> None:
        self.seen, self.buf = seen, bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buf[:end]).decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                if line[:15].lower() == "content-length:":
                    length = int(line[15:])
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4:end + 4 + length])
            del self.buf[:end + 4 + length]
            self.transport.write(self._answer(head, body))

    def _answer(self, head: str, body: bytes) -> bytes:
        method, target = head.split(" ", 2)[:2]
        if method == "GET" and target.startswith("/stats"):
            query = dict(p.split("=", 1) for p in target.partition("?")[2].split("&") if p)
            out = json.dumps(self.seen.stats(query.get("prefix", ""),
                                             query.get("arrivals") == "1")).encode()
            ctype = b"application/json"
        else:
            self.seen.hook(head, body)
            out, ctype = b"ok", b"text/plain"
        return (b"HTTP/1.1 200 OK\r\ncontent-type: " + ctype + b"\r\ncontent-length: "
                + str(len(out)).encode() + b"\r\n\r\n" + out)


def serve_receiver() -> None:
    """Listen on a free port, print it, serve until stdin closes."""
    import uvloop

    async def main() -> None:
        seen = _Arrivals()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Http(seen), "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        await loop.run_in_executor(None, sys.stdin.read)

    uvloop.run(main())


# ---- processes and their CPU -----------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()  # fields from 3 (state) on


def _cpu(pid: int) -> float:
    st = _stat(pid)
    return 0.0 if st is None else (int(st[11]) + int(st[12])) / CLK


def _children(ppid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None and int(st[1]) == ppid:
            found.append(int(entry))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rig:
    """PostgreSQL, the control plane, the receiver: started, measured, always stopped."""

    def __init__(self, receiver_nice: int, pg_stats: bool = False,
                 cp_env: dict[str, str] | None = None,
                 pg_conf: dict[str, str] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="tgbench-", dir="/tmp"))
        self.root.chmod(0o755)  # as root, PostgreSQL runs as nobody and must reach it
        self.receiver_nice, self.pg_stats = receiver_nice, pg_stats
        self.cp_env = cp_env or {}
        self.pg_conf = dict(pg_conf or {})
        if pg_stats:
            self.pg_conf["shared_preload_libraries"] = "pg_stat_statements"
        self.pg: Any = None
        self.cp: subprocess.Popen[bytes] | None = None
        self.rx: subprocess.Popen[str] | None = None
        self.hook_apps: set[int] = set()

    def start(self) -> tuple[str, str, str]:
        """(Admin API URL, receiver URL, DSN)."""
        from cp.pg_embedded import EmbeddedPostgres

        self.pg = EmbeddedPostgres(self.root / "pg")
        dsn = self.pg.start()
        if self.pg_conf:
            self._configure_pg(dsn)
        port = free_port()
        with open(self.root / "cp.log", "wb") as log:
            self.cp = subprocess.Popen(
                [sys.executable, "-m", "shared.cli", "cp", "start", "--pg-dsn", dsn,
                 "--prefix", str(self.root / "cp"), "--admin-listen", f"127.0.0.1:{port}",
                 "--cluster-listen", f"127.0.0.1:{free_port()}"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(ROOT), **self.cp_env})
        self.rx = subprocess.Popen(
            [sys.executable, __file__, "--serve-receiver", "--receiver-nice",
             str(self.receiver_nice)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.rx.stdout is not None
        rx_port = int(self.rx.stdout.readline())
        return f"http://127.0.0.1:{port}", f"http://127.0.0.1:{rx_port}", dsn

    def _configure_pg(self, dsn: str) -> None:
        """Server settings (ALTER SYSTEM, then a restart), e.g. pg_stat_statements preloaded:
        where PostgreSQL's time goes."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(dsn, autocommit=True) as c:
            for name, value in self.pg_conf.items():
                c.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(
                    sql.Identifier(name), sql.Literal(value)))
        self.pg.stop()
        self.pg.start()
        if self.pg_stats:
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute("CREATE EXTENSION pg_stat_statements")

    def top_statements(self, dsn: str, n: int = 15) -> None:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as c:
            rows = c.execute(
                "SELECT total_exec_time, calls, rows, regexp_replace(query, '\\s+', ' ', 'g') "
                "FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT %s", (n,)).fetchall()
        print("PostgreSQL statements by total time (ms, calls, rows):")
        for total, calls, nrows, query in rows:
            print(f"  {total:9.0f} {calls:7d} {nrows:8d}  {query[:150]}")

    def postmaster(self) -> int:
        return int((self.root / "pg" / "postmaster.pid").read_text().split()[0])

    def worker(self) -> int | None:
        assert self.cp is not None
        for pid in _children(self.cp.pid):
            if b"cp.hooks.worker_main" in _cmdline(pid):
                return pid
        return None

    def cpu(self, hook_backends: set[int]) -> dict[str, float]:
        """CPU seconds so far: CP, hooks worker, PostgreSQL (the worker's backends apart),
        receiver. Backends that exited since are not counted (none do during a run)."""
        assert self.cp is not None and self.rx is not None
        worker = self.worker()
        backends = _children(self.postmaster())
        return {
            "cp": _cpu(self.cp.pid), "worker": _cpu(worker) if worker else 0.0,
            "pg": sum(_cpu(p) for p in backends if p not in hook_backends)
            + _cpu(self.postmaster()),
            "pg(hooks)": sum(_cpu(p) for p in backends if p in hook_backends),
            "receiver": _cpu(self.rx.pid),
            "generator": sum(getattr(resource.getrusage(w), f)
                             for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                             for f in ("ru_utime", "ru_stime")),
        }

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.root / "cp.log").read_text().splitlines()[-20:])
        return ""

    def stop(self) -> None:
        if self.rx is not None:
            with contextlib.suppress(OSError):
                self.rx.stdin.close()  # type: ignore[union-attr]
            self.rx.terminate()
            self.rx.wait(10)
        if self.cp is not None:
            self.cp.terminate()
            try:
                self.cp.wait(30)
            except subprocess.TimeoutExpired:
                self.cp.kill()
                self.cp.wait()
        if self.pg is not None:
            self.pg.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# ---- load ------------------------------------------------------------------------------------

_WRK = r"""
function init(args)
  prefix = args[1]; limit = tonumber(args[2]); n, done_n, bad = 0, 0, 0
end
function request()
  n = n + 1
  return wrk.format("POST", "/consumers", {["Content-Type"] = "application/json"},
                    string.format('{"username":"%s%d"}', prefix, n))
end
function response(status, headers, body)
  done_n = done_n + 1
  if status ~= 201 then bad = bad + 1 end
  if done_n == limit then
    io.write(string.format("BENCH-DONE %d\n", bad)); io.flush(); wrk.thread:stop()
  end
end
"""


def wrk_writes(admin: str, prefix: str, n: int, concurrency: int) -> float:
    """n creates (a few more may land: wrk keeps `concurrency` in flight); returns writes/s
    counted over the first n answers."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK)
    proc = subprocess.Popen(
        ["wrk", "-t", "1", "-c", str(concurrency), "-d", "600s", "--timeout", "30s",
         "-s", f.name, admin, "--", prefix, str(n)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        started = time.monotonic()
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("BENCH-DONE"):
                elapsed = time.monotonic() - started
                proc.send_signal(signal.SIGINT)
                if int(line.split()[1]):
                    raise SystemExit(f"{line.split()[1]} writes failed")
                return n / elapsed
        raise SystemExit("wrk ended early")
    finally:
        if proc.poll() is None:
            proc.wait(30)
        os.unlink(f.name)


async def aiohttp_writes(admin: str, prefix: str, n: int, concurrency: int) -> float:
    import aiohttp

    queue = iter(range(n))

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in queue:
            async with session.post("/consumers", json={"username": f"{prefix}{i}"}) as r:
                assert r.status == 201, await r.text()

    async with aiohttp.ClientSession(base_url=admin) as session:
        started = time.monotonic()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return n / (time.monotonic() - started)


# ---- phases ----------------------------------------------------------------------------------

class Bench:
    def __init__(self, rig: Rig, admin: str, receiver: str, dsn: str,
                 args: argparse.Namespace) -> None:
        self.rig, self.admin, self.receiver, self.dsn, self.args = rig, admin, receiver, dsn, args
        self.hooks: list[str] = []

    async def sql(self, query: str) -> Any:
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as c:
            return await (await c.execute(query)).fetchall()

    async def quiet(self, timeout: float = 300) -> None:
        """Until every change is dispatched and no delivery is pending."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (done,), = await self.sql(
                "SELECT (SELECT last_change FROM event_hook_cursor) >= "
                "(SELECT coalesce(max(id), 0) FROM change_log) AND NOT EXISTS "
                "(SELECT 1 FROM event_hook_deliveries WHERE status = 'pending')")
            if done:
                return
            await asyncio.sleep(0.05)
        raise SystemExit("deliveries did not drain")

    async def hook_backends(self) -> set[int]:
        rows = await self.sql("SELECT pid FROM pg_stat_activity "
                              "WHERE application_name LIKE 'tidegate-hooks%'")
        return {r[0] for r in rows}

    async def stats(self, prefix: str, arrivals: bool = False) -> dict[str, Any]:
        import aiohttp

        async with aiohttp.ClientSession() as s, s.get(
                f"{self.receiver}/stats?prefix={prefix}&arrivals={int(arrivals)}") as r:
            return dict(await r.json())

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        import aiohttp

        async with aiohttp.ClientSession(base_url=self.admin) as s, \
                s.request(method, path, json=body) as r:
            assert r.status in (200, 201, 204), (r.status, await r.text())
            return await r.json() if r.status != 204 else None

    async def set_hooks(self, n: int) -> None:
        while len(self.hooks) > n:
            await self.api("DELETE", f"/event-hooks/{self.hooks.pop()}")
        while len(self.hooks) < n:
            hook = await self.api("POST", "/event-hooks", {
                "source": "crud", "event": "consumers", "handler": "webhook",
                "config": {"url": f"{self.receiver}/hook"}})
            self.hooks.append(hook["id"])
        await self.quiet()

    async def writes(self, prefix: str, n: int) -> float:
        if self.args.client == "wrk":
            return await asyncio.to_thread(wrk_writes, self.admin, prefix, n, 16)
        return await aiohttp_writes(self.admin, prefix, n, 16)

    def profile(self, name: str) -> subprocess.Popen[bytes] | None:
        """py-spy on the hooks worker (its CPU then counts py-spy's sampling too)."""
        worker = self.rig.worker()
        if not self.args.profile_dir or worker is None:
            return None
        out = Path(self.args.profile_dir) / f"worker-{name}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(worker), "-f",
             "raw", "-r", "200", "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def latency(self, n: int, rate: float = 100.0) -> list[float]:
        """Writes at `rate`/s with one hook; ms from just before each request to its arrival."""
        import aiohttp

        await self.set_hooks(1)
        sent: dict[str, float] = {}
        async with aiohttp.ClientSession(base_url=self.admin) as session:
            async def one(name: str) -> None:
                sent[name] = time.monotonic()
                async with session.post("/consumers", json={"username": name}) as r:
                    assert r.status == 201

            start, tasks = time.monotonic(), []
            for i in range(n):
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                tasks.append(asyncio.create_task(one(f"lat-{i}")))
            await asyncio.gather(*tasks)
        await self.quiet()
        got = (await self.stats("lat-", arrivals=True))["arrivals"]
        if set(got) != set(sent):
            raise SystemExit(f"latency run: {len(sent) - len(got)} writes never delivered")
        return sorted((got[k] - t) * 1000 for k, t in sent.items())

    async def run(self, index: int, hooks: int) -> dict[str, Any]:
        """One write run; with hooks, checks every write reached every hook exactly once."""
        await self.set_hooks(hooks)
        prefix = f"r{index}h{hooks}-"
        ids_before = (await self.stats(prefix))["ids"]
        backends = await self.hook_backends()
        spy = self.profile(f"run{index}") if hooks else None
        (wal0,), = await self.sql("SELECT pg_current_wal_lsn()")
        cpu0 = self.rig.cpu(backends)
        rate = await self.writes(prefix, self.args.writes)
        ended = time.monotonic()
        await self.quiet()
        cpu1 = self.rig.cpu(backends)
        (wal,), = await self.sql(f"SELECT pg_current_wal_lsn() - '{wal0}'::pg_lsn")
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        (made,), = await self.sql(
            f"SELECT count(*) FROM consumers WHERE username LIKE '{prefix}%'")
        result = {"hooks": hooks, "rate": rate, "writes": made, "wal": int(wal),
                  "cpu": {k: cpu1[k] - cpu0[k] for k in cpu0}}
        if hooks:
            got = await self.stats(prefix)
            ids = got["ids"] - ids_before
            if got["deliveries"] != hooks * made or got["per_name"] != [hooks] \
                    or ids != got["deliveries"]:
                raise SystemExit(f"run {index}: {made} writes x {hooks} hooks but "
                                 f"{got['deliveries']} deliveries ({got['per_name']} per "
                                 f"write, {ids} distinct delivery ids)")
            result.update(deliveries=got["deliveries"], span=got["last"] - got["first"],
                          drain=got["last"] - ended)
        return result


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))]


def show(index: int, r: dict[str, Any]) -> None:
    cpu = "  ".join(f"{k} {v:5.2f}" for k, v in r["cpu"].items())
    line = (f"  run {index} {r['hooks']:2d} hooks  {r['rate']:7.0f} writes/s   CPU s: {cpu}   "
            f"WAL {r['wal'] / r['writes'] / 1024:.1f} KiB/write")
    if r["hooks"]:
        line += (f"\n{'':20}{r['deliveries']} deliveries ({r['writes']} writes x {r['hooks']}) "
                 f"in {r['span']:.2f} s = {r['deliveries'] / r['span']:.0f}/s, last "
                 f"{r['drain']:.2f} s after the writes ended")
    print(line, flush=True)


async def bench(bench_: Bench, args: argparse.Namespace) -> None:
    await bench_.writes("warm-", 500)
    lat = await bench_.latency(args.latency_writes)
    print(f"latency write->received   p50 {pct(lat, 0.5):6.1f} ms   p99 {pct(lat, 0.99):6.1f} ms"
          f"   max {lat[-1]:6.1f} ms   (goal p99 <= 100 ms)", flush=True)
    order = [0, HOOKS, HOOKS, 0] * ((args.rounds + 1) // 2)
    results = []
    for i, hooks in enumerate(order[:2 * args.rounds]):
        results.append(await bench_.run(i, hooks))
        show(i, results[-1])
    base = statistics.median(r["rate"] for r in results if not r["hooks"])
    hooked_runs = [r for r in results if r["hooks"]]
    hooked = statistics.median(r["rate"] for r in hooked_runs)
    print(f"writes/s without hooks    {base:7.0f}   (median of {len(hooked_runs)} runs)")
    print(f"writes/s with {HOOKS} hooks     {hooked:7.0f}   ratio {hooked / base:.2f} "
          "(goal >= 0.9)")
    rates = [r["deliveries"] / r["span"] for r in hooked_runs]
    print(f"deliveries/s              {statistics.median(rates):7.0f}   "
          f"(median; runs {', '.join(f'{x:.0f}' for x in rates)}; goal >= 500/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=3000, help="writes per run")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of runs (with/without)")
    parser.add_argument("--latency-writes", type=int, default=500)
    parser.add_argument("--receiver-nice", type=int, default=0)
    parser.add_argument("--client", choices=("wrk", "python"),
                        default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--pg-stats", action="store_true",
                        help="print PostgreSQL's costliest statements (pg_stat_statements)")
    parser.add_argument("--profile-dir", help="py-spy the hooks worker in hooked runs "
                        "(collapsed stacks written there)")
    parser.add_argument("--cp-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the control plane, e.g. TIDEGATE_EVENT_HOOKS_NICE=19")
    parser.add_argument("--pg-conf", action="append", default=[], metavar="NAME=VALUE",
                        help="a PostgreSQL server setting, e.g. wal_compression=on")
    parser.add_argument("--serve-receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver:
        os.nice(args.receiver_nice)
        serve_receiver()
        return
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"client {args.client}, {args.writes} writes per run, receiver nice "
          f"{args.receiver_nice}{''.join(f', {kv}' for kv in args.cp_env + args.pg_conf)}",
          flush=True)
    cp_env = dict(kv.split("=", 1) for kv in args.cp_env)
    pg_conf = dict(kv.split("=", 1) for kv in args.pg_conf)
    rig = Rig(args.receiver_nice, args.pg_stats, cp_env, pg_conf)
    try:
        admin, receiver, dsn = rig.start()

        async def go() -> None:
            import aiohttp

            async with aiohttp.ClientSession(base_url=admin) as s:
                await wait_ready(s, rig)
            await bench(Bench(rig, admin, receiver, dsn, args), args)
            if args.pg_stats:
                rig.top_statements(dsn)

        asyncio.run(go())
    finally:
        rig.stop()
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


async def wait_ready(session: Any, rig: Rig) -> None:
    import aiohttp

    assert rig.cp is not None
    for _ in range(600):
        if rig.cp.poll() is not None:
            raise SystemExit("control plane exited:\n" + rig.tail())
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get("/status") as r:
                if r.status == 200 and rig.worker() is not None:
                    return
        await asyncio.sleep(0.1)
    raise SystemExit("control plane not ready:\n" + rig.tail())


if __name__ == "__main__":
    main()
