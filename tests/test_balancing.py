"""Load balancing and health checks through the in-process proxy, with real upstream servers."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession

from tests.dp_fixtures import Proxy, Upstream
from tests.polling import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def ups() -> AsyncIterator[list[Upstream]]:
    servers = [await Upstream(n).start() for n in ("a", "b", "c")]
    yield servers
    for s in servers:
        await s.stop()


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    p = await Proxy().start()
    yield p
    await p.stop()


def pool_config(ups: list[Upstream], weights: list[int], **upstream: object) -> dict:
    return {
        "services": [{"name": "s", "host": "pool", "retries": 2,
                      "routes": [{"name": "r", "paths": ["/"]}]}],
        "upstreams": [{"name": "pool", **upstream, "targets": [
            {"target": u.target, "weight": w} for u, w in zip(ups, weights, strict=True)]}],
    }


def target_of(balancer, server: Upstream):
    return next(t for t in balancer.targets if t.port == server.port)


async def spread(proxy: Proxy, n: int, headers: dict | None = None,
                 path: str = "/x") -> Counter:
    seen: Counter = Counter()
    async with ClientSession() as s:
        for _ in range(n):
            async with s.get(proxy.url + path, headers=headers) as r:
                seen[(await r.json()).get("upstream", r.status)] += 1
    return seen


async def test_weighted_round_robin(ups: list[Upstream], proxy: Proxy) -> None:
    proxy.load(pool_config(ups, [300, 200, 100]))
    assert await spread(proxy, 60) == {"a": 30, "b": 20, "c": 10}


async def test_consistent_hashing_on_header_with_fallback(ups: list[Upstream],
                                                          proxy: Proxy) -> None:
    proxy.load(pool_config(ups, [100, 100, 100], algorithm="consistent-hashing",
                           hash_on="header", hash_on_header="x-user", hash_fallback="path"))
    sticky = {}
    for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
        seen = await spread(proxy, 5, {"x-user": user})
        assert len(seen) == 1, seen  # one user, one target
        sticky[user] = next(iter(seen))
    assert len(set(sticky.values())) >= 2
    by_path = await spread(proxy, 4, path="/same/path")
    assert len(by_path) == 1  # no header: the path decides, consistently
    users = {f"user{i}": None for i in range(300)}
    counts: Counter = Counter()
    async with ClientSession() as s:
        for user in users:
            async with s.get(proxy.url + "/", headers={"x-user": user}) as r:
                counts[(await r.json())["upstream"]] += 1
    assert all(60 < c < 140 for c in counts.values()), counts


async def test_consistent_hashing_on_cookie_sets_it(ups: list[Upstream], proxy: Proxy) -> None:
    """A client without the cookie gets one (as in Kong), and sticks to a target with it."""
    proxy.load(pool_config(ups, [100, 100, 100], algorithm="consistent-hashing",
                           hash_on="cookie", hash_on_cookie="lb", hash_on_cookie_path="/app"))
    targets = set()
    async with ClientSession() as s:
        for _ in range(12):
            async with s.get(proxy.url + "/", headers={"Cookie": ""}) as r:
                cookies = r.headers.getall("Set-Cookie")
                first = (await r.json())["upstream"]
            (cookie,) = [c for c in cookies if c.startswith("lb=")]
            assert cookie.endswith("; Path=/app")
            value = cookie.split(";")[0]
            for _ in range(4):  # sent back, the cookie keeps the client on its target
                async with s.get(proxy.url + "/", headers={"Cookie": value}) as r:
                    assert (await r.json())["upstream"] == first
                    assert "lb=" not in "".join(r.headers.getall("Set-Cookie", []))
            targets.add(first)
    assert len(targets) >= 2, "new clients spread over the targets"


async def test_least_connections_avoids_busy_target(ups: list[Upstream], proxy: Proxy) -> None:
    proxy.load(pool_config(ups[:2], [100, 100], algorithm="least-connections"))
    async with ClientSession() as s:
        slow = asyncio.ensure_future(s.get(proxy.url + "/slow?s=1"))
        await eventually(lambda: sum(u.hits for u in ups[:2]) == 1, what="slow request")
        busy = next(u.name for u in ups[:2] if u.hits == 1)
        seen = await spread(proxy, 6)
        assert busy not in seen and sum(seen.values()) == 6
        (await slow).close()


async def test_active_checks_mark_down_and_up_with_events(ups: list[Upstream],
                                                          proxy: Proxy) -> None:
    active = {"http_path": "/health", "timeout": 1,
              "healthy": {"interval": 0.05, "successes": 2},
              "unhealthy": {"interval": 0.05, "http_failures": 2, "tcp_failures": 1}}
    proxy.load(pool_config(ups[:2], [100, 100], healthchecks={"active": active}))
    balancer = proxy.server.balancers.get("pool")
    b = ups[1]
    tb = target_of(balancer, b)
    await eventually(lambda: b.health_probes >= 2, what="probes")
    b.health_status = 500
    await eventually(lambda: not tb.healthy, what="b marked unhealthy")
    assert balancer.state(tb) == "UNHEALTHY"
    assert await spread(proxy, 6) == {"a": 6}
    b.health_status = 200
    await eventually(lambda: tb.healthy, what="b healthy again")
    assert set(await spread(proxy, 6)) == {"a", "b"}
    events = [e.data for e in proxy.server.events.peek() if e.source == "balancer"]
    mine = [e for e in events if e["port"] == b.port]
    assert [e["health"] for e in mine] == ["unhealthy", "healthy"]
    assert mine[0] == {"upstream_id": balancer.id, "ip": "127.0.0.1", "port": b.port,
                       "hostname": "127.0.0.1", "health": "unhealthy"}
    report = balancer.health_report("node")["data"]
    assert {r["target"]: r["health"] for r in report} == {
        ups[0].target: "HEALTHY", b.target: "HEALTHY"}


async def test_tcp_probe_marks_stopped_target_down(ups: list[Upstream], proxy: Proxy) -> None:
    active = {"type": "tcp", "healthy": {"interval": 0.05, "successes": 1},
              "unhealthy": {"interval": 0.05, "tcp_failures": 1}}
    proxy.load(pool_config(ups[:2], [100, 100], healthchecks={"active": active}))
    balancer = proxy.server.balancers.get("pool")
    await ups[1].stop()
    await eventually(lambda: not target_of(balancer, ups[1]).healthy, what="stopped target down")
    assert await spread(proxy, 4) == {"a": 4}


async def test_passive_checks_and_no_healthy_target(ups: list[Upstream], proxy: Proxy) -> None:
    passive = {"unhealthy": {"http_statuses": [500], "http_failures": 2}}
    proxy.load(pool_config(ups[:2], [100, 100], healthchecks={"passive": passive}))
    balancer = proxy.server.balancers.get("pool")
    ups[1].status = 500
    seen = await spread(proxy, 8)
    assert seen == {"a": 6, "b": 2}  # two 500s from b, then b is out of rotation
    assert balancer.state(target_of(balancer, ups[1])) == "UNHEALTHY"
    ups[0].status = 500
    await spread(proxy, 2)
    async with ClientSession() as s, s.get(proxy.url + "/x") as r:
        assert r.status == 503
        assert await r.json() == {"message": "failure to get a peer from the ring-balancer"}


async def test_threshold_and_health_survives_reload(ups: list[Upstream], proxy: Proxy) -> None:
    passive = {"unhealthy": {"http_statuses": [500], "http_failures": 1}}
    config = pool_config(ups, [100, 100, 100], healthchecks={"passive": passive,
                                                             "threshold": 50})
    proxy.load(config)
    ups[0].status = ups[1].status = 500
    await spread(proxy, 6)
    balancer = proxy.server.balancers.get("pool")
    assert balancer.healthy_percent() < 50
    assert (await spread(proxy, 1)) == {503: 1}
    proxy.load({**config, "services": [{**config["services"][0], "retries": 1}]})
    assert proxy.server.balancers.get("pool") is balancer  # upstream unchanged: kept as is
    config["upstreams"][0]["targets"][2]["weight"] = 150
    proxy.load(config)
    assert proxy.server.balancers.get("pool") is not balancer
    assert (await spread(proxy, 1)) == {503: 1}  # health carried over to the new balancer
