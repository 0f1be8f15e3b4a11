"""A client request as the proxy holds it, and its streamed body.

The head is parsed by httptools into a `Request`; the body arrives in pieces into a `BodyStream`
that the forwarding side reads. The stream pauses the client socket when too much is buffered
and resumes it once the upstream side caught up (back-pressure), so a large upload never sits
whole in memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class BodyStream:
    """Body chunks in order; `read()` returns b"" at the end."""

    __slots__ = ("_buffered", "_chunks", "_pause", "_paused", "_resume", "_waiter", "done")

    def __init__(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._pause, self._resume = pause, resume
        self._paused = False
        self.done = False

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self._pause()
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes:
        while not self._chunks:
            if self.done:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._paused and self._buffered < LOW_WATER:
            self._paused = False
            self._resume()
        return data

    async def read_all(self, limit: int = 8 * 1024 * 1024) -> bytes:
        parts = []
        size = 0
        while chunk := await self.read():
            size += len(chunk)
            if size > limit:
                raise ValueError("request body too large")
            parts.append(chunk)
        return b"".join(parts)

    def abort(self) -> None:
        self.done = True
        self._chunks.clear()
        self._wake()


class Request:
    """The parsed head of one client request plus its body stream."""

    __slots__ = ("body", "has_body", "headers", "hmap", "host", "keep_alive", "method",
                 "path", "query", "set_cookie", "upgrade", "url", "version")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.hmap: dict[str, str] = {}
        self.method = "GET"
        self.path = "/"
        self.query = ""
        self.host = ""
        self.version = "1.1"
        self.keep_alive = True
        self.upgrade = False
        self.has_body = False
        self.body: BodyStream | None = None
        self.set_cookie: str | None = None  # a hash_on cookie the balancer generated

    def index_headers(self) -> None:
        """Lower-case name → value (repeated headers joined with ', ')."""
        hmap: dict[str, str] = {}
        for name, value in self.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            prev = hmap.get(key)
            hmap[key] = text if prev is None else f"{prev}, {text}"
        self.hmap = hmap
        self.host = hmap.get("host", "")
