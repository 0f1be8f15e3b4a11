"""One client connection: parse requests with httptools and answer them one at a time, in order.

Parsing runs ahead (pipelined requests queue up, and the socket is paused when too many wait);
answering is sequential, so responses always leave in request order. Bodies stream through a
`BodyStream`. When the client reads slower than the upstream sends, the client transport's
`pause_writing` pauses the upstream socket until the client catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httptools

from dp.proxy.handler import handle
from dp.proxy.http import BAD_REQUEST, simple_response
from dp.proxy.request import BodyStream, Request

if TYPE_CHECKING:
    from dp.proxy.server import ProxyServer

log = logging.getLogger("tidegate.dp.proxy")
MAX_QUEUED = 16


# How long a connection answered before its request body arrived keeps draining (see
# ClientConnection.linger_close).
LINGER_SECONDS = 5.0


def _discard(data: bytes) -> None:
    """Bytes a client still sends after its request was answered."""

class ClientConnection(asyncio.Protocol):
    def __init__(self, server: ProxyServer, scheme: str, listen_port: int) -> None:
        self.server = server
        self.scheme = scheme
        self.listen_port = listen_port
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client: tuple[str, int] = ("", 0)
        self.sni: str | None = None
        self.closed = False
        self.queue: deque[Request] = deque()
        self.current: Request | None = None
        self.upstream: Any = None  # the UpstreamConnection streaming to us now
        self.raw: Callable[[bytes], None] | None = None  # set while relaying an upgrade
        self.on_lost: Callable[[], None] | None = None  # a relay that ends itself on loss
        self.leftover = b""  # bytes after an upgrade request's head
        self._wakeup: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._reading_paused = False
        self._write_ready: asyncio.Future[None] | None = None
        self._corked: list[bytes] | None = None  # writes gathered between cork and uncork

    @property
    def idle(self) -> bool:
        """Open, with nothing queued or in flight: waiting for the next keep-alive request."""
        return not self.closed and not self.queue and self._wakeup is not None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if peer:
            self.client = (peer[0], peer[1])
        if self.scheme == "https":
            ssl_object = transport.get_extra_info("ssl_object")
            self.sni = self.server.tls.sni_of(ssl_object)
        self.server.connections += 1
        self._task = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        if self.raw is not None:
            self.raw(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.leftover = data[exc.args[0]:]
            self.transport.pause_reading()  # type: ignore[union-attr]
        except httptools.HttpParserError:
            self._bad_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections -= 1
        if self.on_lost is not None:  # a WebSocket pair: it tells the upstream and finishes
            self.on_lost()
            return
        if self.current is not None and self.current.body is not None:
            self.current.body.abort()
        if self.upstream is not None:
            self.upstream.close()
        if self._task is not None:
            self._task.cancel()

    def pause_writing(self) -> None:
        self._write_ready = asyncio.get_running_loop().create_future()
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        ready, self._write_ready = self._write_ready, None
        if ready is not None and not ready.done():
            ready.set_result(None)
        if self.upstream is not None:
            self.upstream.resume_reading()

    async def drain(self) -> None:
        if self._write_ready is not None:
            await self._write_ready

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.current = Request()

    def on_url(self, url: bytes) -> None:
        self.current.url += url  # type: ignore[union-attr]

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers.append((name, value))  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        req = self.current
        assert req is not None
        parser = self.parser
        req.method = parser.get_method().decode()
        req.version = parser.get_http_version()
        req.keep_alive = parser.should_keep_alive()
        req.upgrade = parser.should_upgrade()
        url = req.url
        if not url.startswith(b"/"):
            with contextlib.suppress(httptools.HttpParserInvalidURLError):
                parsed = httptools.parse_url(url)
                url = (parsed.path or b"/") + (b"?" + parsed.query if parsed.query else b"")
        path, _, query = url.partition(b"?")
        req.path = path.decode("latin-1")
        req.query = query.decode("latin-1")
        req.index_headers()
        hmap = req.hmap
        if "transfer-encoding" in hmap or hmap.get("content-length", "0") not in ("0", ""):
            req.has_body = True
            req.body = BodyStream(self._pause_reading, self._resume_reading)
        self.queue.append(req)
        if len(self.queue) > MAX_QUEUED:
            self._pause_reading()
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.current.body.feed(body)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        req = self.current
        if req is not None and req.body is not None:
            req.body.finish()

    # -- serving -------------------------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self._reading_paused and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def _resume_reading(self) -> None:
        if self._reading_paused and not self.closed and len(self.queue) <= MAX_QUEUED:
            self._reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self.closed:
                if not self.queue:
                    self._wakeup = loop.create_future()
                    await self._wakeup
                    self._wakeup = None
                    continue
                req = self.queue.popleft()
                if self._reading_paused and req.body is None:
                    self._resume_reading()
                keep = await handle(self, req)
                if req.body is not None and not req.body.done:
                    self.linger_close()  # answered before the client finished sending
                    return
                if not keep or not req.keep_alive:
                    self.close()
                    return
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("proxy request failed")
            self.close()

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        corked = self._corked
        if corked is not None:
            corked.append(data)
        else:
            self.transport.write(data)  # type: ignore[union-attr]

    def cork(self) -> None:
        """Gather the writes until `uncork`, which sends them together: a response head and
        the body that arrived with it leave in one system call instead of one each."""
        self._corked = []

    def uncork(self) -> None:
        parts, self._corked = self._corked, None
        if parts and not self.closed:
            self.transport.writelines(parts)  # type: ignore[union-attr]

    def answer(self, req: Request, status: int, message: str | None = None, *,
               body: object = None, headers: dict[str, str] | None = None) -> bool:
        """Send a gateway-made response; returns whether the connection may stay open."""
        keep = req.keep_alive and (req.body is None or req.body.done)
        self.write(simple_response(status, message, body=body, headers=headers,
                                   keep_alive=keep, head_only=req.method == "HEAD"))
        return keep

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def linger_close(self, seconds: float = LINGER_SECONDS) -> None:
        """Close after answering a request whose body the client is still sending.

        Closing at once would make the kernel reset the connection over the unread bytes, and
        the client would lose the answer (a 504, a 401...). Instead: stop parsing, half-close our
        side so the client reads the answer and an end of stream, discard what it still sends,
        and close when it does or after `seconds`.
        """
        if self.closed or self.transport is None:
            return
        self.raw = _discard
        if self._reading_paused:
            self._resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        asyncio.get_running_loop().call_later(seconds, self.close)

    def _bad_request(self) -> None:
        self.write(simple_response(400, BAD_REQUEST, keep_alive=False))
        self.close()
