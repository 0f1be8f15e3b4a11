"""Event uplink figures: a data plane's events through the real uplink into a real control plane.

    .venv/bin/python bench/events.py [--rate 1000] [--paced 5000] [--burst 100000]
                                     [--duration 3] [--rounds 8] [--flood-rate 5000]
                                     [--cp-nice 10] [--no-pin]

A real `tidegate cp start` (its own embedded PostgreSQL under /tmp) and, in this process, the
data plane's real uplink: dp.events.EventQueue and dp.cluster_client.ClusterClient over mTLS.
Prints:

  latency     --paced events put at --rate/s: put -> stored (the row's received_at, same clock)
              and put -> acknowledged (the EventAck back at the data plane: stored and
              committed), p50 / p99 / max
  throughput  --burst events put as fast as the loop can (1 000 per loop turn, as a flood of
              rate-limit events would arrive): events/s from the first put to the last ACK
              (goal >= 10 000/s), the batches it took, CPU seconds of the CP and of PostgreSQL
  uplink CPU  this process's CPU per event during 3 s of a --flood-rate/s flood with no proxy
              load (payloads built in advance, as the plugin builds them anyway), and what share
              of a core that rate costs a data plane; an idle loop woken for each batch pays
              more per event than a loop busy proxying
  proxy       the data plane's HTTP proxy (dp.proxy.server.ProxyServer, in this process on the
              same event loop as the uplink, as in a data plane's main process) in front of an
              nginx upstream, loaded by wrk: --rounds rounds of three --duration s runs, one
              per arm, the order reversed every other round (the machine is shared: a load that
              comes or goes hits every arm alike):
                without  no events anywhere
                with     a concurrent flood of rate-limit-exceeded events put at --flood-rate/s
                         into this data plane's queue, shipped and stored meanwhile
                other    the same flood raised by another data plane (bench/other_dp.py, a
                         process beside the control plane) and stored by the control plane,
                         while this data plane raises none
              requests/s and this process's CPU per request of every run, the medians, the
              drop of the medians with / without (goal <= 5%) and the median of each round's
              own drop (its runs are next to each other in time, so it is the figure a drifting
              load disturbs least). `other` is for reading that figure: what the control
              plane's and PostgreSQL's work on the other CPU costs the proxy on this machine
              (here it shares two CPUs with the data plane, wrk and nginx; in production it
              runs on other hosts), and with / other is then the data plane's own cost of the
              flood. Needs nginx and wrk, else it is skipped.

With --pin (default on 2+ CPUs) the data plane has a CPU of its own for the proxy runs (see
`pin`), as on its own host.

For the proxy runs the control plane and PostgreSQL are reniced to --cp-nice (default 10; the
latency and throughput figures are taken before, at the usual priority): in production they
run on other hosts, and the goal is about the data plane's own cost, so here they get the CPU
the proxy, wrk and nginx leave rather than an equal share of the two cores (so does the other
data plane). Nothing is skipped for that: every flooded run checks that the flood was stored
and acknowledged while it ran (what was still unacknowledged when wrk stopped must be under a
second of events, or the run is reported INVALID and the bench exits 1) and, afterwards, that
every event of both floods is a row in PostgreSQL. The load average is printed at the start
and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # no fork() notices when wrk is started

import http_proxy  # noqa: E402  (nginx, wrk, cpu_seconds, children)
import psycopg  # noqa: E402

from cp.hooks.priority import lower_autogroup  # noqa: E402
from dp.cluster_client import ClusterClient  # noqa: E402
from dp.events import EventQueue  # noqa: E402
from dp.proxy.server import ProxyServer  # noqa: E402
from dp.running import RunningConfig, Snapshot  # noqa: E402
from shared import declarative  # noqa: E402
from shared.certs import gen_cluster_cert  # noqa: E402
from shared.config_set import ConfigSet  # noqa: E402
from shared.tls import ClusterTLS  # noqa: E402
from tests.procs import ControlPlane  # noqa: E402


class TimedQueue(EventQueue):
    """The real queue, noting when each event's acknowledgement arrived (while `timing`) and
    counting batches sent."""

    def __init__(self, maxlen: int) -> None:
        super().__init__(maxlen)
        self.acked_at: dict[int, float] = {}
        self.put_at: dict[int, float] = {}
        self.batches = 0
        self.timing = True

    def take(self, limit: int) -> list[Any]:
        batch = super().take(limit)
        self.batches += bool(batch)
        return batch

    def ack(self, boot_id: str, up_to_seq: int) -> int:
        first = self._items[0].seq if self._items else up_to_seq + 1
        forgotten = super().ack(boot_id, up_to_seq)
        if self.timing:
            now = time.time()
            for seq in range(first, first + forgotten):
                self.acked_at[seq] = now
        return forgotten


def rate_limit_event(i: int) -> dict[str, Any]:
    return {"consumer": {"id": str(uuid.UUID(int=i))}, "ip": f"10.{i >> 16 & 255}."
            f"{i >> 8 & 255}.{i & 255}", "service": {"id": "5f1b4c4e-0000-4000-8000-000000000001"},
            "rate": 11, "limit": 10, "window": "second"}


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


async def until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def stored_latencies(dsn: str, boot_id: str, first: int, last: int) -> list[float]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        rows = await (await conn.execute(
            "SELECT extract(epoch FROM received_at - at)::float8 FROM clustering_dp_events "
            "WHERE boot_id = %s AND seq BETWEEN %s AND %s", (boot_id, first, last))).fetchall()
    return [r[0] * 1000 for r in rows]


async def paced(queue: TimedQueue, dsn: str, count: int, rate: float) -> None:
    first = queue.total + 1
    start = time.monotonic()
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put("rate-limiting-advanced", "rate-limit-exceeded", rate_limit_event(i))
        queue.put_at[queue.total] = queue._items[-1].at
    last = queue.total
    await until(lambda: all(s in queue.acked_at for s in range(first, last + 1)), 60, "acks")
    acked = [(queue.acked_at[s] - queue.put_at[s]) * 1000 for s in range(first, last + 1)]
    stored = await stored_latencies(dsn, queue.boot_id, first, last)
    print(f"  latency at {rate:.0f} events/s ({count} events):")
    for name, values in (("put -> stored", stored), ("put -> acknowledged", acked)):
        print(f"    {name:20s} p50 {pct(values, 0.5):6.1f} ms   p99 {pct(values, 0.99):6.1f} ms"
              f"   max {max(values):6.1f} ms")


async def burst(queue: TimedQueue, cp: ControlPlane, pg_pid: int | None, count: int) -> None:
    first, batches = queue.total + 1, queue.batches
    cpu0 = http_proxy.cpu_seconds(cp.popen.pid), pg_cpu(pg_pid)
    started = time.time()
    for i in range(count):
        queue.put("rate-limiting-advanced", "rate-limit-exceeded", rate_limit_event(i))
        if i % 1000 == 999:
            await asyncio.sleep(0)
    put_done = time.time()
    last = queue.total
    await until(lambda: last in queue.acked_at, 300, "the burst's acks")
    elapsed = queue.acked_at[last] - started
    cpu1 = http_proxy.cpu_seconds(cp.popen.pid), pg_cpu(pg_pid)
    missing = sum(1 for s in range(first, last + 1) if s not in queue.acked_at)
    print(f"  throughput: {count} events put in {put_done - started:.2f} s, all stored and "
          f"acknowledged after {elapsed:.2f} s: {count / elapsed:,.0f} events/s "
          f"(goal >= 10 000/s), {queue.batches - batches} batches, {missing} unacknowledged, "
          f"{queue.dropped} dropped")
    print(f"    CPU: control plane {cpu1[0] - cpu0[0]:.2f} s, PostgreSQL "
          f"{cpu1[1] - cpu0[1]:.2f} s")


def pg_cpu(pid: int | None) -> float:
    return http_proxy.cpu_seconds(pid) if pid else 0.0


async def wrk(url: str, duration: int) -> tuple[float, float]:
    """requests/s, and this process's CPU µs per request (proxy + uplink: the data plane)."""
    cpu = time.process_time()
    proc = await asyncio.create_subprocess_exec(
        *_on_other_cpus(), "wrk", "-t1", "-c50", f"-d{duration}s", url,
        stdout=asyncio.subprocess.PIPE)
    out = (await proc.communicate())[0].decode()
    cpu = time.process_time() - cpu
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            rps = float(line.split()[1])
            return rps, cpu / (rps * duration) * 1e6
    raise SystemExit(f"wrk said: {out}")


FLOOD_PAYLOADS = [rate_limit_event(i) for i in range(1000)]  # built once: the plugin's cost


async def flood(queue: EventQueue, rate: float, stop: asyncio.Event) -> int:
    """Put rate-limit events at `rate`/s in 10 ms steps until stopped; returns how many."""
    start, n = time.monotonic(), 0
    while not stop.is_set():
        due = int((time.monotonic() - start) * rate)
        while n < due:
            queue.put("rate-limiting-advanced", "rate-limit-exceeded", FLOOD_PAYLOADS[n % 1000])
            n += 1
        await asyncio.sleep(0.01)
    return n


async def uplink_cpu(queue: EventQueue, rate: float, seconds: float) -> float:
    """This process's CPU µs per event while flooding with no proxy load: the data plane's
    cost of the uplink (put, encode, gRPC over TLS, acks)."""
    stop = asyncio.Event()
    cpu = time.process_time()
    flooding = asyncio.create_task(flood(queue, rate, stop))
    await asyncio.sleep(seconds)
    stop.set()
    sent = await flooding
    await until(lambda: queue.unsent == 0 and queue.unacked == 0, 60, "flood acked")
    return (time.process_time() - cpu) / max(sent, 1) * 1e6


@dataclass
class Run:
    """One wrk run of one arm (see ARMS)."""

    rps: float
    cpu: float  # µs of this process's CPU per request
    put: int  # events of the arm's flood put during the run
    acked: int  # of those, acknowledged before wrk stopped
    cp_cpu: float  # seconds the control plane and PostgreSQL used meanwhile
    other_cpu: float  # seconds the other data plane used meanwhile

    @property
    def backlog(self) -> int:
        return self.put - self.acked


# "without": no events anywhere; "with": this data plane floods; "other": another data plane
# floods the control plane at the same rate, this one raises no event.
ARMS = ("without", "with", "other")


class OtherDataPlane:
    """bench/other_dp.py in a process of its own, on the CPUs of everything but the data plane,
    at the control plane's niceness."""

    def __init__(self, cluster: str, tmp: Path, rate: float, duration: int, nice: int) -> None:
        self.proc = subprocess.Popen(
            [*_on_other_cpus(), "nice", "-n", str(nice), sys.executable,
             str(ROOT / "bench" / "other_dp.py"), cluster, str(tmp / "c.crt"),
             str(tmp / "c.key"), str(rate), str(duration)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.sent = 0
        self.boot_id = ""

    async def said(self) -> str:
        line = await asyncio.to_thread(self.proc.stdout.readline)  # type: ignore[union-attr]
        if not line:
            raise SystemExit("bench/other_dp.py exited")
        return line.strip()

    def tell(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    async def stop(self) -> tuple[int, int]:
        """Stop its flood; how many events it sent, how many were acknowledged by then."""
        self.tell("stop")
        sent, acked, self.boot_id = (await self.said()).split()
        self.sent += int(sent)
        return int(sent), int(acked)

    def cpu(self) -> float:
        return http_proxy.cpu_seconds(self.proc.pid)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


async def arm_run(arm: str, queue: TimedQueue, other: OtherDataPlane, url: str,
                  args: argparse.Namespace, cpu_of_cp: Callable[[], float]) -> Run:
    """One wrk run of `arm`, every earlier event acknowledged before it starts; what was
    acknowledged before wrk stopped, then waits for the rest."""
    stop = asyncio.Event()
    acked0, cp0, other0 = queue.acked, cpu_of_cp(), other.cpu()
    flooding = asyncio.create_task(flood(queue, args.flood_rate, stop)) if arm == "with" \
        else None
    if arm == "other":
        other.tell("flood")
    rps, cpu = await wrk(url, args.duration)
    acked, cp_cpu, other_cpu = queue.acked - acked0, cpu_of_cp() - cp0, other.cpu() - other0
    put = 0
    if flooding:
        stop.set()
        put = await flooding
    elif arm == "other":
        put, acked = await other.stop()
    await until(lambda: queue.unsent == 0 and queue.unacked == 0, 60, "flood acked")
    return Run(rps, cpu, put, min(acked, put), cp_cpu, other_cpu)


async def proxy_phase(queue: TimedQueue, tmp: Path, args: argparse.Namespace, dsn: str,
                      cp: ControlPlane, cpu_of_cp: Callable[[], float],
                      others: list[int]) -> bool:
    """The rounds of the three arms (see the module docstring); False when a run was invalid."""
    if not (shutil.which("wrk") and shutil.which("nginx")):
        print("  proxy: skipped (needs wrk and nginx: apt-get install -y wrk nginx-light)")
        return True
    up_port = http_proxy.free_port()
    upstream = http_proxy.nginx(tmp, "upstream", f"""
    server {{ listen 127.0.0.1:{up_port} backlog=4096;
             location / {{ default_type application/json;
                          return 200 '{{"hello":"world"}}'; }} }}""")
    proxy = ProxyServer(queue, [])
    other: OtherDataPlane | None = None
    try:
        http_proxy.wait_http(f"http://127.0.0.1:{up_port}/")
        if args.pin:
            pin(0, [*others, upstream.pid])
        other = OtherDataPlane(cp.cluster, tmp, args.flood_rate, args.duration, args.cp_nice)
        if await other.said() != "ready":
            raise SystemExit("bench/other_dp.py did not connect")
        doc = {"_format_version": "3.0", "services": [{
            "name": "s", "url": f"http://127.0.0.1:{up_port}",
            "routes": [{"name": "r", "paths": ["/"]}]}]}
        config = ConfigSet.from_lists(declarative.load(doc))
        proxy.apply(Snapshot("bench", config, "file"))
        port = await proxy.listen("127.0.0.1", 0, "http")
        url = f"http://127.0.0.1:{port}/"
        queue.timing = False
        per_event = await uplink_cpu(queue, args.flood_rate, 3)
        print(f"  uplink CPU on the data plane, no proxy load: {per_event:.1f} µs per event, "
              f"{per_event * args.flood_rate / 1e4:.1f}% of a core at {args.flood_rate:,.0f} "
              f"events/s")
        await wrk(url, 2)  # warm up
        return await rounds(queue, other, url, args, dsn, cpu_of_cp)
    finally:
        if other is not None:
            other.close()
        await proxy.close()
        upstream.terminate()
        upstream.wait()


async def rounds(queue: TimedQueue, other: OtherDataPlane, url: str, args: argparse.Namespace,
                 dsn: str, cpu_of_cp: Callable[[], float]) -> bool:
    """The rounds of the three arms; whether every run was valid."""
    runs: dict[str, list[Run]] = {arm: [] for arm in ARMS}
    first = queue.total + 1
    print(f"  proxy (wrk -c50, {args.rounds} rounds of 3 runs of {args.duration} s: without "
          f"events, with this data plane's flood of {args.flood_rate:,.0f} events/s, with "
          f"another data plane's; the order reversed every other round):")
    for r in range(args.rounds):
        for arm in ARMS if r % 2 == 0 else ARMS[::-1]:
            run = await arm_run(arm, queue, other, url, args, cpu_of_cp)
            runs[arm].append(run)
            flooded = f"  {run.acked} of {run.put} events acknowledged during the run" \
                if arm != "without" else ""
            print(f"    round {r + 1} {arm:7s} {run.rps:9,.0f} req/s  {run.cpu:3.0f} µs/req  "
                  f"CPU beside: CP + PostgreSQL {run.cp_cpu:.2f} s, other data plane "
                  f"{run.other_cpu:.2f} s{flooded}")
    report(runs, args.duration)
    put = sum(run.put for run in runs["with"])
    rows = await stored_count(dsn, queue.boot_id, first, queue.total)
    other_rows = await stored_count(dsn, other.boot_id, 1, other.sent)
    print(f"    floods: this data plane put {put} events, {rows} stored in PostgreSQL, "
          f"{queue.dropped} dropped; the other sent {other.sent}, {other_rows} stored")
    valid = rows == put and other_rows == other.sent and queue.dropped == 0
    for run in runs["with"] + runs["other"]:
        if run.backlog > args.flood_rate:  # steady: a flood linger and a store, ~0.15 s
            print(f"    INVALID: {run.backlog} events were not acknowledged when wrk stopped: "
                  f"the control plane did not keep up, the flood was not shipped meanwhile")
            valid = False
    if rows != put or other_rows != other.sent:
        print("    INVALID: not every event of the floods is stored")
    return valid


def report(runs: dict[str, list[Run]], duration: int) -> None:
    """The medians and drops of the rounds (see the module docstring)."""
    def median(arm: str, field: str = "rps") -> float:
        return statistics.median(getattr(run, field) for run in runs[arm])

    def drop(arm: str, base: str) -> str:
        paired = statistics.median(1 - a.rps / b.rps for a, b in zip(
            runs[arm], runs[base], strict=True))
        return (f"drop {(1 - median(arm) / median(base)) * 100:.1f}%, median of the rounds' "
                f"own {paired * 100:.1f}%")

    print(f"  proxy, medians: {median('without'):,.0f} req/s without events, "
          f"{median('with'):,.0f} with this data plane's flood, {median('other'):,.0f} "
          f"while the control plane stores the other data plane's flood")
    print(f"    with / without: {drop('with', 'without')} (goal <= 5%)")
    print(f"    other / without, the control plane's and PostgreSQL's work beside the data "
          f"plane: {drop('other', 'without')}; with / other, this data plane's own cost of the "
          f"flood: {drop('with', 'other')}")
    print(f"    data plane CPU per request: {median('without', 'cpu'):.1f} µs without, "
          f"{median('with', 'cpu'):.1f} µs with, {median('other', 'cpu'):.1f} µs other")
    print(f"    share of a core beside the data plane: control plane + PostgreSQL "
          f"{median('with', 'cp_cpu') / duration:.1%} with, "
          f"{median('other', 'cp_cpu') / duration:.1%} other; the other data plane "
          f"{median('other', 'other_cpu') / duration:.1%} while flooding")


async def stored_count(dsn: str, boot_id: str, first: int, last: int) -> int:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        row = await (await conn.execute(
            "SELECT count(*) FROM clustering_dp_events WHERE boot_id = %s AND seq BETWEEN %s "
            "AND %s", (boot_id, first, last))).fetchone()
    return int(row[0]) if row else 0


async def measure(args: argparse.Namespace, cp: ControlPlane, dsn: str, tls: ClusterTLS,
                  pg_pid: int | None, tmp: Path) -> bool:
    queue = TimedQueue(max(args.burst, args.paced) * 2)
    client = ClusterClient(cp.cluster, tls, RunningConfig(), f"bench-{uuid.uuid4()}",
                           events=queue)
    task = asyncio.create_task(client.run())
    try:
        await until(lambda: client.status.connected, 30, "the cluster link")
        await paced(queue, dsn, args.paced, args.rate)
        await burst(queue, cp, pg_pid, args.burst)
        for pid in (cp.popen.pid, pg_pid):  # PostgreSQL's backends are children: included
            if pid:
                renice(pid, args.cp_nice)
        return await proxy_phase(queue, tmp, args, dsn, cp, lambda: http_proxy.cpu_seconds(
            cp.popen.pid) + pg_cpu(pg_pid), [p for p in (cp.popen.pid, pg_pid) if p])
    finally:
        task.cancel()


_OTHER_CPUS: set[int] = set()  # when the data plane is pinned: the CPUs of everything else


def pin(data_plane: int, others: list[int]) -> None:
    """The data plane (this process, every thread) on a CPU of its own, as on its own host;
    `others` (the control plane, PostgreSQL, nginx, with their threads and children, and wrk
    when started) share the remaining CPUs. Unpinned, the scheduler also runs them on the data
    plane's CPU, preempting the proxy: a cost of sharing one small machine that a data plane
    with the control plane on other hosts does not pay."""
    rest = set(range(os.cpu_count() or 1)) - {data_plane}
    _OTHER_CPUS.update(rest)
    _each_thread(os.getpid(), lambda t: os.sched_setaffinity(t, {data_plane}))
    for pid in others:
        for p in [pid, *http_proxy.children(pid)]:
            _each_thread(p, lambda t: os.sched_setaffinity(t, rest))


def _each_thread(pid: int, act: Callable[[int], None]) -> None:
    """`act` on every thread of process `pid` (nothing when it exited meanwhile)."""
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            act(int(task.name))
    except OSError:
        pass


def _on_other_cpus() -> list[str]:
    """A command prefix that starts a program off the data plane's CPU when it is pinned
    (taskset rather than a preexec_fn: forking a process that runs gRPC's threads upsets
    gRPC's pollers)."""
    return ["taskset", "-c", ",".join(map(str, sorted(_OTHER_CPUS)))] if _OTHER_CPUS else []


def renice(pid: int, nice: int) -> None:
    """`nice` for a running process, its threads and its children (PostgreSQL's backends: the
    control plane's pooled connections, and any forked later inherit the postmaster's), and
    for the autogroup of each that leads its own session (every PostgreSQL process does: with
    autogroups the scheduler shares the CPU between sessions first, see cp/hooks/priority.py)."""
    for p in [pid, *http_proxy.children(pid)]:
        _each_thread(p, lambda t: os.setpriority(os.PRIO_PROCESS, t, nice))
        lower_autogroup(p, nice)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--paced", type=int, default=5000)
    parser.add_argument("--burst", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--flood-rate", type=float, default=5000)
    parser.add_argument("--cp-nice", type=int, default=10)
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction,
                        default=(os.cpu_count() or 1) >= 2,
                        help="the data plane on a CPU of its own for the proxy runs (see pin)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tgbench-", dir="/tmp"))
    tmp.chmod(0o755)
    gen_cluster_cert(tmp / "c.crt", tmp / "c.key")
    tls = ClusterTLS.from_files("shared", tmp / "c.crt", tmp / "c.key")
    print(f"events bench ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
          f"control plane and PostgreSQL at nice {args.cp_nice} for the proxy runs)")
    from cp.pg_embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(tmp / "pg")
    dsn = pg.start()
    pid_file = pg.data_dir / "postmaster.pid"
    pg_pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
    cp: ControlPlane | None = None
    try:
        cp = ControlPlane(tmp, dsn, {"cert": tmp / "c.crt", "key": tmp / "c.key"})
        import uvloop

        valid = uvloop.run(measure(args, cp, dsn, tls, pg_pid, tmp))
    finally:
        if cp is not None:
            cp.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if not valid:
        sys.exit(1)


if __name__ == "__main__":
    main()
