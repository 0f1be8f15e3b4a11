"""`tidegate dp start --workers 2`: real data-plane processes whose proxy runs in two worker
processes (SO_REUSEPORT), with a declarative kong.yml and a real upstream on 127.0.0.1.

Every wait polls with a deadline (tests.procs.wait_for); each request below opens a new
connection (urllib does not keep connections), so the kernel spreads them over the workers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from tests.dp_fixtures import threaded_upstream
from tests.procs import TIDEGATE, DataPlane, free_port, http, wait_for


async def echo(request: web.Request) -> web.Response:
    if request.path == "/health":
        return web.Response(text="OK")
    if "slow" in request.path:
        await asyncio.sleep(1)
    if "fail" in request.path:
        return web.json_response({"path": request.path_qs}, status=500)
    return web.json_response({"path": request.path_qs})


@pytest.fixture
def upstream() -> Iterator[int]:
    """A real upstream in its own thread (the test's calls are blocking)."""
    with threaded_upstream(echo) as port:
        yield port


@pytest.fixture
def procs() -> Iterator[list[DataPlane]]:
    started: list[DataPlane] = []
    yield started
    for p in started:
        p.kill()


def kong_yml(path: Path, upstream: int, routes: dict[str, str],
             upstreams: list[dict[str, Any]] | None = None) -> Path:
    """A kong.yml with one service per route name -> path prefix."""
    path.write_text(yaml.safe_dump({
        "_format_version": "3.0",
        "services": [{"name": f"svc-{name}", "url": f"http://127.0.0.1:{upstream}/{name}",
                      "routes": [{"name": name, "paths": [prefix]}]}
                     for name, prefix in routes.items()],
        "upstreams": upstreams or [],
    }))
    return path


def workers(dp: DataPlane) -> list[dict[str, Any]]:
    return dp.status()["proxy"]["workers"]


def start_dp(tmp_path: Path, procs: list[DataPlane], config: Path) -> DataPlane:
    dp = DataPlane(tmp_path, "dp", None, None, "--declarative-config", str(config),
                   "--workers", "2")
    procs.append(dp)
    assert [w["listening"] for w in workers(dp)] == [True, True]
    return dp


def both_workers_serve(dp: DataPlane, path: str, expect: int = 200) -> list[dict[str, Any]]:
    """Send new connections until each worker has answered some more; every answer must have
    the `expect`ed status."""
    before = {w["pid"]: w["requests"] for w in workers(dp)}

    def spread() -> list[dict[str, Any]] | None:
        for _ in range(10):
            status, body = http("GET", dp.proxy_url + path)
            assert status == expect, (status, body)
        rows = workers(dp)
        return rows if all(w["requests"] > before.get(w["pid"], 0) for w in rows) else None
    return wait_for(spread, 15, "requests served by both workers")


def test_connections_are_spread_over_workers(tmp_path: Path, upstream: int,
                                             procs: list[DataPlane]) -> None:
    dp = start_dp(tmp_path, procs, kong_yml(tmp_path / "kong.yml", upstream, {"a": "/a"}))
    assert http("GET", dp.proxy_url + "/a/x") == (200, {"path": "/a/x"})
    rows = both_workers_serve(dp, "/a/y")
    assert len({w["pid"] for w in rows}) == 2 and dp.popen.pid not in {w["pid"] for w in rows}
    status = dp.status()["proxy"]
    assert status["requests"] == sum(w["requests"] for w in rows) >= 2
    assert status["listeners"]["http"] == dp.proxy_port


def test_http_and_https_listeners_on_one_port_are_refused(tmp_path: Path, upstream: int) -> None:
    # With SO_REUSEPORT both would bind, and the kernel would send plain HTTP clients to the
    # TLS listener for a share of their connections.
    port = free_port()
    done = subprocess.run(
        [*TIDEGATE, "dp", "start", "--prefix", str(tmp_path / "dp"), "--declarative-config",
         str(kong_yml(tmp_path / "kong.yml", upstream, {"a": "/a"})), "--workers", "2",
         "--status-listen", f"127.0.0.1:{free_port()}",
         "--proxy-listen", f"127.0.0.1:{port}", "--proxy-ssl-listen", f"0.0.0.0:{port}"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert (f"--proxy-listen 127.0.0.1:{port} and --proxy-ssl-listen 0.0.0.0:{port} share a "
            "port") in done.stdout + done.stderr


def test_config_reload_reaches_every_worker(tmp_path: Path, upstream: int,
                                            procs: list[DataPlane]) -> None:
    config = kong_yml(tmp_path / "kong.yml", upstream, {"a": "/a"})
    dp = start_dp(tmp_path, procs, config)
    old = dp.status()["configuration_version"]
    assert http("GET", dp.proxy_url + "/b/x")[0] == 404

    # SIGHUP with an edited file
    kong_yml(config, upstream, {"a": "/a", "b": "/b"})
    dp.popen.send_signal(signal.SIGHUP)
    new = wait_for(lambda: (v := dp.status()["configuration_version"]) != old and v,
                   what="main process reloads the file")
    wait_for(lambda: all(w["config_version"] == new for w in workers(dp)),
             what="every worker applies the new config")
    both_workers_serve(dp, "/b/x")  # every new connection, on either worker, sees the route

    # POST /config on the status port
    kong_yml(config, upstream, {"c": "/c"})
    status, body = http("POST", dp.status_url + "/config", yaml.safe_load(config.read_text()))
    assert status == 201, body
    # No wait needed: each worker's channel is ordered, so /status's stats request reaches a
    # worker after the config and is answered after the worker acknowledged applying it.
    assert all(w["config_version"] == body["version"] for w in workers(dp))
    for _ in range(20):
        assert http("GET", dp.proxy_url + "/c/x")[0] == 200
        assert http("GET", dp.proxy_url + "/a/x")[0] == 404


def test_killed_worker_is_restarted_and_sigterm_drains(tmp_path: Path, upstream: int,
                                                       procs: list[DataPlane]) -> None:
    dp = start_dp(tmp_path, procs, kong_yml(tmp_path / "kong.yml", upstream, {"a": "/a"}))
    victim = workers(dp)[1]["pid"]
    os.kill(victim, signal.SIGKILL)

    def restarted() -> bool:
        w = workers(dp)[1]
        return w["pid"] != victim and w["alive"] and w["listening"] and w["restarts"] == 1
    wait_for(restarted, 20, "worker 1 restarted")
    assert f"worker 1 (pid {victim}) exited (killed by SIGKILL); restarting" in dp.output()
    both_workers_serve(dp, "/a/x")  # the new worker has the config and takes connections

    # SIGTERM while a request is in flight: the workers drain it before the node exits.
    pids = [w["pid"] for w in workers(dp)]
    served = dp.status()["proxy"]["requests"]
    answer: list[tuple[int, Any]] = []
    slow = threading.Thread(target=lambda: answer.append(http("GET", dp.proxy_url + "/a/slow")))
    slow.start()
    wait_for(lambda: dp.status()["proxy"]["requests"] > served, what="slow request in flight")
    assert dp.stop(signal.SIGTERM) == 0
    slow.join(10)
    assert answer == [(200, {"path": "/a/slow"})]
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid)
    assert "worker 0 stopped" in dp.output() and "worker 1 stopped" in dp.output()


def test_active_checks_run_once_and_reach_every_worker(tmp_path: Path, upstream: int,
                                                       procs: list[DataPlane]) -> None:
    """The main process probes; the dead target's transition is one event in one queue, and
    both workers stop using it (no retries: a worker that still picked it would answer 502),
    including a worker started after the transition."""
    dp = start_dp(tmp_path, procs, kong_yml(tmp_path / "kong.yml", upstream, {"a": "/a"}))
    pool = {"name": "pool", "healthchecks": {"active": {
        "http_path": "/health", "healthy": {"interval": 0.1, "successes": 1},
        "unhealthy": {"interval": 0.1, "tcp_failures": 1}}},
        "targets": [{"target": f"127.0.0.1:{upstream}"},
                    {"target": f"127.0.0.1:{free_port()}"}]}
    # Loaded once the workers run, so the transition happens after they got the config.
    status, body = http("POST", dp.status_url + "/config", {
        "_format_version": "3.0",
        "services": [{"name": "s", "host": "pool", "retries": 0,
                      "routes": [{"name": "r", "paths": ["/p"]}]}],
        "upstreams": [pool]})
    assert status == 201, body

    def health() -> list[str]:
        return sorted(row["health"] for row in dp.get("/upstreams/pool/health")[1]["data"])
    wait_for(lambda: health() == ["HEALTHY", "UNHEALTHY"], what="dead target marked unhealthy")
    assert dp.status()["events"]["total"] == 1
    both_workers_serve(dp, "/p/x")  # would hit a 502 if a worker still used the dead target

    victim = workers(dp)[0]["pid"]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: workers(dp)[0]["pid"] != victim and workers(dp)[0]["listening"],
             20, "worker 0 restarted")
    both_workers_serve(dp, "/p/x")  # the new worker was told the target is down
    assert dp.status()["events"]["total"] == 1


def test_passive_check_in_one_worker_reaches_main_and_the_others(
        tmp_path: Path, upstream: int, procs: list[DataPlane]) -> None:
    """A worker's circuit breaker trips on a 500: the main process queues the one event, shows
    the target down and tells the other worker, so every connection then gets 503."""
    config = tmp_path / "kong.yml"
    config.write_text(yaml.safe_dump({
        "_format_version": "3.0",
        "services": [{"name": "s", "host": "pool", "retries": 0,
                      "routes": [{"name": "r", "paths": ["/p"]}]}],
        "upstreams": [{"name": "pool", "healthchecks": {"passive": {
            "unhealthy": {"http_statuses": [500], "http_failures": 1}}},
            "targets": [{"target": f"127.0.0.1:{upstream}"}]}]}))
    dp = start_dp(tmp_path, procs, config)
    assert http("GET", dp.proxy_url + "/p/fail")[0] == 500
    wait_for(lambda: dp.get("/upstreams/pool/health")[1]["data"][0]["health"] == "UNHEALTHY",
             what="target marked down in the main process")
    events = dp.status()["events"]
    assert events["total"] == 1 and events["queued"] == 1

    def all_refused() -> bool:
        return all(http("GET", dp.proxy_url + "/p/x")[0] == 503 for _ in range(10))
    wait_for(all_refused, what="both workers treat the target as down")
    both_workers_serve(dp, "/p/x", expect=503)
    assert dp.status()["events"]["total"] == 1


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"
