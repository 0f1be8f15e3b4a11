"""Traffic through real data-plane processes: DB-less from kong.yml, and hybrid from the CP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from tests.dp_fixtures import threaded_upstream
from tests.procs import ControlPlane, DataPlane, free_port, http, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def echo(request: web.Request) -> web.Response:
    if request.path == "/health":
        return web.Response(text="OK")
    seen = {"path": request.path_qs, "via": request.headers.get("Via")}
    if "X-Consumer-Username" in request.headers:  # set by key-auth
        seen["consumer"] = request.headers["X-Consumer-Username"]
    return web.json_response(seen)


@pytest.fixture
def upstream() -> Iterator[int]:
    """A real upstream in its own thread (the test's own calls below are blocking)."""
    with threaded_upstream(echo) as port:
        yield port


@pytest.fixture
def procs() -> Iterator[list]:
    started: list = []
    yield started
    for p in started:
        p.kill()


async def test_declarative_data_plane_proxies(tmp_path: Path, upstream: int, procs) -> None:
    kong_yml = tmp_path / "kong.yml"
    kong_yml.write_text(yaml.safe_dump({
        "_format_version": "3.0",
        "services": [{"name": "echo", "host": "echo-pool", "path": "/v1",
                      "routes": [{"name": "r", "paths": ["/echo"]}]}],
        "upstreams": [{"name": "echo-pool", "healthchecks": {"active": {
            "http_path": "/health", "healthy": {"interval": 0.1, "successes": 1},
            "unhealthy": {"interval": 0.1, "tcp_failures": 1}}},
            "targets": [{"target": f"127.0.0.1:{upstream}"},
                        {"target": f"127.0.0.1:{free_port()}"}]}],
    }))
    dp = DataPlane(tmp_path, "dp", None, None, "--declarative-config", str(kong_yml))
    procs.append(dp)
    status, body = http("GET", f"{dp.proxy_url}/echo/hi?x=1")
    assert status == 200 and body == {"path": "/v1/hi?x=1", "via": "1.1 tidegate"}
    assert http("GET", f"{dp.proxy_url}/nothing") == (
        404, {"message": "no Route matched with those values"})

    def health() -> dict[str, str]:
        data = dp.get("/upstreams/echo-pool/health")[1]["data"]
        return {row["target"]: row["health"] for row in data}

    wait_for(lambda: sorted(health().values()) == ["HEALTHY", "UNHEALTHY"],
             what="dead target marked unhealthy by active checks")
    report = dp.get("/upstreams/echo-pool/health")[1]
    assert report["node_id"] == dp.node_id
    assert report["data"][0]["data"]["addresses"][0]["port"] > 0
    assert dp.status()["events"]["total"] >= 1
    for _ in range(4):
        assert http("GET", f"{dp.proxy_url}/echo/again")[0] == 200


async def test_hybrid_data_plane_proxies_what_the_cp_configures(
        tmp_path: Path, dsn: str, upstream: int, procs, certs) -> None:
    cp = ControlPlane(tmp_path, dsn, certs)
    procs.append(cp)
    dp = DataPlane(tmp_path, "dp", cp.cluster, certs, wait_ready=False)
    procs.append(dp)
    assert cp.api("POST", "/services", {"name": "s",
                                        "url": f"http://127.0.0.1:{upstream}/base"})[0] == 201
    assert cp.api("POST", "/services/s/routes", {"name": "r", "paths": ["/hy"]})[0] == 201
    wait_for(lambda: http("GET", f"{dp.proxy_url}/hy/x")[0] == 200, what="route on the DP")
    assert http("GET", f"{dp.proxy_url}/hy/x")[1]["path"] == "/base/x"
    cp.api("PATCH", "/routes/r", {"paths": ["/moved"]})
    wait_for(lambda: http("GET", f"{dp.proxy_url}/moved")[0] == 200, what="updated route")
    assert http("GET", f"{dp.proxy_url}/hy/x")[0] == 404


async def test_hybrid_key_auth_with_credentials_from_the_cp(
        tmp_path: Path, dsn: str, upstream: int, procs, certs) -> None:
    """A key created over the CP Admin API opens a route on a real DP; deleting its consumer
    closes it again; no key appears in either plane's log."""
    cp = ControlPlane(tmp_path, dsn, certs)
    procs.append(cp)
    dp = DataPlane(tmp_path, "dp", cp.cluster, certs, wait_ready=False)
    procs.append(dp)
    assert cp.api("POST", "/services", {"name": "s", "url": f"http://127.0.0.1:{upstream}"})[0] \
        == 201
    assert cp.api("POST", "/services/s/routes", {"name": "r", "paths": ["/ka"]})[0] == 201
    assert cp.api("POST", "/routes/r/plugins", {"name": "key-auth",
                                                "config": {"hide_credentials": True}})[0] == 201
    assert cp.api("POST", "/consumers", {"username": "ada"})[0] == 201
    wait_for(lambda: http("GET", f"{dp.proxy_url}/ka")[0] == 401, what="key-auth on the DP")

    status, given = cp.api("POST", "/consumers/ada/key-auth", {"key": "hy-secret-1"})
    assert status == 201, given
    status, generated = cp.api("POST", "/consumers/ada/key-auth", {})
    assert status == 201 and generated["key"], generated
    for k in ("hy-secret-1", generated["key"]):
        url = f"{dp.proxy_url}/ka/x?apikey={k}"
        wait_for(lambda url=url: http("GET", url)[0] == 200, what="credential on the DP")
        assert http("GET", url)[1] == {"path": "/x", "via": "1.1 tidegate", "consumer": "ada"}
    assert http("GET", f"{dp.proxy_url}/ka?apikey=wrong") == (
        401, {"message": "Invalid authentication credentials"})

    assert cp.api("DELETE", "/consumers/ada")[0] == 204  # cascades to its credentials
    wait_for(lambda: http("GET", f"{dp.proxy_url}/ka?apikey=hy-secret-1")[0] == 401,
             what="credential removed from the DP")
    assert dp.status()["entities"]["keyauth_credentials"] == 0
    for proc in (cp, dp):
        log = proc.output()
        assert "hy-secret-1" not in log and generated["key"] not in log
