"""rate-limiting-advanced through a real proxy to a real upstream, with the limiter's clock in the
test's hands; the redis strategy against a real redis-server, shared by two real data-plane
processes; WebSocket handshakes and messages; config validation through the real Admin API.

Time: the in-process proxy's limiter reads `dp.ratelimit.clock`, which the `clock` fixture
replaces, so windows are crossed by moving the clock (no sleeping). The data-plane processes read
the wall clock and use windows far longer than the test.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import ClientSession, TCPConnector
from multidict import CIMultiDict
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from dp.ratelimit import clock as rl_clock
from dp.ratelimit import registry
from tests.dp_fixtures import Proxy, Upstream
from tests.polling import eventually
from tests.procs import DataPlane
from tests.redis_server import RedisServer

pytestmark = pytest.mark.asyncio(loop_scope="session")

SOURCE, EVENT = "rate-limiting-advanced", "rate-limit-exceeded"


class FakeClock:
    """Seconds since the epoch, moved by the test: `at(x)` is x seconds after `base`, which
    starts an hour (so also a minute, and every 10 s window)."""

    def __init__(self) -> None:
        self.base = math.floor(time.time() / 3600) * 3600.0
        self.now = self.base

    def __call__(self) -> float:
        return self.now

    def at(self, offset: float) -> None:
        self.now = self.base + offset


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    previous = rl_clock.set_clock(fake)
    yield fake
    rl_clock.set_clock(previous)


@pytest.fixture(autouse=True)
async def fresh_counters() -> AsyncIterator[None]:
    yield
    await registry.close_all()  # Redis connections and probes of this test end with it


@pytest.fixture
async def up() -> AsyncIterator[Upstream]:
    server = await Upstream("a").start()
    yield server
    await server.stop()


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    p = await Proxy().start()
    yield p
    await p.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def rla(**config: Any) -> dict[str, Any]:
    return {"name": "rate-limiting-advanced", "config": config}


def one_service(up: Upstream, *routes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"services": [{"name": "s", "url": f"http://127.0.0.1:{up.port}",
                          "routes": list(routes)}], **extra}


def route(path: str, *plugins: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    return {"name": name or path.strip("/").replace("/", "-"), "paths": [path],
            "plugins": list(plugins)}


async def get(proxy: Proxy | str, path: str, headers: dict[str, str] | None = None,
              ip: str = "127.0.0.1") -> tuple[int, CIMultiDict[str], Any]:
    """One request from client address `ip` (127.0.0.x: all loopback)."""
    base = proxy.url if isinstance(proxy, Proxy) else proxy
    async with ClientSession(connector=TCPConnector(local_addr=(ip, 0))) as s, \
            s.get(base + path, headers=headers) as r:
        body = await r.json() if "json" in r.content_type else await r.text()
        return r.status, CIMultiDict(r.headers), body


def statuses_of(results: list[tuple[int, Any, Any]]) -> list[int]:
    return [r[0] for r in results]


def exceeded_events(proxy: Proxy) -> list[dict[str, Any]]:
    return [e.data for e in proxy.server.events.peek()
            if (e.source, e.event) == (SOURCE, EVENT)]


# -- windows ---------------------------------------------------------------------------------------

async def test_fixed_window_counts_then_resets(clock: FakeClock, up: Upstream,
                                               proxy: Proxy) -> None:
    proxy.load(one_service(up, route("/fixed", rla(limit=[3], window_size=[10],
                                                   window_type="fixed", identifier="ip"))))
    clock.at(1)
    for left in (2, 1, 0):
        status, h, _ = await get(proxy, "/fixed")
        assert status == 200
        assert (h["X-RateLimit-Limit-10"], h["X-RateLimit-Remaining-10"]) == ("3", str(left))
        assert (h["RateLimit-Limit"], h["RateLimit-Remaining"], h["RateLimit-Reset"]) == (
            "3", str(left), "9")
        assert "Retry-After" not in h
    clock.at(4)
    status, h, body = await get(proxy, "/fixed")
    assert (status, body) == (429, {"message": "API rate limit exceeded"})
    assert h["Retry-After"] == h["RateLimit-Reset"] == "6"
    assert h["X-RateLimit-Remaining-10"] == "0" and h["RateLimit-Remaining"] == "0"
    assert up.hits == 3  # the denied request never reached the upstream
    clock.at(10)  # the next window starts from zero
    status, h, _ = await get(proxy, "/fixed")
    assert status == 200 and h["X-RateLimit-Remaining-10"] == "2"


async def test_sliding_window_weighs_the_previous_window(clock: FakeClock, up: Upstream,
                                                         proxy: Proxy) -> None:
    proxy.load(one_service(up, route("/sliding", rla(limit=[4], window_size=[10],
                                                     identifier="ip"))))
    clock.at(1)
    assert statuses_of([await get(proxy, "/sliding") for _ in range(5)]) == [200] * 4 + [429]
    # Halfway through the next window the previous 5 (the denied one counts) weigh 2.5.
    clock.at(15)
    status, h, _ = await get(proxy, "/sliding")  # 2.5 + 1
    assert status == 200 and h["X-RateLimit-Remaining-10"] == "0"
    status, h, _ = await get(proxy, "/sliding")  # 2.5 + 2 > 4
    assert status == 429
    # the rest of the window (5 s) plus the time 0.5 over the limit takes to decay: 1.25 s
    assert h["RateLimit-Reset"] == h["Retry-After"] == "7"
    clock.at(19)  # 5 * 0.1 + 2 + 1 = 3.5
    assert (await get(proxy, "/sliding"))[0] == 200
    clock.at(25)  # the previous window now holds 3: 3 * 0.5 + 1 = 2.5
    status, h, _ = await get(proxy, "/sliding")
    assert status == 200 and h["X-RateLimit-Remaining-10"] == "1"


async def test_several_windows_at_once(clock: FakeClock, up: Upstream, proxy: Proxy) -> None:
    # Given unsorted, as a user may: 3 per minute and 2 per second.
    proxy.load(one_service(up, route("/multi", rla(limit=[3, 2], window_size=[60, 1],
                                                   window_type="fixed", identifier="ip"))))
    clock.at(0)
    _, h, _ = await get(proxy, "/multi")
    assert (h["X-RateLimit-Limit-second"], h["X-RateLimit-Remaining-second"]) == ("2", "1")
    assert (h["X-RateLimit-Limit-minute"], h["X-RateLimit-Remaining-minute"]) == ("3", "2")
    assert (h["RateLimit-Limit"], h["RateLimit-Remaining"], h["RateLimit-Reset"]) == (
        "2", "1", "1")
    await get(proxy, "/multi")
    status, h, _ = await get(proxy, "/multi")  # the second's limit
    assert status == 429 and h["Retry-After"] == "1"
    assert h["X-RateLimit-Remaining-minute"] == "1"  # a request the second denied: not counted
    clock.at(1)
    status, h, _ = await get(proxy, "/multi")
    assert status == 200 and h["X-RateLimit-Remaining-second"] == "1"
    assert (h["RateLimit-Limit"], h["RateLimit-Remaining"], h["RateLimit-Reset"]) == (
        "3", "0", "59")  # now the minute is the tightest
    status, h, _ = await get(proxy, "/multi")  # the minute's limit
    assert status == 429 and h["Retry-After"] == "59"
    assert [e["window"] for e in exceeded_events(proxy)] == ["second", "minute"]


# -- identifiers -----------------------------------------------------------------------------------

async def test_identifier_ip_header_and_path(clock: FakeClock, up: Upstream,
                                             proxy: Proxy) -> None:
    once = {"limit": [1], "window_size": [60], "window_type": "fixed"}
    proxy.load(one_service(
        up, route("/ip", rla(identifier="ip", **once)),
        route("/tenant", rla(identifier="header", header_name="X-Tenant", **once)),
        route("/p", rla(identifier="path", path="/p/hot", **once))))
    assert [(await get(proxy, "/ip", ip=ip))[0] for ip in ("127.0.0.1", "127.0.0.1",
                                                           "127.0.0.2")] == [200, 429, 200]
    tenant = [(await get(proxy, "/tenant", {"X-Tenant": t}))[0] for t in ("a", "a", "b")]
    assert tenant == [200, 429, 200]
    no_header = [(await get(proxy, "/tenant"))[0] for _ in range(2)]  # falls back to the IP
    assert no_header == [200, 429]
    # every client asking for /p/hot shares one counter; other paths are counted per IP
    assert (await get(proxy, "/p/hot", ip="127.0.0.1"))[0] == 200
    assert (await get(proxy, "/p/hot", ip="127.0.0.2"))[0] == 429
    cold = [(await get(proxy, "/p/cold", ip="127.0.0.2"))[0] for _ in range(2)]
    assert cold == [200, 429]


async def test_identifier_consumer_and_credential(clock: FakeClock, up: Upstream,
                                                  proxy: Proxy) -> None:
    once = {"limit": [1], "window_size": [60], "window_type": "fixed"}
    auth = {"name": "key-auth", "config": {}}
    proxy.load(one_service(
        up, route("/by-consumer", auth, rla(**once)),  # identifier: consumer, the default
        route("/by-credential", auth, rla(identifier="credential", **once)),
        route("/anonymous", rla(**once)),
        consumers=[{"username": "alice", "keyauth_credentials": [{"key": "k1"}, {"key": "k2"}]},
                   {"username": "bob", "keyauth_credentials": [{"key": "kb"}]}]))
    by_consumer = [(await get(proxy, "/by-consumer", {"apikey": k}))[0]
                   for k in ("k1", "k2", "kb")]
    assert by_consumer == [200, 429, 200]  # alice's two keys share her limit
    by_credential = [(await get(proxy, "/by-credential", {"apikey": k}))[0]
                     for k in ("k1", "k2", "k1")]
    assert by_credential == [200, 200, 429]
    # no consumer on the route: the IP
    anonymous = [(await get(proxy, "/anonymous", ip=ip))[0]
                 for ip in ("127.0.0.1", "127.0.0.1", "127.0.0.2")]
    assert anonymous == [200, 429, 200]


async def test_identifier_service(clock: FakeClock, up: Upstream, proxy: Proxy) -> None:
    url = f"http://127.0.0.1:{up.port}"
    proxy.load({
        "services": [{"name": "a", "url": url, "routes": [route("/a1"), route("/a2")]},
                     {"name": "b", "url": url, "routes": [route("/b")]}],
        "plugins": [rla(identifier="service", limit=[2], window_size=[60], window_type="fixed")],
    })
    results = [(await get(proxy, p, ip=ip))[0] for p, ip in (
        ("/a1", "127.0.0.1"), ("/a2", "127.0.0.2"), ("/a1", "127.0.0.3"), ("/b", "127.0.0.1"))]
    assert results == [200, 200, 429, 200]


# -- what clients see ------------------------------------------------------------------------------

async def test_hidden_headers_custom_error_and_retry_jitter(clock: FakeClock, up: Upstream,
                                                            proxy: Proxy) -> None:
    once = {"limit": [1], "window_size": [60], "window_type": "fixed", "identifier": "ip"}
    proxy.load(one_service(
        up, route("/hidden", rla(hide_client_headers=True, error_code=503,
                                 error_message="Slow down", **once)),
        route("/jitter", rla(retry_after_jitter_max=5, **once))))
    clock.at(10)
    for expected, body in ((200, None), (503, {"message": "Slow down"})):
        status, h, got = await get(proxy, "/hidden")
        assert status == expected and (body is None or got == body)
        assert not [k for k in h if "ratelimit" in k.lower() or k.lower() == "retry-after"]
    assert (await get(proxy, "/jitter"))[0] == 200
    retries = set()
    for _ in range(25):
        status, h, _ = await get(proxy, "/jitter")
        assert status == 429 and h["RateLimit-Reset"] == "50"
        retries.add(int(h["Retry-After"]))
    assert retries <= set(range(50, 56)) and len(retries) > 1  # 25 draws: never all alike


# -- events ----------------------------------------------------------------------------------------

async def test_exceeded_event_fields_and_once_per_key_and_window(clock: FakeClock, up: Upstream,
                                                                 proxy: Proxy) -> None:
    proxy.load(one_service(
        up, route("/limited", {"name": "key-auth", "config": {}},
                  rla(limit=[2], window_size=[10], window_type="fixed")),
        consumers=[{"username": "alice", "custom_id": "a-1",
                    "keyauth_credentials": [{"key": "k-alice"}]}]))
    alice = {"apikey": "k-alice"}
    clock.at(1)
    flood = [(await get(proxy, "/limited", alice))[0] for _ in range(20)]
    assert flood == [200, 200] + [429] * 18
    events = exceeded_events(proxy)
    assert len(events) == 1
    event = events[0]
    assert set(event) == {"consumer", "ip", "service", "rate", "limit", "window"}
    assert event["consumer"]["username"] == "alice" and event["consumer"]["custom_id"] == "a-1"
    assert event["service"]["name"] == "s" and event["service"]["port"] == up.port
    assert (event["ip"], event["rate"], event["limit"], event["window"]) == (
        "127.0.0.1", 3, 2, "10")
    # another of the unique keys (ip) → its own event; the same keys again → none
    for ip in ("127.0.0.2", "127.0.0.2", "127.0.0.1"):
        await get(proxy, "/limited", alice, ip=ip)
    assert [e["ip"] for e in exceeded_events(proxy)] == ["127.0.0.1", "127.0.0.2"]
    clock.at(11)  # a new window: a new event once exceeded again
    for _ in range(5):
        await get(proxy, "/limited", alice)
    assert [e["ip"] for e in exceeded_events(proxy)] == ["127.0.0.1", "127.0.0.2", "127.0.0.1"]


# -- config validation through the Admin API -------------------------------------------------------

async def test_admin_api_validates_and_completes_the_config(admin: ClientSession) -> None:
    async def post(config: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with admin.post("/plugins", json=rla(**config)) as r:
            return r.status, await r.json()

    base = {"limit": [10], "window_size": [60]}
    refused = {
        "You must provide the same number of windows and limits":
            {"limit": [10, 20], "window_size": [60]},
        "strategy 'cluster' is not supported with Hybrid deployments":
            {**base, "strategy": "cluster", "sync_rate": 0},
        "sync_rate is required if not using a local strategy": {**base, "strategy": "redis"},
        "sync_rate cannot be configured when using a local strategy": {**base, "sync_rate": 1},
        "No header name provided": {**base, "identifier": "header"},
        "No path provided": {**base, "identifier": "path"},
        "Non-negative retry_after_jitter_max value is expected":
            {**base, "retry_after_jitter_max": -1},
        "websocket: You must provide the same number of windows and limits":
            {**base, "websocket": {"limit_messages": True, "limit": [5]}},
    }
    for message, config in refused.items():
        status, body = await post(config)
        assert status == 400 and body["name"] == "schema violation", body
        assert message in body["fields"]["config"] and message in body["message"]
    status, body = await post({**base, "websocket": {"close_code": 1006}})
    assert status == 400 and "close_code" in body["fields"]["config"]["websocket"]
    status, body = await post({"limit": [10, 0], "window_size": [60, 1]})
    assert status == 400 and body["fields"]["config"]["limit"] == [
        None, "value must be greater than 0"]

    status, created = await post({"limit": [100, 5], "window_size": [3600, 1]})
    assert status == 201, created
    config = created["config"]
    assert re.fullmatch(r"[0-9a-f]{32}", config["namespace"])
    assert (config["limit"], config["window_size"]) == ([5, 100], [1, 3600])  # by limit
    assert (config["strategy"], config["sync_rate"], config["window_type"]) == (
        "local", -1, "sliding")
    assert (config["identifier"], config["error_code"], config["error_message"]) == (
        "consumer", 429, "API rate limit exceeded")
    assert config["redis"]["port"] == 6379 and config["websocket"]["close_code"] == 1008
    async with admin.patch(f"/plugins/{created['id']}",
                           json={"config": {"hide_client_headers": True}}) as r:
        patched = await r.json()
    assert r.status == 200 and patched["config"]["namespace"] == config["namespace"]
    async with admin.delete(f"/plugins/{created['id']}") as r:
        assert r.status == 204
    # form-encoded, as with curl -d: a scalar for an array is a one-item array
    async with admin.post("/plugins", data={
            "name": "rate-limiting-advanced", "config.limit": "5", "config.window_size": "30",
            "config.strategy": "redis", "config.sync_rate": "0",
            "config.redis.host": "redis.internal"}) as r:
        form = await r.json()
    assert r.status == 201, form
    assert (form["config"]["limit"], form["config"]["window_size"], form["config"]["sync_rate"],
            form["config"]["redis"]["host"]) == ([5], [30], 0, "redis.internal")


# -- the redis strategy ----------------------------------------------------------------------------

def write_kong_yml(path: Path, up: Upstream, redis_port: int) -> Path:
    redis = {"host": "127.0.0.1", "port": redis_port}
    year = {"limit": [10], "window_size": [31536000], "window_type": "fixed",
            "identifier": "ip", "strategy": "redis", "redis": redis}
    doc = one_service(
        up, route("/sync", rla(namespace="rla-sync", sync_rate=0, **year)),
        route("/periodic", rla(namespace="rla-periodic", sync_rate=0.2, **year)),
        route("/burst", rla(namespace="rla-burst", sync_rate=0, **year)))
    path.write_text(yaml.safe_dump({"_format_version": "3.0", **doc}))
    return path


async def test_redis_strategy_one_limit_across_two_data_planes(
        tmp_path: Path, up: Upstream, redis_server: RedisServer) -> None:
    kong_yml = write_kong_yml(tmp_path / "kong.yml", up, redis_server.port)
    dps = [DataPlane(tmp_path, name, None, None, "--declarative-config", str(kong_yml))
           for name in ("dp-a", "dp-b")]
    try:
        a, b = (dp.proxy_url for dp in dps)
        # sync_rate 0: every request counts in Redis at once — exactly 10 between the two
        results = [await get(url, "/sync") for url in [a, b] * 7]
        assert statuses_of(results) == [200] * 10 + [429] * 4
        assert {r[1]["X-RateLimit-Remaining-year"] for r in results[:10]} == {
            str(n) for n in range(10)}
        assert list(redis_server.values("tidegate:rla:rla-sync:*").values()) == [14]
        # 15 at once on each node (batched round trips on each side): still exactly 10
        burst = await asyncio.gather(*(get(url, "/burst") for url in [a, b] * 15))
        assert sorted(statuses_of(burst)) == [200] * 10 + [429] * 20
        told = sorted(r[1]["X-RateLimit-Remaining-year"] for r in burst if r[0] == 200)
        assert told == [str(n) for n in range(10)]  # each its own count, none twice
        # sync_rate 0.2: counted locally, pushed every 0.2 s; a node starts from Redis' count
        assert statuses_of([await get(a, "/periodic") for _ in range(6)]) == [200] * 6
        await eventually(lambda: list(redis_server.values("tidegate:rla:rla-periodic:*")
                                      .values()) == [6], what="dp-a's sync")
        assert statuses_of([await get(b, "/periodic") for _ in range(5)]) == [200] * 4 + [429]
        await eventually(_denied(a, "/periodic"), what="dp-a seeing dp-b's requests")
        for dp in dps:  # each node put its rate-limit-exceeded event on its queue
            status = dp.get("/status")[1]
            assert status["events"]["total"] >= 1, status
    finally:
        for dp in dps:
            dp.stop()


def _denied(url: str, path: str) -> Any:
    async def check() -> bool:
        return (await get(url, path))[0] == 429
    return check


async def test_redis_going_away_limits_locally_logs_once_and_comes_back(
        clock: FakeClock, up: Upstream, proxy: Proxy, redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tidegate.plugin.rate-limiting-advanced")
    proxy.load(one_service(up, route("/r", rla(
        limit=[5], window_size=[60], window_type="fixed", identifier="ip", strategy="redis",
        sync_rate=0, namespace="rla-outage",
        redis={"host": "127.0.0.1", "port": redis_server.port, "timeout": 1000}))))
    clock.at(1)
    assert statuses_of([await get(proxy, "/r") for _ in range(2)]) == [200, 200]
    assert list(redis_server.values().values()) == [2]

    redis_server.kill()
    during = statuses_of([await get(proxy, "/r") for _ in range(6)])
    assert during == [200, 200, 200, 429, 429, 429]  # this node's 2 + 3 more, then local limit
    lost = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(lost) == 1 and str(redis_server.port) in lost[0].getMessage()

    redis_server.start()  # back, empty, on the same port
    await eventually(lambda: any("reachable again" in r.getMessage() for r in caplog.records),
                     what="the reconnect")
    # what was counted meanwhile (3 allowed, 3 denied) went to Redis for the open window
    await eventually(lambda: list(redis_server.values().values()) == [6], what="the push")
    assert (await get(proxy, "/r"))[0] == 429  # Redis' count again: 7 > 5
    assert list(redis_server.values().values()) == [7]
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1


# -- WebSocket -------------------------------------------------------------------------------------

@pytest.fixture
async def ws_upstream() -> AsyncIterator[dict[str, Any]]:
    """A real WebSocket echo server; records the close code each connection received."""
    seen: dict[str, Any] = {"closes": []}

    async def echo(ws: ServerConnection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            rcvd = ws.protocol.close_rcvd
            seen["closes"].append(rcvd.code if rcvd else None)

    async with serve(echo, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        seen["port"] = server.sockets[0].getsockname()[1]
        yield seen


def ws_config(port: int, **config: Any) -> dict[str, Any]:
    return {"services": [{"name": "ws", "url": f"ws://127.0.0.1:{port}", "routes": [
        {"name": "ws", "paths": ["/"], "protocols": ["ws"], "strip_path": False,
         "plugins": [{**rla(**config), "protocols": ["ws", "wss"]}]}]}]}


async def test_websocket_handshake_is_limited(clock: FakeClock, proxy: Proxy,
                                              ws_upstream: dict[str, Any]) -> None:
    proxy.load(ws_config(ws_upstream["port"], limit=[1], window_size=[60],
                         window_type="fixed", identifier="ip"))
    url = f"ws://127.0.0.1:{proxy.port}/chat"
    async with connect(url, compression=None) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, compression=None):
            pass
    response = refused.value.response
    assert response.status_code == 429
    assert response.headers["X-RateLimit-Remaining-minute"] == "0"
    assert response.headers["Retry-After"] == "60"
    assert b"API rate limit exceeded" in response.body
    assert [e["window"] for e in exceeded_events(proxy)] == ["minute"]


async def test_websocket_messages_over_the_limit_close_the_connection(
        clock: FakeClock, proxy: Proxy, ws_upstream: dict[str, Any]) -> None:
    proxy.load(ws_config(ws_upstream["port"], limit=[10], window_size=[60],
                         window_type="fixed", identifier="ip",
                         websocket={"limit_messages": True, "limit": [3],
                                    "window_size": [60]}))
    async with connect(f"ws://127.0.0.1:{proxy.port}/chat", compression=None) as ws:
        for i in range(3):
            await ws.send(f"m{i}")
            assert await ws.recv() == f"m{i}"
        await ws.ping()  # control frames are not messages
        await ws.send("one too many")
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008,
                                                                  "API rate limit exceeded")
    await eventually(lambda: ws_upstream["closes"] == [1001], what="the upstream's close")
    events = exceeded_events(proxy)
    assert [(e["limit"], e["window"], e["rate"]) for e in events] == [(3, "minute", 4)]
