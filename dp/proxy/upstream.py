"""Connections to upstream servers: one asyncio Protocol each, parsed with httptools, kept alive
in a pool per (host, port, TLS) and reused by later requests.

A connection serves one exchange at a time. The proxy writes the request, awaits `head` (status
and headers), then points `sink` at the client so body pieces go straight through as they
arrive; `done` resolves at the end of the response. A read timeout is measured between reads:
a slow but steady stream is fine, a silent server is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable

import httptools

Key = tuple[str, int, bool]


class UpstreamTimeout(Exception):
    """The upstream did not answer (or went silent) within the read timeout, or did not take
    what we sent within the write timeout."""


class UpstreamClosed(ConnectionError):
    """The upstream closed the connection or sent something that is not HTTP."""


class UpstreamConnection(asyncio.Protocol):
    """One connection to an upstream server."""

    def __init__(self, key: Key) -> None:
        self.key = key
        # Asked once: on Python 3.11 every get_running_loop() is a getpid() system call.
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._reset()
        self._write_ready: asyncio.Future[None] | None = None
        self.on_pause_writing: Callable[[], None] | None = None
        self.on_resume_writing: Callable[[], None] | None = None
        self.raw: Callable[[bytes], None] | None = None  # set while relaying an upgrade
        self.on_lost: Callable[[], None] | None = None
        self.upgraded = False  # a 101 arrived: the bytes that follow are not HTTP
        self.leftover = b""  # bytes after a 101 response's head

    def _reset(self) -> None:
        self.head: asyncio.Future[None] | None = None
        self.done: asyncio.Future[None] | None = None
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.sink: Callable[[bytes], None] | None = None
        self.pending: list[bytes] = []
        self.complete = False
        self.keep_alive = False
        self.got_bytes = False
        self.framed = False  # the response has a length or is chunked
        self.chunked = False
        self.head_only = False
        self.timeout = 0.0
        self.last_rx = 0.0
        self.timer: asyncio.TimerHandle | None = None

    # -- exchange ------------------------------------------------------------------------

    def begin(self, read_timeout: float, head_only: bool = False) -> None:
        """Prepare for one response (call before writing the request)."""
        self._reset()
        loop = self._loop
        self.head = loop.create_future()
        self.done = loop.create_future()
        self.head_only = head_only
        self.timeout = read_timeout
        self.last_rx = loop.time()
        self.timer = loop.call_at(self.last_rx + read_timeout, self._check_timeout)

    def write(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until the upstream takes more data (back-pressure); after `timeout` seconds
        without progress (the service's write_timeout) raise UpstreamTimeout."""
        ready = self._write_ready
        if ready is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(ready), timeout)
        except TimeoutError:
            raise UpstreamTimeout("the upstream stopped reading the request") from None

    def _check_timeout(self) -> None:
        loop = self._loop
        remaining = self.last_rx + self.timeout - loop.time()
        if remaining > 0.001:
            self.timer = loop.call_at(self.last_rx + self.timeout, self._check_timeout)
            return
        self.timer = None
        self._fail(UpstreamTimeout())
        self.close()

    def _fail(self, exc: Exception) -> None:
        for fut in (self.head, self.done):
            if fut is not None and not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved by whoever awaits; no "never retrieved" noise
                break

    def _finish(self) -> None:
        self.complete = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.head is not None and not self.head.done():
            self.head.set_result(None)
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and not self.head_only

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.raw is not None:
            self.raw(data)
            return
        if self.upgraded:  # after a 101, before the relay took over
            self.leftover += data
            return
        self.got_bytes = True
        self.last_rx = self._loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # 101: the relay takes over from here; hold what follows until it does.
            self.upgraded = True
            self.leftover = data[exc.args[0]:]
            self.pause_reading()
        except httptools.HttpParserError as exc:
            self._fail(UpstreamClosed(f"invalid response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.on_lost is not None:
            self.on_lost()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.head is not None and self.head.done() and not self.framed and not self.complete:
            self.keep_alive = False
            self._finish()  # a body delimited by the end of the connection
            return
        self._fail(UpstreamClosed("upstream closed the connection"))

    def pause_writing(self) -> None:
        self._write_ready = self._loop.create_future()
        if self.on_pause_writing is not None:
            self.on_pause_writing()

    def resume_writing(self) -> None:
        ready, self._write_ready = self._write_ready, None
        if ready is not None and not ready.done():
            ready.set_result(None)
        if self.on_resume_writing is not None:
            self.on_resume_writing()

    # -- httptools callbacks -------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        for name, value in self.headers:
            lname = name.lower()
            if lname == b"content-length":
                self.framed = True
            elif lname == b"transfer-encoding" and b"chunked" in value.lower():
                self.framed = self.chunked = True
        if self.head_only or self.status in (204, 304) or 100 <= self.status < 200:
            self.framed = True
        if self.head is not None and not self.head.done():
            self.head.set_result(None)
        if self.head_only:
            self.keep_alive = False  # the parser would wait for a body HEAD never gets
            self._finish()

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:
            self.sink(body)
        else:
            self.pending.append(body)

    def on_message_complete(self) -> None:
        if not self.head_only:
            self.keep_alive = self.parser.should_keep_alive()
            self._finish()

    def attach(self, sink: Callable[[bytes], None]) -> None:
        """Send the body to `sink` from now on (what arrived before goes first)."""
        for piece in self.pending:
            sink(piece)
        self.pending.clear()
        self.sink = sink

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()


class Pool:
    """Idle keep-alive connections per (host, port, tls), reused newest first."""

    def __init__(self, max_idle: int = 256, idle_timeout: float = 60.0) -> None:
        self.idle: dict[Key, list[UpstreamConnection]] = {}
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._sweeper: asyncio.Task[None] | None = None

    async def acquire(self, host: str, port: int, tls: ssl.SSLContext | None,
                      server_hostname: str | None, timeout: float, reuse: bool = True
                      ) -> tuple[UpstreamConnection, bool]:
        """A connection (and whether it was reused). Raises TimeoutError or OSError."""
        key = (host, port, tls is not None)
        idle = self.idle.get(key) if reuse else None
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn, True
        loop = asyncio.get_running_loop()
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep())
        async with asyncio.timeout(timeout):
            _, conn = await loop.create_connection(
                lambda: UpstreamConnection(key), host, port, ssl=tls,
                server_hostname=server_hostname if tls else None)
        return conn, False

    def release(self, conn: UpstreamConnection) -> None:
        conn.sink = None
        conn.on_pause_writing = conn.on_resume_writing = None
        if not conn.reusable():
            conn.close()
            return
        idle = self.idle.setdefault(conn.key, [])
        if len(idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, self.idle_timeout))
            cutoff = time.monotonic() - self.idle_timeout
            for key, idle in list(self.idle.items()):
                keep = [c for c in idle if not c.closed and c.idle_since >= cutoff]
                for c in idle:
                    if c not in keep:
                        c.close()
                self.idle[key] = keep

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for idle in self.idle.values():
            for c in idle:
                with contextlib.suppress(Exception):
                    c.close()
        self.idle.clear()
