"""Across hosts: the control plane centrally, data planes at the edge, on a real routed network.

Linux network namespaces stand in for hosts (tests/netns.py): "central" runs the control plane
with its embedded PostgreSQL, "edge1" and "edge2" each run a hybrid data plane, "upstream" runs
the demo HTTP + WebSocket echo (and a spare one whose death drives a health transition), and
"dbless" runs a DB-less data plane from its kong.yml. The test process plays the operator on the
root namespace, reaching every host through the router. What is checked is what a user sees:
config written at the Admin API reaches both edges; WebSockets echo through each edge; with the
link between the control plane and edge1 cut, edge1 keeps serving, misses a change edge2 gets,
and buffers the health event it raises; restored, it catches up and the event arrives at the
control plane; a DB-less edge serves from its file with no control plane at all.

Needs root and `ip netns`; skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from shared.certs import gen_cluster_cert
from tests import netns
from tests.procs import ControlPlane, DataPlane, http, wait_for

CENTRAL, EDGE1, EDGE2, UPSTREAM, DBLESS = "central", "edge1", "edge2", "upstream", "dbless"
ECHO_PORT, SPARE_PORT = 9000, 9001  # on the upstream host; the spare is stopped mid-test
# Active checks on /health, fast enough that a stopped target is noticed in about a second.
ACTIVE_CHECKS = {"type": "http", "http_path": "/health", "timeout": 1,
                 "healthy": {"interval": 0.5, "successes": 1},
                 "unhealthy": {"interval": 0.5, "tcp_failures": 1, "http_failures": 1,
                               "timeouts": 1}}


class Echo:
    """shared/demo_echo.py on a host: HTTP and WebSocket echo with `GET /health`."""

    def __init__(self, lab: netns.Lab, host: str, port: int, log: Path) -> None:
        self.url = f"http://{lab.addrs[host]}:{port}"
        self.log = log
        self._file = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [*lab.wrap(host), sys.executable, "-m", "shared.demo_echo",
             "--listen", f"{lab.addrs[host]}:{port}"],
            stdout=self._file, stderr=subprocess.STDOUT)
        wait_for(lambda: self.popen.poll() is None
                 and http("GET", self.url + "/health")[0] == 200, 30, f"echo on {host}:{port}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._file.close()


@dataclass
class Site:
    """The network and what runs on it."""

    lab: netns.Lab
    tmp: Path
    certs: dict[str, Path]
    cp: ControlPlane
    edges: dict[str, DataPlane]
    echo: Echo
    spare: Echo
    up: str = field(init=False)

    def __post_init__(self) -> None:
        self.up = self.lab.addrs[UPSTREAM]

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """procs.wait_for, with the tail of every process's log when it times out."""
        try:
            return wait_for(check, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.tails()}") from None

    def tails(self, lines: int = 12) -> str:
        out = []
        for log in sorted(self.tmp.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(out)

    def admin(self, method: str, path: str, body: Any = None, expect: int = 201) -> Any:
        status, answer = self.cp.api(method, path, body)
        assert status == expect, (method, path, status, answer)
        return answer

    def events_at_cp(self, edge: str) -> list[dict[str, Any]]:
        """What the control plane received from one data plane (the DP→CP event uplink)."""
        node = self.edges[edge].node_id
        status, body = self.cp.api("GET", f"/clustering/data-planes/{node}/events")
        assert status == 200, (status, body)
        return body["data"]


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    netns.remove_stale()
    for old in Path("/tmp").glob(f"{netns.PREFIX}-*"):
        if netns.is_stale(old.name):
            shutil.rmtree(old, ignore_errors=True)
    # World-traversable: as root, the CP's embedded PostgreSQL runs as nobody under this dir.
    tmp = Path(tempfile.mkdtemp(prefix=f"{netns.PREFIX}-{os.getpid()}-", dir="/tmp"))
    tmp.chmod(0o755)
    failed_before = request.session.testsfailed
    with contextlib.ExitStack() as stack:
        lab = netns.Lab()
        stack.callback(lab.close)  # last: kills whatever still runs in the namespaces
        lab.start()
        for host in (CENTRAL, EDGE1, EDGE2, UPSTREAM, DBLESS):
            lab.add_host(host)
        certs = {"cert": tmp / "cluster.crt", "key": tmp / "cluster.key"}
        gen_cluster_cert(certs["cert"], certs["key"])
        echo = Echo(lab, UPSTREAM, ECHO_PORT, tmp / "echo.log")
        stack.callback(echo.stop)
        spare = Echo(lab, UPSTREAM, SPARE_PORT, tmp / "spare.log")
        stack.callback(spare.stop)
        cp = ControlPlane(tmp, None, certs, host=lab.addrs[CENTRAL], wrap=lab.wrap(CENTRAL))
        stack.callback(cp.stop)
        edges = {}
        for name in (EDGE1, EDGE2):
            edges[name] = DataPlane(tmp, name, cp.cluster, certs, host=lab.addrs[name],
                                    wrap=lab.wrap(name))
            stack.callback(edges[name].stop)
        yield Site(lab, tmp, certs, cp, edges, echo, spare)
    if request.session.testsfailed == failed_before:
        shutil.rmtree(tmp, ignore_errors=True)  # kept after a failure (logs), until the next run


@pytest.fixture(scope="module")
def configured(site: Site) -> Site:
    """The config written at the control plane: an HTTP route and a `ws` route to the upstream
    host's echo, and an upstream with active health checks over the echo and the spare."""
    up = site.up
    site.admin("POST", "/services", {"name": "echo", "url": f"http://{up}:{ECHO_PORT}"})
    site.admin("POST", "/services/echo/routes", {"name": "echo", "paths": ["/echo"]})
    site.admin("POST", "/services", {"name": "echo-ws", "url": f"ws://{up}:{ECHO_PORT}/ws"})
    site.admin("POST", "/services/echo-ws/routes",
               {"name": "ws", "protocols": ["ws"], "paths": ["/ws"]})
    site.admin("POST", "/upstreams", {"name": "pool", "healthchecks": {"active": ACTIVE_CHECKS}})
    for port in (ECHO_PORT, SPARE_PORT):
        site.admin("POST", "/upstreams/pool/targets", {"target": f"{up}:{port}"})
    site.admin("POST", "/services", {"name": "pooled", "host": "pool"})
    site.admin("POST", "/services/pooled/routes", {"name": "pooled", "paths": ["/pool"]})
    return site


def proxied(edge: DataPlane, path: str) -> tuple[int, Any]:
    return http("GET", edge.proxy_url + path, timeout=5)


def echoes(edge: DataPlane, prefix: str) -> bool:
    """A request through `edge` under `prefix` reached the upstream host's echo."""
    status, body = proxied(edge, f"{prefix}/hello?from=operator")
    return status == 200 and body["path"] == "/hello" and body["query"] == "from=operator"


def ws_round_trip(edge: DataPlane, messages: list[str | bytes]) -> list[str | bytes]:
    """Open a WebSocket through the edge's `ws` route (101 or an exception), send each message
    and read what comes back."""
    url = edge.proxy_url.replace("http://", "ws://") + "/ws"
    with connect(url, open_timeout=10, close_timeout=5) as ws:
        assert ws.response is not None and ws.response.status_code == 101
        received = []
        for message in messages:
            ws.send(message)
            received.append(ws.recv(timeout=10))
    return received


def health_is(edge: DataPlane, port: int, health: str) -> bool:
    """The edge's view of the pool target on `port` (its /upstreams/pool/health)."""
    status, body = edge.get("/upstreams/pool/health")
    return status == 200 and any(t["target"].endswith(f":{port}") and t["health"] == health
                                 for t in body["data"])


def current_at_cp(site: Site, edge: str) -> dict[str, Any] | None:
    """The CP's row for an edge once that edge acknowledged the CP's newest version."""
    row = site.cp.data_planes().get(site.edges[edge].node_id)
    if row and row["connected"] and row["config_version"] == row["cp_config_version"]:
        return row
    return None


def health_events(events: list[dict[str, Any]], port: int) -> list[dict[str, Any]]:
    return [e for e in events if e["source"] == "balancer" and e["event"] == "health"
            and e["data"].get("port") == port and e["data"].get("health") == "unhealthy"]


def test_config_written_at_cp_reaches_both_edges(configured: Site) -> None:
    site = configured
    for name, edge in site.edges.items():
        site.wait(partial(echoes, edge, "/echo"), 30, f"/echo served by {name}")
        site.wait(partial(echoes, edge, "/pool"), 30, f"/pool served by {name}")
        row = site.wait(partial(current_at_cp, site, name), 30,
                        f"{name} acknowledged the CP's version")
        # Registered from its own host's address: the link really crosses the router.
        assert row["ip"] == site.lab.addrs[name]
        assert row["config_hash"] == edge.status()["config_hash"]


def test_websocket_through_each_edge(configured: Site) -> None:
    site = configured
    for name, edge in site.edges.items():
        site.wait(partial(echoes, edge, "/echo"), 30, f"config on {name}")
        sent: list[str | bytes] = [f"hello from {name}", b"\x00\x01binary\xff", "x" * 5000]
        assert ws_round_trip(edge, sent) == sent


def test_cut_link_edge_serves_buffers_and_catches_up(configured: Site) -> None:
    site = configured
    edge1, edge2 = site.edges[EDGE1], site.edges[EDGE2]
    for name, edge in site.edges.items():
        site.wait(partial(current_at_cp, site, name), 30, f"{name} current")
        site.wait(partial(health_is, edge, SPARE_PORT, "HEALTHY"), 30,
                  f"spare target healthy on {name}")
    total_before = edge1.status()["events"]["total"]

    site.lab.cut(CENTRAL, EDGE1)
    try:
        # Edge 1 keeps serving its last config, HTTP and WebSocket.
        assert echoes(edge1, "/echo")
        assert ws_round_trip(edge1, ["still here"]) == ["still here"]
        # A change at the CP reaches edge 2 but not edge 1.
        site.admin("POST", "/services/echo/routes", {"name": "late", "paths": ["/late"]})
        site.wait(lambda: echoes(edge2, "/late"), 30, "the new route on edge2")
        assert "late" not in edge1.routes()
        assert proxied(edge1, "/late/hello")[0] == 404
        # Edge 1 raises a health event (the spare target dies) and holds it.
        site.spare.stop()
        for name, edge in site.edges.items():
            site.wait(partial(health_is, edge, SPARE_PORT, "UNHEALTHY"), 30,
                      f"spare target marked unhealthy on {name}")
        events = edge1.status()["events"]
        assert events["total"] > total_before and events["queued"] >= 1, events
        # A while after edge 2 took the change, edge 1 still has not: the cut is real.
        assert "late" not in edge1.routes()
        assert current_at_cp(site, EDGE1) is None
        # The uplink works where the link does: edge 2's event is at the CP, edge 1's is not.
        site.wait(lambda: health_events(site.events_at_cp(EDGE2), SPARE_PORT), 30,
                  "edge2's health event at the CP")
        assert health_events(site.events_at_cp(EDGE1), SPARE_PORT) == []
    finally:
        restored_at = time.time()
        site.lab.restore(CENTRAL, EDGE1)

    # Edge 1 catches up: the change it missed, then its acknowledgement at the CP.
    site.wait(lambda: echoes(edge1, "/late"), 60, "edge1 caught up with the new route")
    site.wait(lambda: current_at_cp(site, EDGE1), 30, "edge1 acknowledged the newest version")
    # Its buffered event arrives: raised during the cut, received after the link came back.
    found = site.wait(lambda: health_events(site.events_at_cp(EDGE1), SPARE_PORT), 60,
                      "edge1's buffered health event at the CP")
    assert len(found) == 1, found
    event = found[0]
    pool = site.admin("GET", "/upstreams/pool", expect=200)
    assert event["data"] == {"upstream_id": pool["id"], "ip": site.up,
                             "port": SPARE_PORT, "hostname": site.up, "health": "unhealthy"}
    assert event["at"] < restored_at <= event["received_at"], event
    # Sent by edge 1's running process (its boot id), numbered within it.
    assert event["boot_id"] == edge1.status()["events"]["boot_id"] and event["seq"] >= 1, event
    site.wait(lambda: edge1.status()["events"]["queued"] == 0, 30,
              "edge1's buffer emptied by the CP's acknowledgement")


def test_dbless_edge_serves_from_its_file_without_cp(site: Site) -> None:
    kong_yml = site.tmp / "kong.yml"
    kong_yml.write_text(json.dumps({
        "_format_version": "3.0",
        "services": [{"name": "local-echo", "url": f"http://{site.up}:{ECHO_PORT}",
                      "routes": [{"name": "local", "paths": ["/local"]}]}],
    }))
    lab = site.lab
    dp = DataPlane(site.tmp, DBLESS, None, None, "--declarative-config", str(kong_yml),
                   host=lab.addrs[DBLESS], wrap=lab.wrap(DBLESS))
    try:
        status = dp.status()
        assert status["mode"] == "standalone" and "control_plane" not in status
        assert status["config_source"] is not None
        assert echoes(dp, "/local")
        assert proxied(dp, "/echo/hello")[0] == 404  # the CP's routes are not here
    finally:
        dp.stop()
