"""Upgrade requests (WebSocket handshakes): the seam the WebSocket frame pipeline replaces.

For now an upgrade request on a matching route is relayed as a raw byte tunnel: the handshake
goes upstream, a `101 Switching Protocols` answer goes back to the client, and from then on bytes
are copied both ways (with back-pressure) until either side closes. A non-101 answer is passed
back as an ordinary response. The frame pipeline (per-frame plugins, size limits) will replace
`handle_upgrade` with the same signature.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from dp.proxy import heads
from dp.proxy.http import BAD_UPSTREAM, NO_PEER, TIMED_OUT, reason
from dp.proxy.upstream import UpstreamClosed, UpstreamConnection, UpstreamTimeout
from dp.router import Match

if TYPE_CHECKING:
    from dp.proxy.connection import ClientConnection
    from dp.proxy.request import Request


async def handle_upgrade(conn: ClientConnection, req: Request, m: Match, ex: Any) -> bool:
    """Relay an upgrade; returns False (the client connection ends with the tunnel)."""
    from dp.proxy.handler import _stream_back, connect

    service = m.service
    assert service is not None
    upc, balancer, _target, _reused, error = await connect(conn, req, m, service, ex, True)
    if upc is None:
        message = {502: BAD_UPSTREAM, 503: NO_PEER, 504: TIMED_OUT}[error]
        conn.answer(req, error, message)
        return False
    if m.preserve_host and req.host:
        host = req.host
    else:
        host = heads.upstream_host(service, balancer.upstream if balancer else None)
    upc.begin((service.get("read_timeout") or 60000) / 1000)
    upc.write(heads.request_head(req, m.upstream_path, host, conn.client[0], conn.scheme,
                                 conn.listen_port, ex.up_headers if ex else None, False))
    try:
        await upc.head  # type: ignore[misc]
    except UpstreamTimeout:
        upc.close()
        conn.answer(req, 504, TIMED_OUT)
        return False
    except UpstreamClosed:
        upc.close()
        conn.answer(req, 502, BAD_UPSTREAM)
        return False
    if upc.status != 101:
        await _stream_back(conn, req, upc, upc.status, None, conn.server)
        upc.close()
        return False
    await tunnel(conn, upc)
    return False


async def tunnel(conn: ClientConnection, upc: UpstreamConnection) -> None:
    """Send the 101 head, then copy bytes both ways until one side closes."""
    if upc.timer is not None:
        upc.timer.cancel()
        upc.timer = None
    lines = [b"HTTP/1.1 101 %b\r\n" % (upc.reason or reason(101))]
    lines.extend(b"%b: %b\r\n" % (k, v) for k, v in upc.headers)
    conn.write(b"".join(lines) + b"\r\n")
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
    try:
        await closed
    finally:
        conn.upstream = None
        upc.close()
