"""Upgrade requests: WebSocket handshakes into the frame pipeline, other upgrades as a tunnel.

A WebSocket upgrade (`Upgrade: websocket`) on a matching route goes:

1. the handshake phase: each plugin's `ws_handshake` — or its `access`, if it has no
   WebSocket phase — by priority, with `kong.websocket` there for `set_max_payload_size`;
   `kong.response.exit()` refuses the upgrade with that response;
2. the upstream connection (through the balancer; TLS for `wss`/`https` services), and the
   client's handshake sent on without `Sec-WebSocket-Extensions`: extensions such as
   permessage-deflate are not negotiated, because the pipeline reads and may rewrite every
   frame. An upstream that answers with an extension anyway gets no client: 502;
3. a `101` goes back to the client and `WebSocketPair` relays frame by frame, running the
   plugins' `ws_client_frame` / `ws_upstream_frame` handlers; any other answer is passed back
   as an ordinary response. When the pair has ended, `ws_close` and then `log` run.

Other upgrades (h2c, …) get the same handshake phase and are then relayed as raw bytes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from dp.metrics import count_request
from dp.plugins.pdk import Exchange, Kong, PluginExit, kong_for
from dp.proxy import heads
from dp.proxy.http import BAD_UPSTREAM, NO_PEER, TIMED_OUT, reason
from dp.proxy.upstream import UpstreamClosed, UpstreamConnection, UpstreamTimeout
from dp.proxy.websocket import WebSocketPair
from dp.router import Match
from dp.ws import FramePipeline, Handler

if TYPE_CHECKING:
    from dp.proxy.connection import ClientConnection
    from dp.proxy.request import Request

log = logging.getLogger("tidegate.dp.proxy")

_EXTENSIONS = "sec-websocket-extensions"
_NO_EXTENSIONS = {_EXTENSIONS: ("Sec-WebSocket-Extensions", None)}
_WS_SCHEME = {"http": "ws", "https": "wss"}


def is_websocket(req: Request) -> bool:
    return req.hmap.get("upgrade", "").strip().lower() == "websocket"


def runs_on(protocols: frozenset[str], scheme: str) -> bool:
    """A plugin runs on an upgrade if it is configured for the listener's scheme or for the
    WebSocket scheme over it (http → ws, https → wss)."""
    return scheme in protocols or _WS_SCHEME.get(scheme, scheme) in protocols


async def handle_upgrade(conn: ClientConnection, req: Request, m: Match, entries: Any) -> bool:
    """Answer an upgrade request; returns False (the connection ends with the upgrade)."""
    from dp.proxy.handler import answer_exit, failed, run_log

    service = m.service
    assert service is not None
    pipeline = FramePipeline() if is_websocket(req) else None
    ex: Exchange | None = None
    kongs: dict[str, Kong] = {}
    if entries:
        ex = Exchange(req, conn.scheme, conn.client, conn.listen_port, m.route, service)
        ex.websocket = pipeline.kong.websocket if pipeline is not None else None
        try:
            kongs = await _handshake_phase(entries, ex, conn.scheme)
        except PluginExit as stop:
            return await answer_exit(conn, req, m, entries, ex, stop)
        except Exception:
            return await answer_exit(conn, req, m, entries, ex, failed("ws_handshake"))
    upc, status = await _open(conn, req, m, ex, pipeline is not None)
    if upc is None:
        count_request(m.route, service, status)
        return False
    if pipeline is None:
        count_request(m.route, service, 101)
        await tunnel(conn, upc)
        return False
    if any(name.lower() == b"sec-websocket-extensions" for name, _ in upc.headers):
        log.warning("upstream %s negotiated a WebSocket extension we did not offer",
                    service.get("host"))
        upc.close()
        count_request(m.route, service, 502)
        conn.answer(req, 502, BAD_UPSTREAM)
        return False
    count_request(m.route, service, 101)
    closers: list[tuple[Any, Kong, Any]] = []
    if ex is not None:
        client, upstream, closers = _frame_handlers(entries, ex, kongs, conn.scheme)
        pipeline.set_handlers(client, upstream)
    conn.write(_switching_head(upc))
    try:
        await WebSocketPair(conn, upc, pipeline, (service.get("read_timeout") or 60000) / 1000,
                            m.route, service).run()
    finally:
        _run_closers(closers)
    if ex is not None:
        await run_log(entries, ex, conn.scheme, 101)
    return False


async def _handshake_phase(entries: Any, ex: Exchange, scheme: str) -> dict[str, Kong]:
    """Run `ws_handshake` (or `access`) by priority; the per-plugin `kong` objects, kept for
    the frame handlers so a plugin's `kong.ctx.plugin` lives for the whole connection."""
    kongs: dict[str, Kong] = {}
    for entry in entries:
        conf = entry.config_for(ex.consumer["id"] if ex.consumer else None)
        if conf is None or not runs_on(conf.protocols, scheme):
            continue
        name = entry.plugin.name
        kong = kongs[name] = kong_for(ex, name)
        if "ws_handshake" in entry.phases:
            waiting = entry.plugin.ws_handshake(kong, conf.config)
        elif "access" in entry.phases:
            waiting = entry.plugin.access(kong, conf.config)
        else:
            continue
        if waiting is not None:  # see dp/plugins/base.py
            await waiting
    return kongs


def _frame_handlers(entries: Any, ex: Exchange, kongs: dict[str, Kong], scheme: str
                    ) -> tuple[list[Handler], list[Handler], list[tuple[Any, Kong, Any]]]:
    """The frame handlers per direction and the `ws_close` calls, with the configs chosen
    for the consumer the handshake identified."""
    client: list[Handler] = []
    upstream: list[Handler] = []
    closers: list[tuple[Any, Kong, Any]] = []
    for entry in entries:
        conf = entry.config_for(ex.consumer["id"] if ex.consumer else None)
        plugin = entry.plugin
        if conf is None or not runs_on(conf.protocols, scheme):
            continue
        kong = kongs.get(plugin.name) or kong_for(ex, plugin.name)
        if "ws_client_frame" in entry.phases:
            client.append(Handler(plugin.ws_client_frame, conf.config, plugin.priority,
                                  plugin.name, kong))
        if "ws_upstream_frame" in entry.phases:
            upstream.append(Handler(plugin.ws_upstream_frame, conf.config, plugin.priority,
                                    plugin.name, kong))
        if "ws_close" in entry.phases:
            closers.append((plugin.ws_close, kong, conf.config))
    return client, upstream, closers


def _run_closers(closers: list[tuple[Any, Kong, Any]]) -> None:
    for fn, kong, conf in closers:
        try:
            fn(kong, conf)
        except Exception:  # the connection is over; a failing ws_close changes nothing
            log.exception("ws_close handler failed")


async def _open(conn: ClientConnection, req: Request, m: Match, ex: Exchange | None,
                websocket: bool) -> tuple[UpstreamConnection | None, int]:
    """Connect upstream and send the handshake: (the connection, 101) once the upstream
    switched, else (None, the status the client was answered with)."""
    from dp.proxy.handler import _stream_back, connect

    service = m.service
    assert service is not None
    upc, balancer, _target, _reused, error = await connect(conn, req, m, service, ex, True)
    if upc is None:
        conn.answer(req, error, {502: BAD_UPSTREAM, 503: NO_PEER, 504: TIMED_OUT}[error])
        return None, error
    if m.preserve_host and req.host:
        host = req.host
    else:
        host = heads.upstream_host(service, balancer.upstream if balancer else None)
    overrides = dict(ex.up_headers or {}) if ex is not None else {}
    if websocket:
        overrides.update(_NO_EXTENSIONS)
    upc.begin((service.get("read_timeout") or 60000) / 1000)
    upc.write(heads.request_head(req, m.upstream_path, host, conn.client[0], conn.scheme,
                                 conn.listen_port, overrides or None, False))
    try:
        await upc.head  # type: ignore[misc]
    except UpstreamTimeout:
        upc.close()
        conn.answer(req, 504, TIMED_OUT)
        return None, 504
    except UpstreamClosed:
        upc.close()
        conn.answer(req, 502, BAD_UPSTREAM)
        return None, 502
    if upc.status != 101:
        await _stream_back(conn, req, upc, upc.status, None, conn.server)
        upc.close()
        return None, upc.status
    return upc, 101


def _switching_head(upc: UpstreamConnection) -> bytes:
    """The upstream's 101, as the client gets it."""
    lines = [b"HTTP/1.1 101 %b\r\n" % (upc.reason or reason(101))]
    lines.extend(b"%b: %b\r\n" % (k, v) for k, v in upc.headers)
    return b"".join(lines) + b"\r\n"


async def tunnel(conn: ClientConnection, upc: UpstreamConnection) -> None:
    """Send the 101 head, then copy bytes both ways until one side closes."""
    if upc.timer is not None:
        upc.timer.cancel()
        upc.timer = None
    conn.write(_switching_head(upc))
    closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def lost() -> None:
        if not closed.done():
            closed.set_result(None)

    transport = conn.transport
    assert transport is not None
    conn.upstream = upc
    upc.on_lost = lost
    upc.on_pause_writing, upc.on_resume_writing = transport.pause_reading, transport.resume_reading
    upc.raw = conn.write
    conn.raw = upc.write
    if upc.leftover:
        conn.write(upc.leftover)
    if conn.leftover:
        upc.write(conn.leftover)
    transport.resume_reading()
    upc.resume_reading()
    try:
        await closed
    finally:
        conn.upstream = None
        upc.close()
