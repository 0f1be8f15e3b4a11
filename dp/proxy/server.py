"""The proxy of one process: listeners, the current routing state, balancers, upstream pool.

`apply(snapshot)` builds a new router and plugin index from a config snapshot and swaps them in
with one assignment; requests already routed keep the state they started with, new requests see
the new one. Balancers are rebuilt in place (unchanged upstreams keep their health state).
In a worker process (`active_checks=False`) the main process runs the active health checks and
tells the workers what they find (see dp/health_sync.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import weakref
from dataclasses import dataclass
from typing import Any

from dp.balancer import Balancers
from dp.events import EventQueue
from dp.plugins import runtime_classes
from dp.plugins.runtime import PluginIndex
from dp.proxy.connection import ClientConnection
from dp.proxy.tls import CertStore
from dp.proxy.upstream import Pool
from dp.proxy.websocket import WebSocketPair
from dp.router import Router

log = logging.getLogger("tidegate.dp.proxy")


@dataclass(frozen=True, slots=True)
class ProxyState:
    """What request handling reads, built once per snapshot."""

    version: str
    router: Router
    plugins: PluginIndex


class ProxyServer:
    def __init__(self, events: EventQueue | None = None,
                 enabled_plugins: list[str] | None = None, *, active_checks: bool = True) -> None:
        self.events = events if events is not None else EventQueue()
        self.active_checks = active_checks
        self.balancers = Balancers(self.events)
        self.pool = Pool()
        self.tls = CertStore()
        classes = runtime_classes()
        if enabled_plugins is not None:
            classes = {n: c for n, c in classes.items() if n in enabled_plugins}
        self.plugin_classes = classes
        self.state: ProxyState | None = None
        self.servers: list[asyncio.Server] = []
        self.ports: dict[str, int] = {}
        self.connections = 0
        self.requests = 0
        self._clients: weakref.WeakSet[ClientConnection] = weakref.WeakSet()
        self.websockets: set[WebSocketPair] = set()  # open WebSocket pairs (1001 on drain)

    def apply(self, snapshot: Any) -> None:
        """Swap in routing state for a new snapshot (a RunningConfig listener)."""
        started = time.perf_counter()
        config = snapshot.config
        router = Router.from_config(config, self.state.router if self.state else None)
        plugins = PluginIndex.from_config(config, self.plugin_classes)
        for plugin in plugins.instances.values():  # plugins that emit events get the queue
            if hasattr(plugin, "bind_events"):
                plugin.bind_events(self.events)
        self.tls.rebuild(config)
        self.balancers.rebuild(config)
        if not self.active_checks:  # cancelled before their first probe
            for balancer in self.balancers.by_id.values():
                balancer.checker.stop()
        self.state = ProxyState(snapshot.version, router, plugins)
        log.info("proxy serving %s: %d route paths, %d upstreams (built in %.0f ms)",
                 snapshot.version, router.size, len(self.balancers.by_id),
                 (time.perf_counter() - started) * 1000)

    async def listen(self, host: str, port: int, scheme: str = "http",
                     reuse_port: bool = False) -> int:
        """Start a listener; returns the bound port (0 picks a free one)."""
        loop = asyncio.get_running_loop()
        holder: dict[str, int] = {}

        def factory() -> ClientConnection:
            conn = ClientConnection(self, scheme, holder["port"])
            self._clients.add(conn)
            return conn

        server = await loop.create_server(
            factory, host, port, reuse_address=True, reuse_port=reuse_port or None,
            ssl=self.tls.default if scheme == "https" else None, backlog=1024)
        bound = server.sockets[0].getsockname()[1]
        holder["port"] = bound
        for sock in server.sockets:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.servers.append(server)
        self.ports[scheme] = bound
        return int(bound)

    async def drain(self, timeout: float) -> None:
        """Stop accepting, close idle keep-alive connections, and wait up to `timeout` seconds
        for requests in flight to finish (a graceful stop)."""
        for server in self.servers:
            server.close()
        for pair in list(self.websockets):
            pair.go_away()
        deadline = time.monotonic() + timeout
        while self.connections > 0 and time.monotonic() < deadline:
            for conn in list(self._clients):
                # Waiting for the next request on a kept-alive connection: nothing in flight.
                # (A request whose head is still arriving is closed too, as nginx does.)
                if conn.idle:
                    conn.close()
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        self.balancers.stop()
        self.pool.close()
        from dp.plugins import http_client

        await http_client.close()
