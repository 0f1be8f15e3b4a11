"""`FramePipeline`: the frame-by-frame relay between one client and its upstream, without I/O.

The I/O layer feeds whatever it reads (`receive_client`, `receive_upstream`, `..._eof`) and
writes out what the pipeline produced (`data_to_client`, `data_to_upstream`); once `done` is
true, it flushes both and closes the connections. Per frame, in order:

1. the side's `FrameReader` parses and validates it (a violation fails the connection: the
   sender gets the code — 1002, 1007 or 1009 — and the peer 1001 "going away");
2. the side's handlers (`ws_client_frame` / `ws_upstream_frame`) run in priority order, each
   as `fn(kong, conf)`; with no handler on a side this step is skipped entirely (fast path);
   a handler that raises closes both sides with 1011 (logged once per connection);
3. the frame goes to the other side: from its wire bytes when no handler changed it (an
   upstream's verbatim; a client's re-masked with our own key in one pass, since the proxy
   is the upstream's client, RFC 6455 §5.3), otherwise re-serialized.

Pings and pongs are relayed, not answered: the peer answers, as it would without the proxy.
A close from one side is relayed to the other; after both sides' closes went through, the pair
is done. Frames a side sends after its own close are ignored.

Back-pressure: the pipeline holds at most one partial frame per direction as input
(`buffered_from_*`) and whatever output the I/O layer has not collected yet (`pending_to_*`);
the I/O layer pauses reading a side while the other side's output is high.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from websockets.frames import Close, Frame, Opcode

from dp.ws.frames import CLOSE, FrameReader, WireFrame, WsError, parse_close, remasked
from dp.ws.pdk import ClientSide, CloseRequest, InFlight, UpstreamSide, WebSocketSide, WsKong

log = logging.getLogger("tidegate.ws")

MiB: Final = 1024 * 1024
DEFAULT_CLIENT_MAX: Final = MiB  # Kong's defaults, as in websocket-size-limit
DEFAULT_UPSTREAM_MAX: Final = 16 * MiB
GOING_AWAY: Final = 1001
INTERNAL_ERROR: Final = 1011


@dataclass(frozen=True, slots=True)
class Handler:
    """One plugin's frame handler on one direction: `fn(kong, conf)`.

    `kong` is the plugin's own PDK object for this connection (the one its `ws_handshake`
    saw, carrying `kong.websocket`); without one the pipeline's bare `WsKong` is passed.
    """

    fn: Callable[[Any, Any], None]
    conf: Any = None
    priority: int = 0
    name: str = ""
    kong: Any = None


def _ordered(handlers: Iterable[Handler]) -> list[Handler]:
    """Highest priority first, then by name (the HTTP plugin runtime's order)."""
    return sorted(handlers, key=lambda h: (-h.priority, h.name))


def close_frame(code: int, reason: bytes | str = b"") -> Frame:
    """A close frame with `code` and a reason cut to fit a control frame."""
    raw = reason.encode() if isinstance(reason, str) else reason
    raw = raw[:123].decode(errors="ignore").encode()  # never cut inside a character
    return Frame(Opcode.CLOSE, Close(code, "").serialize() + raw)


@dataclass(slots=True)
class _Side:
    """One end of the pair: how to read from it and what is waiting to be written to it."""

    name: str
    reader: FrameReader
    pdk: WebSocketSide
    handlers: list[Handler]
    mask_out: bool  # frames written to this side must be masked
    out: list[bytes] = field(default_factory=list)
    pending: int = 0
    close_received: bool = False  # this side sent its close (or went away)
    close_sent: bool = False  # a close was written to this side
    close_code: int | None = None  # the code of that close (1005: it had none)
    frames: int = 0  # frames read from this side

    def write(self, frame: Frame) -> None:
        """A frame the pipeline made or changed, serialized for this side."""
        self._put(frame.serialize(mask=self.mask_out), frame.opcode, bytes(frame.data))

    def relay(self, frame: WireFrame) -> None:
        """A frame from the other side, as it arrived (masked with our key toward an
        upstream)."""
        raw = remasked(frame) if self.mask_out else frame.raw
        self.out.append(raw)
        self.pending += len(raw)
        if frame.opcode == CLOSE:
            self._put(b"", CLOSE, frame.payload)

    def _put(self, data: bytes, opcode: int, payload: bytes) -> None:
        if data:
            self.out.append(data)
            self.pending += len(data)
        if opcode == CLOSE:
            self.close_sent = True
            self.close_code = int.from_bytes(payload[:2], "big") if payload else 1005

    def take(self) -> bytes:
        data = b"".join(self.out)
        self.out.clear()
        self.pending = 0
        return data


class FramePipeline:
    """Relay frames between a client and an upstream, running the frame handlers."""

    def __init__(self, client_handlers: Iterable[Handler] = (),
                 upstream_handlers: Iterable[Handler] = (), *,
                 client_max_payload: int | None = DEFAULT_CLIENT_MAX,
                 upstream_max_payload: int | None = DEFAULT_UPSTREAM_MAX) -> None:
        c_reader = FrameReader(masked=True, max_payload=client_max_payload)
        u_reader = FrameReader(masked=False, max_payload=upstream_max_payload)
        c_pdk = ClientSide(c_reader, client_max_payload)
        u_pdk = UpstreamSide(u_reader, upstream_max_payload)
        self.kong = WsKong(c_pdk, u_pdk)
        self.client = _Side("client", c_reader, c_pdk, _ordered(client_handlers), False)
        self.upstream = _Side("upstream", u_reader, u_pdk, _ordered(upstream_handlers), True)
        self.done = False
        self.going_away = False  # we sent both sides a close; waiting for their answers
        self.error: str | None = None  # why the pair failed, if it did

    def set_handlers(self, client_handlers: Iterable[Handler],
                     upstream_handlers: Iterable[Handler]) -> None:
        """Install the frame handlers (known only after the handshake phase chose configs)."""
        self.client.handlers = _ordered(client_handlers)
        self.upstream.handlers = _ordered(upstream_handlers)

    def go_away(self, code: int = GOING_AWAY, reason: str = "") -> None:
        """Start closing both sides ourselves (shutdown, idle timeout): each side gets a close
        frame; from then on their data frames are discarded, and once both answered with
        their close the pair is done. The I/O layer bounds the wait."""
        if self.done or self.going_away:
            return
        self.going_away = True
        for side in (self.client, self.upstream):
            if not side.close_sent:
                side.write(close_frame(code, reason))
        self.done = self.client.close_received and self.upstream.close_received

    # -- input ---------------------------------------------------------------------------

    def receive_client(self, data: bytes) -> None:
        """Bytes read from the client."""
        self._receive(self.client, self.upstream, data)

    def receive_upstream(self, data: bytes) -> None:
        """Bytes read from the upstream."""
        self._receive(self.upstream, self.client, data)

    def receive_client_eof(self) -> None:
        """The client's TCP stream ended."""
        self._eof(self.client, self.upstream)

    def receive_upstream_eof(self) -> None:
        """The upstream's TCP stream ended."""
        self._eof(self.upstream, self.client)

    # -- output --------------------------------------------------------------------------

    def data_to_client(self) -> bytes:
        """Everything to write to the client now (the buffer is handed over and emptied)."""
        return self.client.take()

    def data_to_upstream(self) -> bytes:
        """Everything to write to the upstream now (handed over and emptied)."""
        return self.upstream.take()

    @property
    def pending_to_client(self) -> int:
        return self.client.pending

    @property
    def pending_to_upstream(self) -> int:
        return self.upstream.pending

    @property
    def closing(self) -> bool:
        """A close is under way on either side, and the pair is not done yet."""
        c, u = self.client, self.upstream
        return not self.done and (c.close_received or u.close_received
                                  or c.close_sent or u.close_sent)

    @property
    def buffered_from_client(self) -> int:
        return self.client.reader.buffered

    @property
    def buffered_from_upstream(self) -> int:
        return self.upstream.reader.buffered

    # -- the relay -----------------------------------------------------------------------

    def _receive(self, src: _Side, dst: _Side, data: bytes) -> None:
        if self.done or src.close_received:
            return
        src.reader.feed(data)
        while not self.done and not src.close_received:
            try:
                frame = src.reader.next_frame()
            except WsError as exc:
                self._fail(src, exc.code, exc.reason, GOING_AWAY)
                return
            if frame is None:
                return
            src.frames += 1
            if self.going_away:
                self._answered(src, frame)
                continue
            if src.handlers:
                changed = self._dispatch(src, dst, frame)
                if changed is not None:
                    self._forward(src, dst, changed)
                continue
            self._forward(src, dst, frame)

    def _forward(self, src: _Side, dst: _Side, frame: WireFrame | Frame) -> None:
        if isinstance(frame, WireFrame):
            dst.relay(frame)
        else:
            dst.write(frame)
        if frame.opcode == CLOSE:
            src.close_received = True
            self.done = self.client.close_received and self.upstream.close_received

    def _answered(self, src: _Side, frame: WireFrame) -> None:
        """While going away: only the side's close matters (its answer to ours)."""
        if frame.opcode == CLOSE:
            src.close_received = True
            self.done = self.client.close_received and self.upstream.close_received

    def _eof(self, src: _Side, dst: _Side) -> None:
        """A side vanished: the other one hears 1001 unless the close handshake covered it."""
        if self.done:
            return
        src.close_received = True
        if not dst.close_sent:
            dst.write(close_frame(GOING_AWAY, f"{src.name} went away"))
        self.done = True

    def _fail(self, sender: _Side, code: int, reason: str, peer_code: int) -> None:
        """Fail the connection: `code` to the side at fault, `peer_code` to the other side."""
        peer = self.upstream if sender is self.client else self.client
        self.error = f"{sender.name}: {code} {reason}"
        if not sender.close_sent:
            sender.write(close_frame(code, reason))
        if not peer.close_sent:
            peer.write(close_frame(peer_code))
        self.done = True

    # -- handlers ------------------------------------------------------------------------

    def _dispatch(self, src: _Side, dst: _Side, frame: WireFrame) -> WireFrame | Frame | None:
        """Run `src`'s handlers on `frame`; the frame to forward, or None (dropped/closed)."""
        flight = _in_flight(frame)
        pdk = src.pdk
        pdk.frame = flight
        try:
            for handler in src.handlers:
                handler.fn(handler.kong or self.kong, handler.conf)
                if flight.dropped or pdk.closing is not None:
                    break
        except Exception:
            self._handler_failed(src)
            return None
        finally:
            pdk.frame = None
        if pdk.closing is not None:
            self._close_both(src, dst, pdk.closing)
            return None
        if flight.dropped:
            return None
        return _out_frame(flight) if flight.changed else frame

    def _handler_failed(self, src: _Side) -> None:
        if self.error is None:  # logged once per connection
            log.exception("websocket %s frame handler failed; closing with 1011", src.name)
        self._fail(src, INTERNAL_ERROR, "", INTERNAL_ERROR)

    def _close_both(self, src: _Side, dst: _Side, req: CloseRequest) -> None:
        """A handler's `close(...)`: each side gets its own close frame, then the pair ends."""
        if not src.close_sent:
            src.write(close_frame(req.sender_status, req.sender_payload))
        if not dst.close_sent:
            dst.write(close_frame(req.peer_status, req.peer_payload))
        self.done = True


_OPCODES = {int(op): op for op in Opcode}


def _in_flight(frame: WireFrame) -> InFlight:
    """The handlers' view of a frame; close frames are split into status and reason."""
    data, opcode = frame.payload, _OPCODES[frame.opcode]
    if opcode is not Opcode.CLOSE:
        return InFlight(opcode, frame.fin, data)
    if not data:
        return InFlight(opcode, frame.fin, b"")
    close = parse_close(data)  # already validated by the reader
    return InFlight(opcode, frame.fin, data[2:], int(close.code))


def _out_frame(flight: InFlight) -> Frame:
    """Rebuild a frame that handlers changed."""
    if flight.opcode is Opcode.CLOSE:
        if flight.status is None:
            return Frame(Opcode.CLOSE, b"")
        return close_frame(flight.status, flight.data)
    return Frame(flight.opcode, flight.data, flight.fin)
