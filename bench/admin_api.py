"""Admin API benchmark: a real control plane (embedded PostgreSQL), driven over real HTTP.

    .venv/bin/python bench/admin_api.py [--creates 5000] [--reads 20000] [--concurrency 32]
                                        [--services 100] [--routes 100] [--client auto|wrk|python]

Phases, in this order (the import runs first so that it meets an empty database: POST /config
replaces everything, and would otherwise also delete the consumers the other phases created):

  import   POST /config with a generated kong.yml-shaped JSON (services x routes), then the same
           file again (nothing changed). Falls back to the in-process path (declarative loader +
           Store.replace_config) when the server has no /config yet, and says so.
  creates  POST /consumers with unique bodies, `--concurrency` requests in flight.
  reads    GET /consumers/{id} and GET /consumers/{username}, random existing ones.

The load generator is `wrk` (C, one thread, Lua scripts for unique bodies and random keys) when
installed, else an aiohttp+uvloop client in a separate process. Every phase reports the CPU
seconds used by the control-plane process, by PostgreSQL (postmaster and all its backends) and
by the load generator, so figures on a small machine can be read for what they are.

Everything started here (the control plane and, through it, its PostgreSQL) is stopped at the
end, on error and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLK = os.sysconf("SC_CLK_TCK")

GOAL_CREATES = 1000.0  # creates/s
GOAL_READS = 3000.0  # reads/s
GOAL_IMPORT = 3.0  # seconds for 10 000 routes


# ---- processes and CPU accounting -----------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()  # fields from 3 (state) on


def _cpu(pid: int, children: bool = False) -> float:
    """utime+stime (plus reaped children's) of a process, in seconds."""
    st = _stat(pid)
    if st is None:
        return 0.0
    ticks = int(st[11]) + int(st[12])
    if children:
        ticks += int(st[13]) + int(st[14])
    return ticks / CLK


def _children(ppid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and int(st[1]) == ppid:
                out.append(int(entry))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ControlPlane:
    """`tidegate cp start` in a fresh 0755 temp prefix; stop() ends it and its PostgreSQL."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="tg-bench-", dir="/tmp"))
        self.root.chmod(0o755)  # as root, PostgreSQL runs as nobody and must reach its directory
        self.prefix = self.root / "cp"
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root / "cp.log"

    @property
    def pg_dir(self) -> Path:
        return self.prefix / "postgres"

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.pg_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self, timeout: float = 180) -> None:
        exe = Path(sys.executable).parent / "tidegate"
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-c",
                                                "import sys; from shared.cli import main; "
                                                "sys.exit(main())"]
        cmd += ["cp", "start", "--prefix", str(self.prefix),
                "--admin-listen", f"127.0.0.1:{self.port}",
                "--cluster-listen", f"127.0.0.1:{_free_port()}"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("TIDEGATE_PG_DSN", None)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"control plane exited ({self.proc.returncode}):\n{self.tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, _ = request("GET", self.base + "/", timeout=2)
                if status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"control plane did not answer within {timeout}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def cpu(self) -> tuple[float, float]:
        """(control-plane CPU s, PostgreSQL CPU s: postmaster + reaped + live backends)."""
        cp = _cpu(self.proc.pid) if self.proc else 0.0
        pm = self.postmaster_pid()
        pg = 0.0
        if pm is not None:
            pg = _cpu(pm, children=True) + sum(_cpu(c) for c in _children(pm))
        return cp, pg

    def stop(self) -> None:
        pm = self.postmaster_pid()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # The control plane stops the PostgreSQL it started; make sure, whatever happened.
        if pm is not None and _stat(pm) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pm, signal.SIGINT)  # PostgreSQL's "fast" shutdown
            for _ in range(300):
                if _stat(pm) is None or _stat(pm)[0] == "Z":
                    break
                time.sleep(0.1)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pm, signal.SIGQUIT)
        shutil.rmtree(self.root, ignore_errors=True)


def request(method: str, url: str, body: bytes | None = None, timeout: float = 300,
            ctype: str = "application/json") -> tuple[int, bytes]:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        headers = {"Content-Type": ctype} if body is not None else {}
        conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body, headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ---- phases ---------------------------------------------------------------------------------

@dataclass
class Result:
    name: str
    requests: int = 0
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    note: str = ""
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


class Meter:
    """Wall time and CPU of every process involved, around one phase."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def __enter__(self) -> Meter:
        self.t0 = time.perf_counter()
        self.cp0, self.pg0 = self.cp.cpu()
        self.gen0 = _self_and_children_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        cp1, pg1 = self.cp.cpu()
        self.cpu = {"cp": cp1 - self.cp0, "postgres": pg1 - self.pg0,
                    "generator": _self_and_children_cpu() - self.gen0}


def _self_and_children_cpu() -> float:
    """This script plus its reaped children (wrk / the Python client) — the load generator."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


# ---- wrk -----------------------------------------------------------------------------------

_WRK_COMMON = r"""
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function response(status, headers, body)
  done_n = done_n + 1
  if status == expect then ok = ok + 1 else
    bad = bad + 1
    if first_bad == "" then first_bad = status .. " " .. string.sub(body or "", 1, 200) end
  end
  if done_n == limit then
    io.write("BENCH-THREAD-DONE\n"); io.flush()
    wrk.thread:stop()
  end
end
function done(summary, latency, requests)
  local ok_all, bad_all, first = 0, 0, ""
  for _, t in ipairs(threads) do
    ok_all = ok_all + t:get("ok"); bad_all = bad_all + t:get("bad")
    if first == "" then first = t:get("first_bad") end
  end
  first = string.gsub(first, '[%c"\\]', " ")
  io.write(string.format(
    'BENCH-RESULT {"requests":%d,"duration_us":%d,"ok":%d,"bad":%d,' ..
    '"socket_errors":%d,"p50_us":%d,"p99_us":%d,"first_bad":"%s"}\n',
    summary.requests, summary.duration, ok_all, bad_all,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, latency:percentile(50), latency:percentile(99), first))
end
"""

_WRK_CREATE = r"""
function init(args)
  prefix = args[1]; limit = tonumber(args[2]); expect = 201
  sent, done_n, ok, bad, first_bad = 0, 0, 0, 0, ""
end
function request()
  sent = sent + 1
  local body = string.format(
    '{"username":"%s-%d-%d","custom_id":"cid-%s-%d-%d","tags":["bench","t%d"]}',
    prefix, tid, sent, prefix, tid, sent, sent % 10)
  return wrk.format("POST", "/consumers", {["Content-Type"] = "application/json"}, body)
end
"""

_WRK_READ = r"""
function init(args)
  limit = tonumber(args[1]); expect = 200
  done_n, ok, bad, first_bad = 0, 0, 0, ""
  math.randomseed(tonumber(args[2]) + tid)
  paths = {}
  for line in io.lines(args[3]) do paths[#paths + 1] = line end
end
function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
"""


def run_wrk(base: str, script: str, args: list[str], concurrency: int,
            timeout: float = 600) -> dict[str, Any]:
    """One wrk thread; the Lua side stops after `limit` responses and says so, then we end wrk
    (its main thread otherwise sleeps out the whole -d duration) and read its summary."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script + _WRK_COMMON)
        path = f.name
    proc: subprocess.Popen[str] | None = None
    try:
        proc = subprocess.Popen(
            ["wrk", "-t", "1", "-c", str(concurrency), "-d", f"{int(timeout)}s",
             "--timeout", "30s", "-s", path, base, "--", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        lines: list[str] = []
        result: dict[str, Any] | None = None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("BENCH-THREAD-DONE"):
                proc.send_signal(signal.SIGINT)
            elif line.startswith("BENCH-RESULT "):
                result = json.loads(line.split(" ", 1)[1])
        proc.wait()
        if result is None:
            raise RuntimeError("wrk gave no result:\n" + "".join(lines[-20:]))
        return result
    finally:
        if proc is not None and proc.poll() is None:  # interrupted: never leave wrk behind
            proc.kill()
            proc.wait()
        os.unlink(path)


# ---- the Python client (when there is no wrk) ------------------------------------------------

async def _client_main(spec: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    base, n, conc = spec["base"], spec["n"], spec["concurrency"]
    latencies: list[float] = []
    ok = bad = 0
    first_bad = ""
    counter = iter(range(n))
    rnd = random.Random(spec.get("seed", 1))
    paths = spec.get("paths") or []
    connector = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(base, connector=connector) as session:
        async def worker() -> None:
            nonlocal ok, bad, first_bad
            for i in counter:
                t0 = time.perf_counter()
                if spec["kind"] == "create":
                    body = {"username": f"{spec['prefix']}-{i}",
                            "custom_id": f"cid-{spec['prefix']}-{i}",
                            "tags": ["bench", f"t{i % 10}"]}
                    resp = await session.post("/consumers", json=body)
                    expect = 201
                else:
                    resp = await session.get(rnd.choice(paths))
                    expect = 200
                text = await resp.read()
                latencies.append(time.perf_counter() - t0)
                if resp.status == expect:
                    ok += 1
                else:
                    bad += 1
                    first_bad = first_bad or f"{resp.status} {text[:200]!r}"

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        seconds = time.perf_counter() - t0
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1e6

    return {"requests": ok + bad, "duration_us": seconds * 1e6, "ok": ok, "bad": bad,
            "socket_errors": 0, "p50_us": pct(50), "p99_us": pct(99), "first_bad": first_bad}


def run_python_client(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--as-client"], input=json.dumps(spec),
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"python client failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- the phases ---------------------------------------------------------------------------

@contextlib.contextmanager
def profiled(cp: ControlPlane, profile_dir: Path | None, phase: str) -> Any:
    """py-spy the control plane during a phase (its own CPU shows under "bench")."""
    if profile_dir is None or cp.proc is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = profile_dir / f"{phase}.txt"
    proc = subprocess.Popen([spy, "record", "-p", str(cp.proc.pid), "-o", str(out), "-r", "250",
                             "--format", "raw", "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let it attach
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        print(f"      profile: {out} (py-spy raw; collapsed stacks)")


def load(cp: ControlPlane, kind: str, n: int, conc: int, generator: str,
         paths_file: Path | None = None, profile_dir: Path | None = None) -> Result:
    prefix = uuid.uuid4().hex[:8]
    seed = random.randrange(1 << 30)
    with profiled(cp, profile_dir, kind), Meter(cp) as m:
        if generator == "wrk":
            if kind == "create":
                raw = run_wrk(cp.base, _WRK_CREATE, [prefix, str(n)], conc)
            else:
                raw = run_wrk(cp.base, _WRK_READ, [str(n), str(seed), str(paths_file)], conc)
        else:
            spec: dict[str, Any] = {"base": cp.base, "n": n, "concurrency": conc, "kind": kind,
                                    "prefix": prefix, "seed": seed}
            if paths_file is not None:
                spec["paths"] = paths_file.read_text().split()
            raw = run_python_client(spec)
    return Result(
        name=kind, requests=raw["requests"], ok=raw["ok"],
        errors=raw["bad"] + raw["socket_errors"], seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000, p99_ms=raw["p99_us"] / 1000, cpu=m.cpu,
        first_error=raw["first_bad"])


def existing_consumers(cp: ControlPlane) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    url = cp.base + "/consumers?size=1000"
    while url:
        status, body = request("GET", url)
        if status != 200:
            raise RuntimeError(f"GET /consumers: {status} {body[:200]!r}")
        page = json.loads(body)
        out += page["data"]
        url = cp.base + page["next"] if page.get("next") else ""
    return out


def make_config(services: int, routes: int) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "services": [
            {"name": f"s{s}", "url": f"http://upstream-{s}.internal:8080/api",
             "tags": ["bench"],
             "routes": [{"name": f"r{s}-{r}", "paths": [f"/s{s}/r{r}"],
                         "methods": ["GET", "POST"], "strip_path": True}
                        for r in range(routes)]}
            for s in range(services)
        ],
    }


def import_http(cp: ControlPlane, body: bytes, label: str) -> Result | None:
    """POST /config; None when the server has no such endpoint."""
    with Meter(cp) as m:
        status, resp = request("POST", cp.base + "/config", body, timeout=600)
    if status in (404, 405):
        return None
    res = Result(name=label, requests=1, ok=int(200 <= status < 300),
                 errors=int(not 200 <= status < 300), seconds=m.seconds, cpu=m.cpu,
                 note=f"HTTP POST /config -> {status}")
    if res.errors:
        res.first_error = f"{status} {resp[:300]!r}"
    return res


def import_in_process(cp: ControlPlane, config: dict[str, Any], label: str) -> Result:
    """The same import without HTTP: declarative loader (or, lacking one, schema.process per
    entity) and Store.replace_config, in this process, against the control plane's database."""
    sys.path.insert(0, str(ROOT))
    from cp.pg_embedded import EmbeddedPostgres
    from cp.store import Store
    from shared.entities import ENTITIES

    try:
        from shared.declarative import load as declarative_load  # type: ignore[import-not-found]
    except ImportError:
        declarative_load = None

    def stand_in(cfg: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        services, routes = ENTITIES["services"], ENTITIES["routes"]
        out: dict[str, list[dict[str, Any]]] = {"services": [], "routes": []}
        for svc in cfg["services"]:
            data = {k: v for k, v in svc.items() if k != "routes"}
            # stable ids, as a declarative loader derives them, so a re-import is a no-op
            data["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"services:{svc['name']}"))
            s = services.process(data)
            out["services"].append(s)
            for r in svc.get("routes", []):
                rid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"routes:{r['name']}"))
                out["routes"].append(routes.process({**r, "id": rid, "service": {"id": s["id"]}}))
        return out

    async def go() -> dict[str, int]:
        store = await Store.open(EmbeddedPostgres(cp.pg_dir).dsn, min_size=1, max_size=2)
        try:
            entities = declarative_load(config) if declarative_load else stand_in(config)
            return await store.replace_config(entities)
        finally:
            await store.close()

    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    with Meter(cp) as m:
        stats = runner(go())
    how = ("shared.declarative.load" if declarative_load else
           "stand-in loader (schema.process per entity; no shared.declarative yet)")
    return Result(name=label, requests=1, ok=1, seconds=m.seconds, cpu=m.cpu,
                  note=f"IN-PROCESS, no HTTP: {how} + Store.replace_config -> {stats}")


# ---- report ---------------------------------------------------------------------------------

def _cpu_line(r: Result) -> str:
    c = r.cpu
    wall = r.seconds or 1e-9
    line = (f"      cpu: control plane {c['cp']:.2f}s ({100 * c['cp'] / wall:.0f}% of a core), "
            f"postgres {c['postgres']:.2f}s ({100 * c['postgres'] / wall:.0f}%), "
            f"bench+load generator {c['generator']:.2f}s ({100 * c['generator'] / wall:.0f}%)")
    if r.ok > 1:
        line += (f"; per request: control plane {1000 * c['cp'] / r.ok:.3f} ms, "
                 f"postgres {1000 * c['postgres'] / r.ok:.3f} ms")
    return line


def report_load(r: Result, what: str, goal: float, unit: str) -> None:
    verdict = "MET" if r.rate >= goal and not r.errors else "NOT MET"
    print(f"  {what:<44} {r.ok:>6} ok {r.errors:>4} err  {r.seconds:6.2f}s  "
          f"{r.rate:8.0f} {unit}  p50 {r.p50_ms:6.1f} ms  p99 {r.p99_ms:6.1f} ms   "
          f"goal >= {goal:.0f} {unit}: {verdict}")
    print(_cpu_line(r))
    if r.first_error:
        print(f"      first error: {r.first_error}")


def report_import(r: Result, what: str, goal: float | None) -> None:
    verdict = ""
    if goal is not None:
        verdict = f"   goal <= {goal:.2f} s: {'MET' if r.seconds <= goal and r.ok else 'NOT MET'}"
    print(f"  {what:<44} {r.seconds:6.2f}s{verdict}")
    print(f"      path: {r.note}")
    print(_cpu_line(r))
    if r.first_error:
        print(f"      error: {r.first_error}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--creates", type=int, default=5000)
    ap.add_argument("--reads", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--routes", type=int, default=100, help="routes per service")
    ap.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--skip-import", action="store_true")
    ap.add_argument("--profile-dir", type=Path,
                    help="py-spy the control plane during the HTTP phases, stacks written here")
    ap.add_argument("--as-client", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.as_client:
        spec = json.loads(sys.stdin.read())
        try:
            import uvloop
            out = uvloop.run(_client_main(spec))
        except ImportError:
            out = asyncio.run(_client_main(spec))
        print(json.dumps(out))
        return 0

    if args.profile_dir is not None:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
    generator = args.client
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "python"
    gen_label = ("wrk (1 thread, Lua scripts) " + (shutil.which("wrk") or "")
                 if generator == "wrk" else "python aiohttp client in a separate process (uvloop)")

    cp = ControlPlane()
    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        t0 = time.perf_counter()
        cp.start()
        print(f"tidegate Admin API benchmark  ({os.cpu_count()} CPUs, python "
              f"{sys.version.split()[0]})")
        print(f"  control plane: pid {cp.proc.pid if cp.proc else '?'}, {cp.base}, "
              f"embedded PostgreSQL pid {cp.postmaster_pid()} (started in "
              f"{time.perf_counter() - t0:.1f}s)")
        print(f"  load generator: {gen_label}; concurrency {args.concurrency}")
        print()

        if not args.skip_import:
            n_routes = args.services * args.routes
            config = make_config(args.services, args.routes)
            body = json.dumps(config).encode()
            print(f"import: {args.services} services x {args.routes} routes = {n_routes} routes "
                  f"({len(body) / 1e6:.1f} MB JSON), into an empty database")
            goal = GOAL_IMPORT if n_routes == 10000 else GOAL_IMPORT * n_routes / 10000
            first = import_http(cp, body, "first")
            if first is not None:
                report_import(first, f"POST /config ({n_routes} routes, all new)", goal)
                again = import_http(cp, body, "again")
                assert again is not None
                report_import(again, "POST /config (same file again, no change)", None)
            else:
                print("  POST /config answered 404/405: not implemented on this server yet; "
                      "measuring the in-process path instead (NOT the HTTP path)")
                first = import_in_process(cp, config, "first")
                report_import(first, f"in-process import ({n_routes} routes, all new)", goal)
                again = import_in_process(cp, config, "again")
                report_import(again, "in-process import (same config again)", None)
            print()

        print(f"creates: POST /consumers x {args.creates}, unique bodies")
        creates = load(cp, "create", args.creates, args.concurrency, generator,
                       profile_dir=args.profile_dir)
        report_load(creates, f"POST /consumers (c={args.concurrency})", GOAL_CREATES,
                    "creates/s")
        print()

        consumers = existing_consumers(cp)
        paths = []
        for c in consumers:
            paths.append(f"/consumers/{c['id']}")
            if c.get("username"):
                paths.append(f"/consumers/{urllib.parse.quote(c['username'], safe='')}")
        with tempfile.NamedTemporaryFile("w", suffix=".paths", delete=False) as f:
            f.write("\n".join(paths) + "\n")
            paths_file = Path(f.name)
        try:
            print(f"reads: GET /consumers/{{id|username}} x {args.reads}, random among "
                  f"{len(consumers)} consumers")
            reads = load(cp, "read", args.reads, args.concurrency, generator, paths_file,
                         profile_dir=args.profile_dir)
        finally:
            paths_file.unlink()
        report_load(reads, f"GET /consumers/{{id|username}} (c={args.concurrency})", GOAL_READS,
                    "reads/s")
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        print(f"--- control plane log ---\n{cp.tail()}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        cp.stop()


if __name__ == "__main__":
    sys.exit(main())
