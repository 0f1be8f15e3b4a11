"""The HTTP reverse proxy with real upstream servers and real sockets (in-process proxy)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession

from dp.proxy.tls import self_signed
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
    p = await Proxy().start(tls=True)
    yield p
    await p.stop()


async def get(url: str, **kw) -> tuple[int, dict, object]:
    async with ClientSession() as s, s.request(kw.pop("method", "GET"), url, **kw) as r:
        body = await r.json() if "json" in r.content_type else await r.text()
        return r.status, dict(r.headers), body


async def test_routing_matrix_and_forwarding_headers(up: Upstream, proxy: Proxy) -> None:
    proxy.load({"services": [{"name": "s", "url": f"http://127.0.0.1:{up.port}/base", "routes": [
        {"name": "strip", "paths": ["/api"]},
        {"name": "keep", "paths": ["/keep"], "strip_path": False, "preserve_host": True},
        {"name": "host", "hosts": ["*.example.com"], "paths": ["/h"], "methods": ["GET"]},
        {"name": "hdr", "paths": ["/v"], "headers": {"x-version": ["2"]}},
        {"name": "tls", "paths": ["/secure"], "protocols": ["https"]},
        {"name": "re", "paths": [r"~/items/\d+$"], "regex_priority": 3},
    ]}]})
    status, headers, body = await get(f"{proxy.url}/api/users?x=1",
                                      headers={"X-Forwarded-For": "10.0.0.1"})
    assert status == 200 and body["path"] == "/base/users?x=1"
    h = body["headers"]
    assert h["X-Forwarded-For"] == "10.0.0.1, 127.0.0.1"
    assert h["X-Forwarded-Proto"] == "http" and h["X-Forwarded-Port"] == str(proxy.port)
    assert h["X-Forwarded-Host"] == "127.0.0.1" and h["X-Forwarded-Path"] == "/api/users"
    assert h["Via"] == "1.1 tidegate" and h["Host"] == f"127.0.0.1:{up.port}"
    assert headers["Via"] == "1.1 tidegate"

    _, _, body = await get(f"{proxy.url}/keep/x", headers={"Host": "client.test"})
    assert body["path"] == "/base/keep/x" and body["headers"]["Host"] == "client.test"
    _, _, body = await get(f"{proxy.url}/h/1", headers={"Host": "www.example.com"})
    assert body["path"] == "/base/1"
    status, _, body = await get(f"{proxy.url}/h/1", method="POST",
                                headers={"Host": "www.example.com"})
    assert (status, body) == (404, {"message": "no Route matched with those values"})
    assert (await get(f"{proxy.url}/v", headers={"x-version": "2"}))[0] == 200
    assert (await get(f"{proxy.url}/v", headers={"x-version": "3"}))[0] == 404
    status, headers, body = await get(f"{proxy.url}/secure")
    assert status == 426 and body == {"message": "Please use HTTPS protocol"}
    status, _, body = await get(f"{proxy.url}/items/12")
    assert status == 200 and body["path"] == "/base"


async def test_https_listener_picks_certificate_by_sni(up: Upstream, proxy: Proxy) -> None:
    cert, key = self_signed("secure.test")
    proxy.load({"certificates": [{"cert": cert, "key": key, "snis": [{"name": "secure.test"}]}],
                "services": [{"name": "s", "url": f"http://127.0.0.1:{up.port}", "routes": [
                    {"name": "tls", "paths": ["/secure"], "protocols": ["https"],
                     "snis": ["secure.test"]}]}]})
    ctx = ssl.create_default_context(cadata=cert)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.tls_port, ssl=ctx,
                                                   server_hostname="secure.test")
    writer.write(b"GET /secure/x HTTP/1.1\r\nHost: secure.test\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert b'"X-Forwarded-Proto": "https"' in data


async def test_keepalive_pipelining_and_chunked_bodies(up: Upstream, proxy: Proxy) -> None:
    proxy.load({"services": [{"name": "s", "url": f"http://127.0.0.1:{up.port}",
                              "routes": [{"name": "r", "paths": ["/"]}]}]})
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    pipelined = b"".join(f"GET /p{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(5))
    chunked = (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    writer.write(pipelined + chunked + b"GET /stream?n=3 HTTP/1.1\r\nHost: x\r\n"
                 b"Connection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    order = [data.find(f'"path": "/p{i}"'.encode()) for i in range(5)]
    assert all(p > 0 for p in order) and order == sorted(order)
    assert b'"body_len": 11' in data and b'"body_head": "hello world"' in data
    assert data.count(b"HTTP/1.1 200") == 7
    assert b"Transfer-Encoding: chunked" in data and b"piece-0;" in data and b"piece-2;" in data
    assert data.endswith(b"0\r\n\r\n")


async def test_large_body_streams_both_ways(up: Upstream, proxy: Proxy) -> None:
    proxy.load({"services": [{"name": "s", "url": f"http://127.0.0.1:{up.port}",
                              "routes": [{"name": "r", "paths": ["/"]}]}]})
    payload = b"z" * (8 * 1024 * 1024)
    status, _, body = await get(f"{proxy.url}/big", method="POST", data=payload)
    assert status == 200 and body["body_len"] == len(payload)


async def test_connect_failure_502_timeout_504_and_retries(up: Upstream, proxy: Proxy) -> None:
    dead = free_port()
    proxy.load({
        "services": [
            {"name": "dead", "url": f"http://127.0.0.1:{dead}", "retries": 0,
             "routes": [{"name": "d", "paths": ["/dead"]}]},
            {"name": "slow", "url": f"http://127.0.0.1:{up.port}", "read_timeout": 300,
             "routes": [{"name": "s", "paths": ["/slow"], "strip_path": False}]},
            {"name": "lb", "host": "pool", "retries": 3,
             "routes": [{"name": "lb", "paths": ["/lb"]}]},
        ],
        "upstreams": [{"name": "pool", "targets": [
            {"target": f"127.0.0.1:{dead}", "weight": 1000}, {"target": up.target, "weight": 1}]}],
    })
    status, _, body = await get(f"{proxy.url}/dead")
    assert (status, body["message"]) == (502, "An invalid response was received from the "
                                              "upstream server")
    status, _, body = await get(f"{proxy.url}/slow?s=2")
    assert (status, body) == (504, {"message": "The upstream server is timing out"})
    for _ in range(5):  # the heavy dead target is tried first, then the retry succeeds
        status, _, body = await get(f"{proxy.url}/lb/x")
        assert status == 200 and body["upstream"] == "a"


async def test_write_timeout_504_when_the_upstream_stops_reading(proxy: Proxy) -> None:
    """An upstream that accepts but never reads the body: the upload stalls on back-pressure
    and the service's write_timeout answers 504."""
    held: list[asyncio.StreamWriter] = []

    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # keep the connection open, read nothing

    stuck = await asyncio.start_server(never_read, "127.0.0.1", 0)
    port = stuck.sockets[0].getsockname()[1]
    proxy.load({"services": [{"name": "stuck", "url": f"http://127.0.0.1:{port}",
                              "write_timeout": 300, "read_timeout": 60000, "retries": 0,
                              "routes": [{"name": "up", "paths": ["/upload"]}]}]})
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    size = 256 * 1024 * 1024
    writer.write(f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n"
                 .encode())

    async def upload() -> None:
        block = b"x" * 65536
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()

    sending = asyncio.ensure_future(upload())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        assert head.startswith(b"HTTP/1.1 504 "), head
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = await asyncio.wait_for(reader.readexactly(length), 5)
        assert body == b'{"message":"The upstream server is timing out"}'
    finally:
        sending.cancel()
        writer.close()
        for w in held:
            w.close()
        stuck.close()


async def test_other_upgrades_are_tunnelled(proxy: Proxy) -> None:
    """An upgrade to something other than WebSocket is relayed as raw bytes both ways
    (WebSocket upgrades go through the frame pipeline: tests/test_ws_proxy.py)."""
    async def echo_ws(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: shouting/1\r\n"
                     b"Connection: Upgrade\r\n\r\n")
        while data := await reader.read(1024):
            writer.write(data.upper())
        writer.close()

    server = await asyncio.start_server(echo_ws, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy.load({"services": [{"name": "ws", "url": f"http://127.0.0.1:{port}",
                              "routes": [{"name": "ws", "paths": ["/ws"],
                                          "protocols": ["http"]}]}]})
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: shouting/1\r\nConnection: Upgrade\r\n"
                 b"\r\nhello")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    assert await asyncio.wait_for(reader.readexactly(5), 5) == b"HELLO"
    writer.write(b"again")
    assert await asyncio.wait_for(reader.readexactly(5), 5) == b"AGAIN"
    writer.close()
    server.close()
