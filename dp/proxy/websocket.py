"""One proxied WebSocket connection: the sockets around a `FramePipeline`.

The pipeline (dp/ws/) decides everything about frames; this module only moves bytes and time:

- bytes read from either socket are fed to the pipeline, and what it produced is written out
  at once — the transports' own buffers are the only output buffers;
- back-pressure: while the client's socket does not take our writes, the upstream is not read,
  and the other way round (the same hooks the HTTP proxy uses), so a slow reader never makes
  the proxy buffer more than a socket buffer plus one frame in progress;
- timers: an idle timeout (no bytes either way for the service's `read_timeout`) closes both
  sides with 1001; once a close is under way, the other side has `CLOSE_TIMEOUT` seconds to
  answer before both sockets are closed anyway;
- metrics: frames read from each side are counted by the pipeline and reported to dp/metrics
  in batches (at least every `REPORT_EVERY` seconds, and at the end), not per frame; the close
  code the client got is counted once (1006 if it got none);
- a socket that drops tells the pipeline, which sends the other side 1001;
- `go_away()` (graceful shutdown) sends both sides 1001 and waits for their answers, bounded
  by the same close timeout.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

from dp import metrics
from dp.ws import FramePipeline

if TYPE_CHECKING:
    from dp.proxy.connection import ClientConnection
    from dp.proxy.upstream import UpstreamConnection

CLOSE_TIMEOUT: Final = 5.0
REPORT_EVERY: Final = 10.0
ABNORMAL: Final = 1006  # the client got no close frame
SHUTDOWN_REASON: Final = "server shutting down"
IDLE_REASON: Final = "idle timeout"


class WebSocketPair:
    """Relay one client ⇄ upstream WebSocket through `pipeline` until it is done."""

    def __init__(self, conn: ClientConnection, upc: UpstreamConnection,
                 pipeline: FramePipeline, idle_timeout: float,
                 route: dict[str, Any] | None = None, service: dict[str, Any] | None = None
                 ) -> None:
        self.conn = conn
        self.upc = upc
        self.pipeline = pipeline
        self.idle_timeout = idle_timeout
        self.route, self.service = route, service
        self._reported = (0, 0)  # frames from (client, upstream) already counted
        self._loop = asyncio.get_running_loop()
        self._finished: asyncio.Future[None] = self._loop.create_future()
        self._last = self._loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        """Wire the sockets to the pipeline and wait until the pair has ended."""
        conn, upc = self.conn, self.upc
        transport = conn.transport
        assert transport is not None
        if upc.timer is not None:  # the handshake's read timeout; idleness is ours now
            upc.timer.cancel()
            upc.timer = None
        conn.upstream = upc  # client slow → upstream reads paused (ClientConnection)
        upc.on_pause_writing = transport.pause_reading  # upstream slow → client reads paused
        upc.on_resume_writing = transport.resume_reading
        conn.on_lost, upc.on_lost = self._client_lost, self._upstream_lost
        conn.raw, upc.raw = self._from_client, self._from_upstream
        servers = conn.server.websockets
        servers.add(self)
        try:
            if upc.leftover:
                self._from_upstream(upc.leftover)
            if conn.leftover:
                self._from_client(conn.leftover)
            if not self._finished.done():
                transport.resume_reading()
                upc.resume_reading()
                self._idle_timer = self._loop.call_at(self._next_check(), self._check_idle)
            await self._finished
        finally:
            self._report()
            code = self.pipeline.client.close_code
            metrics.count_ws_close(self.route, self.service, code or ABNORMAL)
            servers.discard(self)
            for timer in (self._idle_timer, self._close_timer):
                if timer is not None:
                    timer.cancel()
            conn.upstream = conn.on_lost = upc.on_lost = None
            conn.close()
            upc.close()

    def go_away(self, reason: str = SHUTDOWN_REASON) -> None:
        """Close both sides with 1001 (shutdown), waiting up to CLOSE_TIMEOUT for answers."""
        self.pipeline.go_away(reason=reason)
        self._flush()

    # -- input ---------------------------------------------------------------------------

    def _from_client(self, data: bytes) -> None:
        self._last = self._loop.time()
        self.pipeline.receive_client(data)
        self._flush()

    def _from_upstream(self, data: bytes) -> None:
        self._last = self._loop.time()
        self.pipeline.receive_upstream(data)
        self._flush()

    def _client_lost(self) -> None:
        self.pipeline.receive_client_eof()
        self._flush()
        self._finish()

    def _upstream_lost(self) -> None:
        self.pipeline.receive_upstream_eof()
        self._flush()
        self._finish()

    # -- output --------------------------------------------------------------------------

    def _flush(self) -> None:
        p = self.pipeline
        if p.pending_to_client:
            self.conn.write(p.data_to_client())
        if p.pending_to_upstream:
            data = p.data_to_upstream()
            if not self.upc.closed:
                self.upc.write(data)
        if p.done:
            self._finish()
        elif self._close_timer is None and p.closing:
            self._close_timer = self._loop.call_later(CLOSE_TIMEOUT, self._finish)

    def _finish(self) -> None:
        if not self._finished.done():
            self._finished.set_result(None)

    def _next_check(self) -> float:
        return min(self._last + self.idle_timeout, self._loop.time() + REPORT_EVERY)

    def _check_idle(self) -> None:
        self._report()
        if self._loop.time() < self._last + self.idle_timeout:
            self._idle_timer = self._loop.call_at(self._next_check(), self._check_idle)
            return
        self._idle_timer = None
        self.go_away(IDLE_REASON)

    def _report(self) -> None:
        """Count the frames read since the last report."""
        now = (self.pipeline.client.frames, self.pipeline.upstream.frames)
        for n, before, direction in zip(now, self._reported, (metrics.CLIENT, metrics.UPSTREAM),
                                        strict=True):
            if n > before:
                metrics.count_ws_frames(self.route, self.service, direction, n - before)
        self._reported = now
