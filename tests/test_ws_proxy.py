"""WebSocket traffic through the real proxy: the handshake phase, the kong.websocket PDK from a
real plugin, the built-in plugins, timeouts, shutdown, back-pressure, the seed's curl upgrade.

The upstream is `websockets`' own server (an echo that also records how each connection was
closed and what handshake headers it got); clients are `websockets`' client or raw sockets.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from dp.plugins.base import Plugin
from dp.ws.pdk import PdkError
from shared.plugins import PluginSchema, register
from shared.schema.fields import Field
from tests.dp_fixtures import Proxy
from tests.polling import eventually
from tests.ws_peers import BINARY, CLOSE, CONT, TEXT, RawClient, cf, close_payload

# -- a probe plugin: each mode exercises one PDK call -------------------------------------------

register(PluginSchema(
    name="ws-probe", version="0.1.0", protocols=("http", "https", "ws", "wss"),
    default_protocols=("ws", "wss"),
    config=Field("record", required=True, fields={"mode": Field("string", required=True)})))
register(PluginSchema(
    name="ws-probe-late", version="0.1.0", protocols=("ws", "wss"),
    default_protocols=("ws", "wss"),
    config=Field("record", required=True, fields={"mode": Field("string", default="record")})))

SEEN: list[tuple[str, Any]] = []  # what probes observed, in order


def _client_frame(kong: Any, mode: str) -> None:
    side = kong.websocket.client
    payload, kind, status = side.get_frame()
    SEEN.append(("client", (payload, kind, status)))
    if mode == "shout" and kind == "text":
        side.set_frame_data(payload.upper())
    elif mode == "drop" and payload == b"drop me":
        side.drop_frame()
    elif mode == "drop" and kind == "close":
        try:
            side.drop_frame()
        except PdkError as exc:
            SEEN.append(("error", str(exc)))
    elif mode == "status" and kind == "text":
        try:
            side.set_status(4000)
        except PdkError as exc:
            SEEN.append(("error", str(exc)))
    elif mode == "status" and kind == "close":
        side.set_status(4321)
        side.set_frame_data("rewritten")
    elif mode == "close" and payload == b"bye":
        side.close(4000, "client bye", 4001, "upstream bye")
    elif mode == "boom" and payload == b"boom":
        raise RuntimeError("probe exploded")


def _upstream_frame(kong: Any, mode: str) -> None:
    side = kong.websocket.upstream
    payload, kind, status = side.get_frame()
    SEEN.append(("upstream", (payload, kind, status)))
    if mode == "upstream-close" and payload == b"hang up":
        side.close(4002, "to upstream", 4003, "to client")
    elif mode == "shout" and kind == "text":
        side.set_frame_data(payload + b"!")


class WsProbe(Plugin):
    name = "ws-probe"
    priority = 2000

    async def ws_handshake(self, kong: Any, conf: dict[str, Any]) -> None:
        mode = conf["mode"]
        kong.ctx.plugin["handshake"] = kong.request.get_path()
        if mode == "refuse":
            kong.response.exit(403, {"message": "no websockets today"})
        elif mode.startswith("limit"):
            kong.websocket.client.set_max_payload_size(1024)
            if mode == "limit-reset":
                kong.websocket.client.set_max_payload_size(0)

    def ws_client_frame(self, kong: Any, conf: dict[str, Any]) -> None:
        assert kong.ctx.plugin["handshake"]  # the handshake's ctx lives on
        _client_frame(kong, conf["mode"])

    def ws_upstream_frame(self, kong: Any, conf: dict[str, Any]) -> None:
        _upstream_frame(kong, conf["mode"])

    def ws_close(self, kong: Any, conf: dict[str, Any]) -> None:
        SEEN.append(("closed", kong.ctx.plugin["handshake"]))


class WsProbeLate(Plugin):
    """Runs after ws-probe (lower priority) and records what it gets."""

    name = "ws-probe-late"
    priority = 1000

    def ws_client_frame(self, kong: Any, conf: dict[str, Any]) -> None:
        SEEN.append(("late", kong.websocket.client.get_frame()[0]))


# -- the upstream ---------------------------------------------------------------------------------

@dataclass
class Upstream:
    port: int = 0
    closes: list[tuple[int | None, str]] = field(default_factory=list)  # code, reason received
    requests: list[dict[str, str]] = field(default_factory=list)  # handshake headers
    flood: asyncio.Event = field(default_factory=asyncio.Event)

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.requests.append({k.lower(): v for k, v in ws.request.headers.raw_items()})
        try:
            if ws.request.path == "/flood":
                await self._flood(ws)
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            rcvd = ws.protocol.close_rcvd
            self.closes.append((rcvd.code, rcvd.reason) if rcvd else (None, ""))

    async def _flood(self, ws: ServerConnection) -> None:
        self.flood.set()
        while True:
            await ws.send(b"f" * 65536)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream()
    def pick(_: ServerConnection, offered: Any) -> str | None:  # none offered is fine too
        return next((p for p in offered if p in ("chat.v2", "chat.v1")), None)

    async with serve(up.handler, "127.0.0.1", 0, compression=None, max_size=None,
                     select_subprotocol=pick, ping_interval=None) as server:
        up.port = server.sockets[0].getsockname()[1]
        yield up


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    p = await Proxy().start()
    p.server.plugin_classes.update({"ws-probe": WsProbe, "ws-probe-late": WsProbeLate})
    SEEN.clear()
    yield p
    await p.stop()


def load(proxy: Proxy, upstream: Upstream, *plugins: dict[str, Any],
         **service: Any) -> str:
    proxy.load({"services": [{"name": "ws", "url": f"ws://127.0.0.1:{upstream.port}",
                              **service,
                              "routes": [{"name": "ws", "paths": ["/"],
                                          "protocols": ["ws"], "strip_path": False,
                                          "plugins": list(plugins)}]}]})
    return f"ws://127.0.0.1:{proxy.port}"


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    """Wait for the server's close: (code, reason) the client received."""
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


# -- handshake ------------------------------------------------------------------------------------

async def test_echo_subprotocol_and_no_extensions(proxy: Proxy, upstream: Upstream) -> None:
    url = load(proxy, upstream)
    async with connect(url + "/chat", subprotocols=["chat.v1"]) as ws:  # offers deflate too
        assert ws.subprotocol == "chat.v1"
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        await ws.send("hello")
        assert await ws.recv() == "hello"
    sent = upstream.requests[0]
    assert "sec-websocket-extensions" not in sent  # not offered upstream
    assert sent["sec-websocket-protocol"] == "chat.v1"
    assert sent["x-forwarded-for"] == "127.0.0.1"


async def test_seed_curl_upgrade_gets_101(proxy: Proxy) -> None:
    """Seed 004's curl command, as written (its key "123" is not a 16-byte nonce: the
    gateway does not judge it, the upstream does — this one answers any key)."""
    async def lenient(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    seen: list[bytes] = []
    server = await asyncio.start_server(lenient, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy.load({"services": [{"name": "ws", "url": f"http://127.0.0.1:{port}",
                              "routes": [{"name": "ws", "paths": ["/ws"], "strip_path": False,
                                          "hosts": ["ws.contoso.com"]}]}]})
    curl = await asyncio.create_subprocess_exec(
        "curl", "-i", "-N", "-s", "--max-time", "3",
        "-H", "Connection: Upgrade", "-H", "Upgrade: websocket",
        "-H", "Origin: http://localhost", "-H", "Host: ws.contoso.com",
        "-H", "Sec-Websocket-Version: 13", "-H", "Sec-WebSocket-Key: 123",
        f"http://127.0.0.1:{proxy.port}/ws", stdout=asyncio.subprocess.PIPE)
    out, _ = await curl.communicate()
    assert out.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), out
    assert b"sec-websocket-key: 123" in seen[0].lower()
    assert b"origin: http://localhost" in seen[0].lower()
    server.close()


async def test_handshake_phase_can_refuse(proxy: Proxy, upstream: Upstream) -> None:
    url = load(proxy, upstream, {"name": "ws-probe", "config": {"mode": "refuse"}})
    client = await RawClient.connect(proxy.port, "/")
    assert client.status == 403
    assert json.loads(await client.body()) == {"message": "no websockets today"}
    client.close()
    assert upstream.requests == []  # never reached the upstream
    assert url


async def test_upstream_refusal_passed_back(proxy: Proxy) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy.load({"services": [{"name": "ws", "url": f"ws://127.0.0.1:{port}",
                              "routes": [{"name": "ws", "paths": ["/"],
                                          "protocols": ["ws"]}]}]})
    client = await RawClient.connect(proxy.port, "/")
    assert client.status == 401
    assert await client.body() == b"nope"
    server.close()


async def test_upstream_unreachable_is_502(proxy: Proxy) -> None:
    from tests.procs import free_port

    proxy.load({"services": [{"name": "ws", "url": f"ws://127.0.0.1:{free_port()}",
                              "retries": 0, "routes": [{"name": "ws", "paths": ["/"],
                                                        "protocols": ["ws"]}]}]})
    client = await RawClient.connect(proxy.port, "/")
    assert client.status == 502


async def test_upstream_handshake_timeout_is_504(proxy: Proxy) -> None:
    """An upstream that takes the connection but never answers the upgrade: the service's
    read_timeout bounds the wait."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads, never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy.load({"services": [{"name": "ws", "url": f"ws://127.0.0.1:{port}",
                              "read_timeout": 200,
                              "routes": [{"name": "ws", "paths": ["/"],
                                          "protocols": ["ws"]}]}]})
    client = await RawClient.connect(proxy.port, "/")
    assert client.status == 504
    server.close()


async def test_key_auth_on_a_ws_route(proxy: Proxy, upstream: Upstream) -> None:
    proxy.load({
        "consumers": [{"username": "ada", "keyauth_credentials": [{"key": "secret-key"}]}],
        "services": [{"name": "ws", "url": f"ws://127.0.0.1:{upstream.port}",
                      "routes": [{"name": "ws", "paths": ["/"], "protocols": ["ws"],
                                  "plugins": [{"name": "key-auth",
                                               "protocols": ["ws", "http"]}]}]}]})
    refused = await RawClient.connect(proxy.port, "/")
    assert refused.status == 401
    refused.close()
    async with connect(f"ws://127.0.0.1:{proxy.port}/",
                       additional_headers={"apikey": "secret-key"}) as ws:
        await ws.send("in")
        assert await ws.recv() == "in"


# -- the PDK through a real plugin ----------------------------------------------------------------

async def test_get_frame_sees_every_frame(proxy: Proxy, upstream: Upstream) -> None:
    load(proxy, upstream, {"name": "ws-probe", "config": {"mode": "record"}})
    client = await RawClient.connect(proxy.port, "/")
    client.send(cf(TEXT, b"a", fin=False) + cf(CONT, b"b") + cf(BINARY, b"\x00"))
    for echoed in (b"ab", b"\x00"):
        frame = await client.frame()
        assert frame is not None and bytes(frame.data) == echoed
    client.send(cf(0x9, b"ping!"))
    frame = await client.frame()
    assert frame is not None and (frame.opcode, bytes(frame.data)) == (0xA, b"ping!")
    client.send(cf(CLOSE, close_payload(1000, b"done")))
    frames = await client.until_close()
    client.close()
    assert frames[-1].opcode is CLOSE
    client_seen = [s for who, s in SEEN if who == "client"]
    assert client_seen == [(b"a", "text", None), (b"b", "continuation", None),
                           (b"\x00", "binary", None), (b"ping!", "ping", None),
                           (b"done", "close", 1000)]
    upstream_seen = [s for who, s in SEEN if who == "upstream"]
    assert (b"ab", "text", None) in upstream_seen  # the echo, reassembled by the server
    assert (b"ping!", "pong", None) in upstream_seen
    assert upstream_seen[-1] == (b"done", "close", 1000)
    await eventually(lambda: ("closed", "/") in SEEN, what="ws_close ran")


async def test_set_frame_data_reaches_later_handlers_and_peer(proxy: Proxy,
                                                              upstream: Upstream) -> None:
    url = load(proxy, upstream, {"name": "ws-probe", "config": {"mode": "shout"}},
               {"name": "ws-probe-late", "config": {}})
    async with connect(url) as ws:
        await ws.send("quiet please")
        assert await ws.recv() == "QUIET PLEASE!"  # upper toward upstream, "!" on the way back
    assert ("late", b"QUIET PLEASE") in SEEN


async def test_drop_frame_skips_later_handlers(proxy: Proxy, upstream: Upstream) -> None:
    url = load(proxy, upstream, {"name": "ws-probe", "config": {"mode": "drop"}},
               {"name": "ws-probe-late", "config": {}})
    async with connect(url) as ws:
        await ws.send("drop me")
        await ws.send("keep me")
        assert await ws.recv() == "keep me"  # the dropped one never reached the echo
    assert ("late", b"drop me") not in SEEN and ("late", b"keep me") in SEEN
    # dropping a close frame raises; the close still goes through
    assert ("error", "a close frame cannot be dropped") in SEEN
    assert upstream.closes == [(1000, "")]


async def test_set_status_only_on_close_frames(proxy: Proxy, upstream: Upstream) -> None:
    url = load(proxy, upstream, {"name": "ws-probe", "config": {"mode": "status"}})
    async with connect(url) as ws:
        await ws.send("text")
        assert await ws.recv() == "text"
    assert ("error", "set_status() needs a close frame, not text") in SEEN
    assert upstream.closes == [(4321, "rewritten")]


async def test_close_with_four_arguments(proxy: Proxy, upstream: Upstream) -> None:
    url = load(proxy, upstream, {"name": "ws-probe", "config": {"mode": "close"}},
               {"name": "ws-probe-late", "config": {}})
    async with connect(url) as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi"
        await ws.send("bye")
        assert await closed_with(ws) == (4000, "client bye")
    await eventually(lambda: upstream.closes, what="upstream closed")
    assert upstream.closes == [(4001, "upstream bye")]
    assert ("late", b"bye") not in SEEN  # later handlers did not run
    assert [c for c in upstream.requests] and len(upstream.requests) == 1


async def test_upstream_close_with_four_arguments(proxy: Proxy, upstream: Upstream) -> None:
    url = load(proxy, upstream, {"name": "ws-probe", "config": {"mode": "upstream-close"}})
    async with connect(url) as ws:
        await ws.send("hang up")  # echoed: the upstream-direction handler closes on it
        assert await closed_with(ws) == (4003, "to client")
    await eventually(lambda: upstream.closes, what="upstream closed")
    assert upstream.closes == [(4002, "to upstream")]


async def test_handler_error_closes_both_with_1011_logged_once(
        proxy: Proxy, upstream: Upstream, caplog: pytest.LogCaptureFixture) -> None:
    url = load(proxy, upstream, {"name": "ws-probe", "config": {"mode": "boom"}})
    with caplog.at_level(logging.ERROR, logger="tidegate.ws"):
        async with connect(url) as ws:
            await ws.send("boom")
            assert (await closed_with(ws))[0] == 1011
    await eventually(lambda: upstream.closes, what="upstream closed")
    assert upstream.closes[0][0] == 1011
    failures = [r for r in caplog.records if "frame handler failed" in r.getMessage()]
    assert len(failures) == 1 and "probe exploded" in (failures[0].exc_text or "")


async def test_set_max_payload_size_counts_the_aggregated_message(
        proxy: Proxy, upstream: Upstream) -> None:
    """The seed's example: limit 1024, three 500-byte fragments — the third exceeds it."""
    load(proxy, upstream, {"name": "ws-probe", "config": {"mode": "limit"}})
    client = await RawClient.connect(proxy.port, "/")
    client.send(cf(BINARY, b"x" * 500, fin=False) + cf(CONT, b"x" * 500, fin=False)
                + cf(CONT, b"x" * 500))
    frames = await client.until_close()
    assert [Close.parse(bytes(f.data)).code for f in frames if f.opcode is CLOSE] == [1009]
    assert await client.eof()
    client.close()
    await eventually(lambda: upstream.closes, what="upstream told")
    assert upstream.closes[0][0] == 1001
    # control frames are exempt, and a message within the limit passes
    client = await RawClient.connect(proxy.port, "/")
    client.send(cf(0x9, b"p" * 125) + cf(BINARY, b"y" * 1024))
    frames = [await client.frame(), await client.frame()]
    assert sorted((f.opcode, len(f.data)) for f in frames if f is not None) == [
        (BINARY, 1024), (0xA, 125)]
    client.close()


async def test_set_max_payload_size_zero_restores_the_default(
        proxy: Proxy, upstream: Upstream) -> None:
    url = load(proxy, upstream, {"name": "ws-probe", "config": {"mode": "limit-reset"}})
    async with connect(url, max_size=None) as ws:
        await ws.send(b"z" * 1500)
        assert await ws.recv() == b"z" * 1500
        await ws.send(b"z" * (2**20 + 1))  # over the default 1 MiB
        assert (await closed_with(ws))[0] == 1009


# -- built-in plugins -----------------------------------------------------------------------------

async def test_websocket_size_limit(proxy: Proxy, upstream: Upstream) -> None:
    url = load(proxy, upstream, {"name": "websocket-size-limit",
                                 "config": {"client_max_payload": 100,
                                            "upstream_max_payload": 200}})
    async with connect(url) as ws:
        await ws.send(b"a" * 100)
        assert await ws.recv() == b"a" * 100
        await ws.send(b"a" * 101)
        assert (await closed_with(ws))[0] == 1009
    # the upstream direction: a message the client may send but the upstream may not echo
    proxy.load({"services": [{"name": "ws", "url": f"ws://127.0.0.1:{upstream.port}",
                              "routes": [{"name": "ws", "paths": ["/"], "protocols": ["ws"],
                                          "plugins": [{"name": "websocket-size-limit", "config": {
                                              "client_max_payload": 500,
                                              "upstream_max_payload": 200}}]}]}]})
    async with connect(url) as ws:
        await ws.send(b"b" * 300)  # passes toward the upstream; its echo is over 200
        assert await closed_with(ws) == (1001, "")
    await eventually(lambda: len(upstream.closes) == 2, what="upstream told")
    assert upstream.closes[1][0] == 1009


VALIDATOR = {"name": "websocket-validator", "config": {
    "client": {"text": {"type": "draft4",
                        "schema": '{"type": "object", "required": ["name"]}'}},
    "upstream": {"binary": {"type": "draft4", "schema": '{"type": "array"}'}}}}


async def test_websocket_validator_seed_sequence(proxy: Proxy, upstream: Upstream) -> None:
    """Kong's example: names pass, a message without one closes the sender with 1007."""
    url = load(proxy, upstream, {"name": "websocket-validator", "config": {
        "client": {"text": {"type": "draft4",
                            "schema": '{ "type": "object", "required": ["name"] }'}}}})
    async with connect(url) as ws:
        await ws.send('{ "name": "Alex" }')
        assert await ws.recv() == '{ "name": "Alex" }'
        await ws.send('{ "name": "Kiran" }')
        assert await ws.recv() == '{ "name": "Kiran" }'
        await ws.send(b"binary has no rule here")
        assert await ws.recv() == b"binary has no rule here"
        await ws.send('{ "missing_name": true }')
        assert (await closed_with(ws))[0] == 1007
    await eventually(lambda: upstream.closes, what="upstream closed")
    assert upstream.closes == [(1000, "")]  # the peer gets a normal close
    assert len(upstream.requests) == 1


async def test_websocket_validator_fragments_and_upstream_direction(
        proxy: Proxy, upstream: Upstream) -> None:
    load(proxy, upstream, VALIDATOR)
    client = await RawClient.connect(proxy.port, "/")
    # a valid object in three fragments is checked whole
    client.send(cf(TEXT, b'{"na', fin=False) + cf(CONT, b'me": ', fin=False) + cf(CONT, b'1}'))
    frame = await client.frame()
    assert frame is not None and bytes(frame.data) == b'{"name": 1}'
    client.send(cf(TEXT, b"not json"))
    frames = await client.until_close()
    assert [Close.parse(bytes(f.data)).code for f in frames] == [1007]
    client.close()
    url = f"ws://127.0.0.1:{proxy.port}"
    async with connect(url) as ws:
        await ws.send(b"[1, 2]")  # echoed binary from the upstream: an array is fine
        assert await ws.recv() == b"[1, 2]"
        await ws.send(b'{"no": "array"}')  # its echo is invalid upstream data
        assert (await closed_with(ws))[0] == 1000
    await eventually(lambda: len(upstream.closes) == 2, what="upstream closed")
    assert upstream.closes[1][0] == 1007  # the upstream sent it: the upstream gets 1007


async def test_validator_config_is_checked(proxy: Proxy, upstream: Upstream) -> None:
    from shared.errors import DeclarativeConfigError

    bad = {"name": "websocket-validator", "config": {
        "client": {"text": {"type": "draft4", "schema": '{"type": 12}'}}}}
    with pytest.raises(DeclarativeConfigError, match="not a valid draft4 schema"):
        load(proxy, upstream, bad)
    with pytest.raises(DeclarativeConfigError, match="not valid JSON"):
        load(proxy, upstream, {"name": "websocket-validator", "config": {
            "client": {"text": {"type": "draft4", "schema": "{"}}}})


# -- timeouts, shutdown, back-pressure ------------------------------------------------------------

async def test_idle_timeout_closes_both_with_1001(proxy: Proxy, upstream: Upstream) -> None:
    url = load(proxy, upstream, read_timeout=300)
    async with connect(url, ping_interval=None) as ws:
        await ws.send("still here")
        assert await ws.recv() == "still here"
        assert await closed_with(ws) == (1001, "idle timeout")
    await eventually(lambda: upstream.closes, what="upstream closed")
    assert upstream.closes == [(1001, "idle timeout")]


async def test_drain_closes_websockets_with_1001(proxy: Proxy, upstream: Upstream) -> None:
    url = load(proxy, upstream)
    async with connect(url) as ws:
        await ws.send("before")
        assert await ws.recv() == "before"
        drain = asyncio.create_task(proxy.server.drain(5))
        assert await closed_with(ws) == (1001, "server shutting down")
    await asyncio.wait_for(drain, 10)
    assert proxy.server.connections == 0
    assert upstream.closes == [(1001, "server shutting down")]


async def test_client_vanishing_tells_the_upstream(proxy: Proxy, upstream: Upstream) -> None:
    load(proxy, upstream)
    client = await RawClient.connect(proxy.port, "/")
    client.send(cf(TEXT, b"hi"))
    assert (await client.frame()) is not None
    client.writer.transport.abort()
    await eventually(lambda: upstream.closes, what="upstream told")
    assert upstream.closes == [(1001, "client went away")]
    await eventually(lambda: proxy.server.connections == 0 and not proxy.server.websockets,
                     what="pair released")


async def test_slow_client_back_pressures_the_upstream(proxy: Proxy, upstream: Upstream) -> None:
    """A client that stops reading: the proxy stops reading the upstream, so what it holds
    stays bounded while the upstream's own send buffer fills up."""
    load(proxy, upstream)
    client = await RawClient.connect(proxy.port, "/flood")
    await asyncio.wait_for(upstream.flood.wait(), 10)
    client.writer.transport.pause_reading()  # stop reading
    pair = await eventually(lambda: next(iter(proxy.server.websockets), None), what="pair")

    def upstream_paused() -> bool:
        return pair.upc.transport.is_reading() is False

    await eventually(upstream_paused, what="upstream reads paused")
    held = pair.conn.transport.get_write_buffer_size() + pair.pipeline.buffered_from_upstream
    assert held < 4 * 2**20, held
    client.writer.transport.abort()


async def test_frames_closes_and_handshakes_are_counted(proxy: Proxy, upstream: Upstream) -> None:
    from dp import metrics

    def counts() -> tuple[int, int, int, int]:
        c = metrics.COUNTS
        return (c.ws_frames.get(("ws", "ws", "client"), 0),
                c.ws_frames.get(("ws", "ws", "upstream"), 0),
                c.ws_closes.get(("ws", "ws", 1000), 0), c.requests.get(("ws", "ws", 101), 0))

    before = counts()
    url = load(proxy, upstream)
    async with connect(url) as ws:
        for text in ("one", "two", "three"):
            await ws.send(text)
            assert await ws.recv() == text
    await eventually(lambda: not proxy.server.websockets, what="pair ended")
    # 3 messages + a close each way; one close 1000 seen by the client; one 101
    assert tuple(a - b for a, b in zip(counts(), before, strict=True)) == (4, 4, 1, 1)
