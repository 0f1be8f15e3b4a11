"""`/metrics` on both planes, scraped and parsed with prometheus_client's own parser after real
traffic: requests through a real data plane to a real upstream, a target going unhealthy, a
route change and a rejected config streamed by a real control plane, event-hook deliveries to
a real receiver, and a data plane with two proxy worker processes (counts summed, and kept when
a worker dies)."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from aiohttp import ClientSession, web
from prometheus_client.parser import text_string_to_metric_families
from psycopg.types.json import Jsonb

from cp.store import token_digest
from dp import metrics
from dp.scrape import traffic_families
from shared.metrics import render
from tests.conftest import serve_admin
from tests.dp_fixtures import threaded_upstream
from tests.hook_receiver import Receiver
from tests.polling import eventually
from tests.procs import ControlPlane, DataPlane, free_port, http, wait_for

FAST_HOOKS = {"TIDEGATE_EVENT_HOOKS_RETRY_BASE": "0.1"}
pytest_plugins = ["tests.hook_fixtures"]  # hooked, receiver


class Scrape:
    """One parsed /metrics answer."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(self, sample: str, **labels: str) -> float | None:
        for family in self.families.values():
            for s in family.samples:
                if s.name == sample and s.labels == labels:
                    return float(s.value)
        return None

    def samples(self, sample: str) -> list[Any]:
        return [s for f in self.families.values() for s in f.samples if s.name == sample]


def scrape(url: str, token: str | None = None) -> Scrape:
    req = urllib.request.Request(url + "/metrics",
                                 headers={"Kong-Admin-Token": token} if token else {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return Scrape(resp.read().decode())


async def echo(request: web.Request) -> web.Response:
    return web.Response(text="OK" if request.path == "/health" else request.path)


@pytest.fixture
def upstream() -> Iterator[int]:
    with threaded_upstream(echo) as port:
        yield port


@pytest.fixture
def procs() -> Iterator[list]:
    started: list = []
    yield started
    for p in started:
        p.kill()


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    ok, gone = Receiver(), Receiver()
    yield ok, gone
    ok.close()
    gone.close()


def _configure(cp: ControlPlane, upstream: int, dead: int) -> None:
    """A service on an upstream of two targets, one of them not listening (actively probed)."""
    assert cp.api("POST", "/upstreams", {"name": "pool", "healthchecks": {"active": {
        "http_path": "/health", "healthy": {"interval": 0.1, "successes": 1},
        "unhealthy": {"interval": 0.1, "tcp_failures": 1}}}})[0] == 201
    for target in (f"127.0.0.1:{upstream}", f"127.0.0.1:{dead}"):
        assert cp.api("POST", "/upstreams/pool/targets", {"target": target})[0] == 201
    assert cp.api("POST", "/services", {"name": "svc", "host": "pool"})[0] == 201
    assert cp.api("POST", "/services/svc/routes", {"name": "r", "paths": ["/m"]})[0] == 201


async def _reject_a_route(dsn: str, route: dict[str, Any]) -> None:
    """A write this data plane cannot validate (a path without its leading slash), as another
    CP node with a different schema might make it: the data plane NACKs it."""
    bad = {**route, "paths": ["no-slash"]}
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    async with conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('tidegate_change_log'))")
        await conn.execute("UPDATE routes SET entity = %s WHERE id = %s",
                           (Jsonb(bad), route["id"]))
        await conn.execute(
            "INSERT INTO change_log (id, op, entity_type, entity_id, old_entity, new_entity) "
            "VALUES (nextval('change_log_id_seq'), 'update', 'routes', %s, %s, %s)",
            (route["id"], Jsonb(route), Jsonb(bad)))
        await conn.execute("NOTIFY tidegate_changes")


async def test_hybrid_metrics_on_both_planes(tmp_path, dsn, certs, procs, upstream, receivers,
                                             monkeypatch):
    for k, v in FAST_HOOKS.items():
        monkeypatch.setenv(k, v)
    ok, gone = receivers
    ok.script(500)  # the first hook's ping is retried once, then succeeds
    gone.script(410)  # the second hook's ping fails for good
    cp = ControlPlane(tmp_path, dsn, certs)
    procs.append(cp)
    dp = DataPlane(tmp_path, "dp", cp.cluster, certs)
    procs.append(dp)
    for event, receiver in (("consumers", ok), ("plugins", gone)):
        assert cp.api("POST", "/event-hooks", {"source": "crud", "event": event,
                                               "handler": "webhook",
                                               "config": {"url": receiver.url}})[0] == 201
    dead = free_port()
    _configure(cp, upstream, dead)
    wait_for(lambda: "r" in dp.routes(), what="route on the data plane")

    # A target going unhealthy: the gauge follows the balancer, as /upstreams/{u}/health does.
    def health() -> dict[str, float | None]:
        s = scrape(dp.status_url)
        return {t: s.value("tidegate_dp_upstream_target_healthy", upstream="pool",
                           target=f"127.0.0.1:{t}") for t in (upstream, dead)}

    wait_for(lambda: health() == {upstream: 1.0, dead: 0.0}, what="dead target at 0")
    shown = {row["target"]: row["health"] for row in dp.get("/upstreams/pool/health")[1]["data"]}
    assert shown == {f"127.0.0.1:{upstream}": "HEALTHY", f"127.0.0.1:{dead}": "UNHEALTHY"}

    for i in range(5):
        assert http("GET", f"{dp.proxy_url}/m/{i}") == (200, f"/{i}")
    for _ in range(2):
        assert http("GET", f"{dp.proxy_url}/nowhere")[0] == 404

    s = scrape(dp.status_url)
    assert s.value("tidegate_dp_http_requests_total", route="r", service="svc", code="200") == 5
    assert s.value("tidegate_dp_http_requests_total", route="", service="", code="404") == 2
    assert s.value("tidegate_dp_upstream_latency_seconds_count", service="svc") == 5
    assert s.value("tidegate_dp_upstream_latency_seconds_bucket", service="svc", le="+Inf") == 5
    assert 0 < s.value("tidegate_dp_upstream_latency_seconds_sum", service="svc") < 5
    assert s.value("tidegate_dp_events_total") >= 1  # the target's health transition
    assert s.value("tidegate_dp_event_queue_depth") <= s.value("tidegate_dp_events_total")
    assert s.value("tidegate_dp_events_dropped_total") == 0
    assert s.value("tidegate_dp_control_plane_connected") == 1
    assert s.value("tidegate_dp_config_last_sync_timestamp_seconds") > 0
    status = dp.status()
    [info] = s.samples("tidegate_dp_config_info")
    assert info.labels == {"version": status["configuration_version"],
                           "hash": status["config_hash"], "source": "cluster-delta"}
    assert s.value("tidegate_dp_config_version") == int(info.labels["version"].split(":")[1])

    # A route change reaches the data plane: the control plane sees it in sync, with latency.
    assert cp.api("PATCH", "/routes/r", {"paths": ["/m", "/m2"]})[0] == 200
    wait_for(lambda: dp.routes()["r"]["paths"] == ["/m", "/m2"], what="route change")
    node = dp.node_id

    def in_sync() -> Scrape | None:
        c = scrape(cp.admin)
        return c if c.value("tidegate_cp_data_plane_in_sync", node_id=node) == 1 else None

    c = wait_for(in_sync, what="data plane in sync on the CP's /metrics")
    assert c.value("tidegate_cp_data_planes_connected") == 1
    assert c.value("tidegate_cp_data_plane_config_version", node_id=node) == c.value(
        "tidegate_cp_config_version")
    [dp_info] = c.samples("tidegate_cp_data_plane_config_info")
    assert dp_info.labels["node_id"] == node
    assert dp_info.labels["config_hash"] == dp.status()["config_hash"]
    synced = c.value("tidegate_cp_config_sync_latency_seconds_count")
    assert synced >= 1  # this change at least (each earlier one the data plane ACKed too)
    assert 0 < c.value("tidegate_cp_config_sync_latency_seconds_sum") < 30 * synced
    assert c.value("tidegate_cp_config_nacks_total", node_id=node) is None  # none yet

    # A config the data plane rejects: NACKs on the CP match rejections on the DP.
    _, route = cp.api("GET", "/routes/r")
    await _reject_a_route(dsn, route)
    wait_for(lambda: cp.data_planes()[node]["sync_status"] == "config_rejected",
             what="config rejected")

    def nacks_match() -> float | None:
        nacks = scrape(cp.admin).value("tidegate_cp_config_nacks_total", node_id=node)
        rejected = scrape(dp.status_url).value("tidegate_dp_config_rejected_total")
        return nacks if nacks and nacks == rejected else None

    wait_for(nacks_match, what="NACKs counted on the CP as rejections on the DP")
    assert scrape(cp.admin).value("tidegate_cp_data_plane_in_sync", node_id=node) == 0

    # Event-hook deliveries, counted in the hooks' worker process, shown by the CP.
    for name in ("ada", "grace"):
        assert cp.api("POST", "/consumers", {"username": name})[0] == 201
    wait_for(lambda: len(ok.events()) == 2 and gone.got(), what="deliveries")

    def deliveries() -> dict[str, float | None] | None:
        c = scrape(cp.admin)
        got = {o: c.value("tidegate_cp_event_hook_deliveries_total", outcome=o)
               for o in ("success", "retry", "failed", "cancelled")}
        return got if got["success"] == 3 and got["failed"] == 1 else None

    got = wait_for(deliveries, what="delivery counts")
    assert got == {"success": 3, "retry": 1, "failed": 1, "cancelled": 0}
    assert len(ok.got()) == 4  # ping (500), ping again, two consumers


def _kong_yml(path: Path, upstream: int) -> Path:
    path.write_text(yaml.safe_dump({
        "_format_version": "3.0",
        "services": [{"name": "svc", "url": f"http://127.0.0.1:{upstream}",
                      "routes": [{"name": "r", "paths": ["/w"]}]}]}))
    return path


def test_workers_counts_are_summed_and_survive_a_worker(tmp_path, procs, upstream):
    dp = DataPlane(tmp_path, "dp", None, None, "--workers", "2",
                   "--declarative-config", str(_kong_yml(tmp_path / "kong.yml", upstream)))
    procs.append(dp)
    for i in range(40):  # one connection each: the kernel spreads them over both workers
        assert http("GET", f"{dp.proxy_url}/w/{i}")[0] == 200
    workers = dp.status()["proxy"]["workers"]
    assert len(workers) == 2 and all(w["requests"] > 0 for w in workers), workers

    def requests() -> float | None:
        return scrape(dp.status_url).value("tidegate_dp_http_requests_total", route="r",
                                           service="svc", code="200")

    assert requests() == 40
    assert scrape(dp.status_url).value("tidegate_dp_upstream_latency_seconds_count",
                                       service="svc") == 40

    os.kill(workers[0]["pid"], signal.SIGKILL)
    wait_for(lambda: [w["restarts"] for w in dp.status()["proxy"]["workers"]] == [1, 0]
             and all(w["listening"] for w in dp.status()["proxy"]["workers"]),
             what="worker restarted")
    assert requests() == 40  # what the dead worker had counted is kept
    for i in range(10):
        assert http("GET", f"{dp.proxy_url}/w/{i}")[0] == 200
    assert requests() == 50


async def test_cp_metrics_need_a_token_with_rbac(store):
    runner, url = await serve_admin(store, {"enforce_rbac": True,
                                            "admin_password_digest": token_digest("s3cret")})
    try:
        async with ClientSession() as client:
            async with client.get(url + "/metrics") as resp:
                assert resp.status == 401
            async with client.get(url + "/metrics",
                                  headers={"Kong-Admin-Token": "s3cret"}) as resp:
                assert resp.status == 200
                s = Scrape(await resp.text())
        assert "tidegate_cp_event_hook_deliveries" in s.families
        assert "tidegate_cp_data_planes_connected" not in s.families  # no cluster listener
    finally:
        await runner.cleanup()


async def test_inline_hook_engine_counts_its_deliveries(hooked, receiver):
    """With `event_hooks_worker = inline` the engine counts into the context /metrics reads."""
    receiver.script(500)
    status, _ = await hooked.post("/event-hooks", {"source": "crud", "event": "consumers",
                                                   "handler": "webhook",
                                                   "config": {"url": receiver.url}})
    assert status == 201

    async def counted() -> dict[str, float | None] | None:
        async with hooked.admin.get("/metrics") as resp:
            s = Scrape(await resp.text())
        got = {o: s.value("tidegate_cp_event_hook_deliveries_total", outcome=o)
               for o in ("success", "retry")}
        return got if got["success"] else None

    assert await eventually(counted, what="the ping counted") == {"success": 1, "retry": 1}
    assert len(receiver.pings()) == 2


def test_traffic_counters_add_up_across_processes():
    """What a worker answers (a JSON snapshot) adds up in the main process: two workers that
    counted the same render as twice the counts."""
    route, service = {"id": "r-id", "name": "chat"}, {"id": "s-id", "name": None}
    before = metrics.COUNTS.snapshot()
    metrics.count_ws_frames(route, service, metrics.CLIENT, 2)
    metrics.count_ws_frames(route, service, metrics.UPSTREAM)
    metrics.count_ws_close(route, service, 1000)
    metrics.count_rate_limited(route, service)
    metrics.observe_upstream({"id": "s-id"}, 0.003)
    worker = json.loads(json.dumps(metrics.COUNTS.snapshot()))
    total = metrics.Counts()
    total.add(worker)
    total.add(worker)
    base = metrics.Counts()
    base.add(before)
    base.add(before)
    s = Scrape(render(traffic_families(total)).decode())
    b = Scrape(render(traffic_families(base)).decode())

    def grew(name: str, **labels: str) -> float:
        return (s.value(name, **labels) or 0) - (b.value(name, **labels) or 0)

    rs = {"route": "chat", "service": "s-id"}  # names, else ids
    assert grew("tidegate_dp_ws_frames_total", **rs, direction="client") == 4
    assert grew("tidegate_dp_ws_frames_total", **rs, direction="upstream") == 2
    assert grew("tidegate_dp_ws_closes_total", **rs, code="1000") == 2
    assert grew("tidegate_dp_rate_limited_total", **rs) == 2
    assert grew("tidegate_dp_upstream_latency_seconds_bucket", service="s-id", le="0.0025") == 0
    assert grew("tidegate_dp_upstream_latency_seconds_bucket", service="s-id", le="0.005") == 2
