"""`kong.websocket.client` and `kong.websocket.upstream`: what a frame handler may do.

Semantics follow Kong's PDK (the seed `000_…txt`):

- `get_frame()` → `(payload, type, status)`; `type` is one of text, binary, continuation, ping,
  pong, close; `status` is the close code for close frames (None for a close with no status,
  and for every other type). Payloads are `bytes` (a text fragment may end mid-character); for
  a close frame the payload is the reason. `is_final_fragment()` tells whether the frame ends
  its message.
- `set_frame_data(data)` — replace the payload (`str` is encoded as UTF-8); later handlers and
  the peer see it. Control payloads stay within 125 bytes (a longer one raises).
- `set_status(status)` — close frames only; raises `PdkError` on any other frame.
- `drop_frame()` — the frame is not forwarded and later handlers are skipped; raises on a close.
- `close(status, message, peer_status, peer_payload)` — close frames go to both sides at once
  (the first pair to the side this object stands for, the second to the other side; each code
  defaults to 1000 and each payload to empty), the in-flight frame is not forwarded and later
  handlers do not run. The keyword names follow Kong: `upstream_status`/`upstream_payload` on
  the client object, `client_status`/`client_payload` on the upstream object.
- `set_max_payload_size(size)` — the message limit for frames *from* this side (data frames,
  counted over the message being aggregated); 0 restores the default. Usable in
  `ws_handshake` and in frame handlers (it applies from the next frame on).

Frame calls outside a frame handler of that direction raise `PdkError` (wrong phase).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from websockets.exceptions import ProtocolError
from websockets.frames import Close, Opcode

from dp.ws.frames import MAX_CONTROL

if TYPE_CHECKING:
    from dp.ws.frames import FrameReader

FRAME_TYPES: dict[Opcode, str] = {
    Opcode.TEXT: "text", Opcode.BINARY: "binary", Opcode.CONT: "continuation",
    Opcode.PING: "ping", Opcode.PONG: "pong", Opcode.CLOSE: "close",
}
NORMAL_CLOSURE = 1000


class PdkError(Exception):
    """A handler used the PDK wrongly (wrong frame type, wrong phase, invalid value)."""


@dataclass(slots=True)
class InFlight:
    """The frame being dispatched, as handlers see and change it."""

    opcode: Opcode
    fin: bool
    data: bytes  # the payload; for a close frame, the reason
    status: int | None = None  # close frames only
    dropped: bool = False
    changed: bool = False


@dataclass(frozen=True, slots=True)
class CloseRequest:
    """`close(...)` from a handler: what the sender's side and the peer each receive."""

    sender_status: int
    sender_payload: bytes
    peer_status: int
    peer_payload: bytes


def _check_status(status: int) -> int:
    try:
        Close(status, "").check()
    except ProtocolError:
        raise PdkError(f"invalid close status {status!r}") from None
    return status


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else bytes(data)


def _as_reason(data: bytes | str | None) -> bytes:
    """A close reason: UTF-8, and with the 2-byte status within the 125-byte control limit."""
    raw = _as_bytes(data or b"")
    try:
        raw.decode()
    except UnicodeDecodeError:
        raise PdkError("a close reason must be UTF-8") from None
    if len(raw) > MAX_CONTROL - 2:
        raise PdkError("a close reason is at most 123 bytes")
    return raw


class WebSocketSide:
    """The PDK for frames from one side (`kong.websocket.client` or `.upstream`)."""

    def __init__(self, reader: FrameReader, default_max: int | None) -> None:
        self._reader = reader
        self._default_max = default_max
        self.frame: InFlight | None = None
        self.closing: CloseRequest | None = None

    def _current(self) -> InFlight:
        if self.frame is None:
            raise PdkError("no frame in flight for this side (wrong phase)")
        return self.frame

    def get_frame(self) -> tuple[bytes, str, int | None]:
        """The in-flight frame's payload, type and (close frames) status."""
        f = self.frame  # (not via _current(): this runs for every frame a handler sees)
        if f is None:
            f = self._current()
        return f.data, FRAME_TYPES[f.opcode], f.status

    def is_final_fragment(self) -> bool:
        """Whether the in-flight frame ends its message (the FIN bit; always for control
        frames). A tidegate addition: Kong's handlers see whole messages, ours see frames."""
        f = self.frame
        if f is None:
            f = self._current()
        return f.fin

    def set_frame_data(self, data: bytes | str) -> None:
        """Replace the in-flight frame's payload (the reason, for a close frame)."""
        f = self._current()
        if f.opcode is Opcode.CLOSE:
            f.data = _as_reason(data)
            if f.status is None:  # a reason needs a status on the wire
                f.status = NORMAL_CLOSURE
        else:
            raw = _as_bytes(data)
            if f.opcode in (Opcode.PING, Opcode.PONG) and len(raw) > MAX_CONTROL:
                raise PdkError("a ping/pong payload is at most 125 bytes")
            f.data = raw
        f.changed = True

    def set_status(self, status: int) -> None:
        """Set the status of the in-flight close frame; raises on any other frame."""
        f = self._current()
        if f.opcode is not Opcode.CLOSE:
            raise PdkError(f"set_status() needs a close frame, not {FRAME_TYPES[f.opcode]}")
        f.status = _check_status(status)
        f.changed = True

    def drop_frame(self) -> None:
        """Do not forward the in-flight frame; later handlers are skipped. Not for closes."""
        f = self._current()
        if f.opcode is Opcode.CLOSE:
            raise PdkError("a close frame cannot be dropped")
        f.dropped = True

    def _close(self, status: int | None, message: bytes | str | None,
               peer_status: int | None, peer_payload: bytes | str | None) -> None:
        self._current()
        self.closing = CloseRequest(
            _check_status(NORMAL_CLOSURE if status is None else status), _as_reason(message),
            _check_status(NORMAL_CLOSURE if peer_status is None else peer_status),
            _as_reason(peer_payload))

    def set_max_payload_size(self, size: int) -> None:
        """Limit messages from this side to `size` bytes; 0 restores the default."""
        if not isinstance(size, int) or size < 0:
            raise PdkError("size must be a non-negative integer")
        self._reader.max_payload = size or self._default_max


class ClientSide(WebSocketSide):
    """`kong.websocket.client`: frames from the client (`ws_client_frame`)."""

    def close(self, status: int | None = None, message: bytes | str | None = None,
              upstream_status: int | None = None,
              upstream_payload: bytes | str | None = None) -> None:
        """Close both sides: (status, message) to the client, the rest to the upstream."""
        self._close(status, message, upstream_status, upstream_payload)


class UpstreamSide(WebSocketSide):
    """`kong.websocket.upstream`: frames from the upstream (`ws_upstream_frame`)."""

    def close(self, status: int | None = None, message: bytes | str | None = None,
              client_status: int | None = None,
              client_payload: bytes | str | None = None) -> None:
        """Close both sides: (status, message) to the upstream, the rest to the client."""
        self._close(status, message, client_status, client_payload)


class WebSocketPdk:
    """`kong.websocket`: the two sides."""

    def __init__(self, client: ClientSide, upstream: UpstreamSide) -> None:
        self.client = client
        self.upstream = upstream


class WsKong:
    """The `kong` object WebSocket handlers receive (only `kong.websocket` for now)."""

    def __init__(self, client: ClientSide, upstream: UpstreamSide) -> None:
        self.websocket = WebSocketPdk(client, upstream)
