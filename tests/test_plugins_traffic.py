"""Plugins on real traffic: key-auth, the external-service response decorator, precedence;
and the order of a phase whose handlers wait."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession, web

from dp.plugins.base import Plugin
from dp.plugins.pdk import Exchange
from dp.plugins.runtime import PluginIndex
from dp.proxy.handler import run_phase
from tests.dp_fixtures import Proxy, Upstream
from tests.procs import free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")


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
async def external() -> AsyncIterator[str]:
    """A real external JSON service: /anything answers JSON, /broken answers non-JSON, /price
    and /lone a text latin-1 cannot hold, and one no encoding can."""
    async def anything(request: web.Request) -> web.Response:
        return web.json_response({"url": f"http://ext{request.path_qs}", "n": 7})

    async def broken(request: web.Request) -> web.Response:
        return web.Response(text="<html>not json</html>")

    async def price(request: web.Request) -> web.Response:
        return web.json_response({"url": "12 €"})

    async def lone(request: web.Request) -> web.Response:  # valid JSON, a lone surrogate in it
        return web.Response(text='{"url": "\\ud800"}', content_type="application/json")

    app = web.Application()
    app.router.add_get("/anything{tail:.*}", anything)
    app.router.add_get("/broken", broken)
    app.router.add_get("/price", price)
    app.router.add_get("/lone", lone)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    await runner.cleanup()


async def call(proxy: Proxy, path: str, headers: dict | None = None) -> tuple[int, dict, object]:
    async with ClientSession() as s, s.get(proxy.url + path, headers=headers) as r:
        body = await r.json() if "json" in r.content_type else await r.text()
        return r.status, dict(r.headers), body


ALICE_KEY_ID = "6a1f0c1e-4a47-4c55-9b7e-0c6a2f3b9d10"


def decorator(url: str, **conf: object) -> dict:
    return {"name": "response-decorator", "config": {"url": url, **conf}}


async def test_response_decorator_success_and_failures(up: Upstream, proxy: Proxy,
                                                       external: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}/anything"
    proxy.load({"services": [{"name": "s", "url": f"http://127.0.0.1:{up.port}", "routes": [
        {"name": "ok", "paths": ["/ok"],
         "plugins": [decorator(f"{external}/anything/x", response_header_name="X-Ext-Url")]},
        {"name": "num", "paths": ["/num"],
         "plugins": [decorator(f"{external}/anything", json_field="n")]},
        {"name": "down", "paths": ["/down"], "plugins": [decorator(dead)]},
        {"name": "notjson", "paths": ["/notjson"], "plugins": [decorator(f"{external}/broken")]},
        {"name": "lenient", "paths": ["/lenient"],
         "plugins": [decorator(dead, on_error="continue")]},
        {"name": "lenient-json", "paths": ["/lenient-json"],
         "plugins": [decorator(f"{external}/broken", on_error="continue")]},
    ]}]})
    status, headers, body = await call(proxy, "/ok")
    assert status == 200 and headers["X-Ext-Url"] == "http://ext/anything/x"
    assert body["upstream"] == "a"
    assert (await call(proxy, "/num"))[1]["X-Decorated"] == "7"

    status, _, body = await call(proxy, "/down")
    assert status == 500
    assert body["message"].startswith("Error when trying to access 3rd party service: ")
    status, _, body = await call(proxy, "/notjson")
    assert status == 500
    assert body["message"].startswith("Error when decoding 3rd party service response: ")

    for path in ("/lenient", "/lenient-json"):
        status, headers, body = await call(proxy, path)
        assert status == 200 and "X-Decorated" not in headers and body["upstream"] == "a"


async def test_header_text_beyond_latin_1(up: Upstream, proxy: Proxy, external: str) -> None:
    """Header text latin-1 cannot hold goes out as UTF-8, as Kong sends a Lua string: a
    consumer's name in Cyrillic to the upstream (key-auth), a service's answer to the client
    (response-decorator). Text no encoding holds (a lone surrogate, from a JSON escape) fails
    the plugin that set it: 500 with Kong's message, and the proxy goes on serving."""
    proxy.load({
        "consumers": [{"username": "Ада", "keyauth_credentials": [{"key": "k-ada"}]}],
        "services": [{"name": "s", "url": f"http://127.0.0.1:{up.port}", "routes": [
            {"name": "auth", "paths": ["/auth"], "plugins": [{"name": "key-auth"}]},
            {"name": "euro", "paths": ["/euro"], "plugins": [decorator(f"{external}/price")]},
            {"name": "lone", "paths": ["/lone"], "plugins": [decorator(f"{external}/lone")]},
        ]}]})
    status, _, body = await call(proxy, "/auth", {"apikey": "k-ada"})
    seen = {k.lower(): v for k, v in body["headers"].items()}
    assert status == 200 and seen["x-consumer-username"] == "Ада"
    status, headers, _ = await call(proxy, "/euro")
    assert status == 200 and headers["X-Decorated"] == "12 €"
    status, _, body = await call(proxy, "/lone")
    assert (status, body) == (500, {"message": "An unexpected error occurred"})
    assert (await call(proxy, "/euro"))[0] == 200


async def test_key_auth(up: Upstream, proxy: Proxy) -> None:
    proxy.load({
        "consumers": [{"username": "alice", "custom_id": "a-1",
                       "keyauth_credentials": [{"id": ALICE_KEY_ID, "key": "k-alice"}]},
                      {"username": "guest"}],
        "services": [{"name": "s", "url": f"http://127.0.0.1:{up.port}", "routes": [
            {"name": "private", "paths": ["/private"], "plugins": [
                {"name": "key-auth", "config": {"key_names": ["apikey", "x-api-key"],
                                                "hide_credentials": True}}]},
            {"name": "open", "paths": ["/open"], "plugins": [
                {"name": "key-auth", "config": {"anonymous": "guest"}}]},
        ]}],
    })
    status, headers, body = await call(proxy, "/private")
    assert (status, body) == (401, {"message": "No API key found in request"})
    assert "WWW-Authenticate" in headers
    status, _, body = await call(proxy, "/private", {"apikey": "wrong"})
    assert (status, body) == (401, {"message": "Invalid authentication credentials"})
    status, _, body = await call(proxy, "/private", {"x-api-key": "k-alice"})
    seen = {k.lower(): v for k, v in body["headers"].items()}
    assert status == 200 and seen["x-consumer-username"] == "alice"
    assert seen["x-consumer-custom-id"] == "a-1" and "x-api-key" not in seen
    assert seen["x-credential-identifier"] == ALICE_KEY_ID
    status, _, body = await call(proxy, "/private?apikey=k-alice&keep=1")
    assert status == 200 and body["path"] == "/?keep=1"
    status, _, body = await call(proxy, "/open")
    seen = {k.lower(): v for k, v in body["headers"].items()}
    assert status == 200 and seen["x-consumer-username"] == "guest"
    assert seen["x-anonymous-consumer"] == "true"
    # A client cannot pose as an authenticated credential on the anonymous path.
    status, _, body = await call(proxy, "/open", {"X-Credential-Identifier": ALICE_KEY_ID})
    seen = {k.lower(): v for k, v in body["headers"].items()}
    assert status == 200 and "x-credential-identifier" not in seen


async def test_plugin_precedence(up: Upstream, proxy: Proxy, external: str) -> None:
    """Most specific wins per plugin name: consumer+route over route over service over global."""
    def dec(tag: str) -> dict:
        return decorator(f"{external}/anything/{tag}", response_header_name="X-Scope")

    proxy.load({
        "plugins": [dec("global")],
        "consumers": [{"username": "vip", "keyauth_credentials": [{"key": "vip-key"}],
                       "plugins": [{**dec("consumer"), "route": "r-route"}]},
                      {"username": "plain"}],
        "keyauth_credentials": [{"key": "plain-key", "consumer": "plain"}],
        "services": [
            {"name": "svc", "url": f"http://127.0.0.1:{up.port}", "plugins": [dec("service")],
             "routes": [
                 {"name": "r-route", "paths": ["/route"],
                  "plugins": [dec("route"), {"name": "key-auth"}]},
                 {"name": "r-service", "paths": ["/service"]}]},
            {"name": "other", "url": f"http://127.0.0.1:{up.port}",
             "routes": [{"name": "r-global", "paths": ["/global"]}]},
        ],
    })

    async def scope(path: str, headers: dict | None = None) -> str:
        status, hdrs, _ = await call(proxy, path, headers)
        assert status == 200
        return hdrs["X-Scope"].rsplit("/", 1)[1]

    assert await scope("/global") == "global"
    assert await scope("/service") == "service"
    assert await scope("/route", {"apikey": "plain-key"}) == "route"
    assert await scope("/route", {"apikey": "vip-key"}) == "consumer"


async def test_key_auth_credentials_follow_the_snapshot(up: Upstream, proxy: Proxy) -> None:
    """Several keys per consumer, expired keys refused, and a new snapshot re-indexes the keys."""
    def doc(credentials: list[dict]) -> dict:
        return {
            "consumers": [{"username": "bob", "keyauth_credentials": credentials}],
            "services": [{"name": "s", "url": f"http://127.0.0.1:{up.port}", "routes": [
                {"name": "r", "paths": ["/k"], "plugins": [{"name": "key-auth"}]}]}],
        }

    proxy.load(doc([{"key": "bob-1"}, {"key": "bob-2", "ttl": 3600},
                    {"key": "bob-old", "ttl": 60, "created_at": 1_000_000_000}]))
    for key in ("bob-1", "bob-2"):
        status, _, body = await call(proxy, "/k", {"apikey": key})
        assert status == 200 and body["headers"]["X-Consumer-Username"] == "bob", key
    status, _, body = await call(proxy, "/k", {"apikey": "bob-old"})
    assert (status, body) == (401, {"message": "Invalid authentication credentials"})

    proxy.load(doc([{"key": "bob-2"}]))
    assert (await call(proxy, "/k", {"apikey": "bob-1"}))[0] == 401
    assert (await call(proxy, "/k", {"apikey": "bob-2"}))[0] == 200


async def test_a_phase_goes_on_in_order_after_a_handler_that_waits() -> None:
    """Handlers run synchronously until one returns an awaitable; the rest of the phase runs
    after it, in priority order, each seeing what the ones before it set."""
    order: list[str] = []

    def plugin(name: str, priority: int, waits: bool) -> type[Plugin]:
        async def later(kong: object) -> None:
            await asyncio.sleep(0)
            order.append(f"{name} resumed")

        def access(self: Plugin, kong: object, conf: dict) -> object:
            seen = list(kong.ctx.shared)  # type: ignore[attr-defined]
            kong.ctx.shared[name] = True  # type: ignore[attr-defined]
            order.append(f"{name} saw {seen}")
            return later(kong) if waits else None

        return type(name, (Plugin,), {"name": name, "priority": priority, "access": access})

    classes = {"a": plugin("a", 30, True), "b": plugin("b", 20, False),
               "c": plugin("c", 10, True)}
    index = PluginIndex([{"id": n, "name": n, "config": {}} for n in classes], classes)
    ex = Exchange(None, "http", ("127.0.0.1", 1), 80, {"id": "r"}, None)
    waiting = run_phase(index.for_route("r", None), "access", ex, "http")
    assert order == ["a saw []"] and waiting is not None
    await waiting
    assert order == ["a saw []", "a resumed", "b saw ['a']", "c saw ['a', 'b']", "c resumed"]
