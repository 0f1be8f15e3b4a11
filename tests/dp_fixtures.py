"""Helpers for data-plane traffic tests: real upstream HTTP servers on 127.0.0.1 and an in-process
proxy on a real port, configured from a kong.yml-shaped dict."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from aiohttp import web

from dp.proxy.server import ProxyServer
from dp.running import Snapshot
from shared import declarative
from shared.config_set import ConfigSet
from tests.procs import free_port


@dataclass
class Upstream:
    """A real HTTP server that echoes what it received, and can be told to misbehave."""

    name: str
    runner: web.AppRunner | None = None
    port: int = 0
    hits: int = 0
    health_status: int = 200
    health_probes: int = 0
    status: int = 200  # what ordinary requests answer
    seen: list[dict[str, Any]] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _echo(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path == "/health":
            self.health_probes += 1
            return web.Response(status=self.health_status, text="OK")
        self.hits += 1
        info = {"upstream": self.name, "method": request.method, "path": request.path_qs,
                "headers": dict(request.headers), "body_len": len(body),
                "body_head": body[:64].decode(errors="replace")}
        self.seen.append(info)
        if request.path.startswith("/slow"):
            await asyncio.sleep(float(request.query.get("s", "2")))
        if request.path.startswith("/stream"):
            resp = web.StreamResponse(status=200)
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for i in range(int(request.query.get("n", "5"))):
                await resp.write(f"piece-{i};".encode())
            await resp.write_eof()
            return resp
        return web.json_response(info, status=self.status)

    async def start(self, port: int = 0) -> Upstream:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._echo)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


def config_from(doc: dict[str, Any]) -> ConfigSet:
    doc = {"_format_version": "3.0", **doc}
    return ConfigSet.from_lists(declarative.load_text(yaml.safe_dump(doc).encode()))


class Proxy:
    """An in-process proxy (the real ProxyServer) listening on a free port."""

    def __init__(self) -> None:
        self.server = ProxyServer()
        self.port = 0
        self.tls_port = 0
        self.version = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def load(self, doc: dict[str, Any]) -> None:
        self.version += 1
        self.server.apply(Snapshot(f"v{self.version}", config_from(doc), "file"))

    async def start(self, tls: bool = False) -> Proxy:
        self.port = await self.server.listen("127.0.0.1", 0, "http")
        if tls:
            self.tls_port = await self.server.listen("127.0.0.1", 0, "https")
        return self

    async def stop(self) -> None:
        await self.server.close()


@contextlib.contextmanager
def threaded_upstream(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> Iterator[int]:
    """A real HTTP upstream answering every path with `handler`, on its own thread and loop (for
    tests whose own calls block); yields its port."""
    port = free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/{t:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    def run() -> None:
        runner = loop.run_until_complete(serve())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10), "upstream did not start"
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
