"""Read one direction of a WebSocket connection as individual, validated wire frames.

A proxy must not answer pings or closes itself (the peer answers; doing it twice is
observable), so this is not `websockets`' connection-level protocol but a frame reader of its
own, built for relaying: it parses the header, checks everything RFC 6455 lets a receiver
check, and keeps each frame's bytes exactly as they arrived. A frame that nothing changes is
relayed from its wire bytes — an upstream's frame verbatim (unmasked, as a client requires), a
client's frame re-masked with a key of ours in one pass (`remasked`) — so the common case
costs a header parse and a copy. The payload is unmasked (with `websockets`' C `apply_mask`)
only when something needs to read it: text (UTF-8), close frames, frame handlers.

Checked here:

- framing: reserved bits, reserved opcodes, the mask bit in the right direction, control
  frames fragmented or over 125 bytes → 1002;
- message sequencing: a continuation with no message in progress, or a new text/binary frame
  while one is unfinished → 1002;
- the payload limit, counted over the message being aggregated (data frames only; control
  frames are exempt) → 1009, decided from the header before the payload is buffered;
- UTF-8 of text messages, incrementally across fragments → 1007;
- close payloads: one byte, or a status RFC 6455 forbids on the wire → 1002; a reason that is
  not UTF-8 → 1007.

Errors are raised as `WsError(code, reason)`; after one the reader is dead (the connection
must fail), and further input is ignored.
"""

from __future__ import annotations

import codecs
import os
import struct
from typing import Final

from websockets.exceptions import ProtocolError
from websockets.frames import Close, Opcode
from websockets.speedups import apply_mask  # type: ignore[import-not-found]

PROTOCOL_ERROR: Final = 1002
INVALID_DATA: Final = 1007
MESSAGE_TOO_BIG: Final = 1009
MAX_CONTROL: Final = 125  # RFC 6455 §5.5: control payloads are at most 125 bytes

CONT, TEXT, BINARY = int(Opcode.CONT), int(Opcode.TEXT), int(Opcode.BINARY)
CLOSE, PING, PONG = int(Opcode.CLOSE), int(Opcode.PING), int(Opcode.PONG)
_KNOWN = frozenset((CONT, TEXT, BINARY, CLOSE, PING, PONG))
_utf8_decoder = codecs.getincrementaldecoder("utf-8")
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


class WsError(Exception):
    """A reason to fail the connection: the close `code` and `reason` to send to the sender."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def parse_close(data: bytes) -> Close:
    """Validate a close payload (RFC 6455 §5.5.1, §7.4) and return its code and reason.

    An empty payload is legal and means "no status" (1005, never sent on the wire itself).
    """
    try:
        return Close.parse(data)
    except ProtocolError as exc:
        raise WsError(PROTOCOL_ERROR, str(exc)) from None
    except UnicodeDecodeError:
        raise WsError(INVALID_DATA, "invalid UTF-8 in close reason") from None


def _check_utf8(data: bytes) -> None:
    try:
        data.decode()
    except UnicodeDecodeError:
        raise WsError(INVALID_DATA, "invalid UTF-8 in text message") from None


class WireFrame:
    """One frame as it arrived: `raw` (header and payload, masked if it was) and, on demand,
    the unmasked `payload`."""

    __slots__ = ("_payload", "fin", "header", "opcode", "raw")

    def __init__(self, opcode: int, fin: bool, raw: bytes, header: int) -> None:
        self.opcode, self.fin, self.raw, self.header = opcode, fin, raw, header
        self._payload: bytes | None = None

    @property
    def payload(self) -> bytes:
        if self._payload is None:
            raw, header = self.raw, self.header
            if raw[1] & 0x80:  # masked: the key is the header's last 4 bytes
                self._payload = apply_mask(raw[header:], raw[header - 4:header])
            else:
                self._payload = raw[header:]
        return self._payload


class MaskKeys:
    """Masking keys from the OS's strong random source, fetched 4 KiB at a time."""

    __slots__ = ("_pool", "_pos")

    def __init__(self) -> None:
        self._pool, self._pos = b"", 0

    def next(self) -> bytes:
        if self._pos >= len(self._pool):
            self._pool, self._pos = os.urandom(4096), 0
        key = self._pool[self._pos:self._pos + 4]
        self._pos += 4
        return key


MASK_KEYS = MaskKeys()


def remasked(frame: WireFrame) -> bytes:
    """A client's frame masked with a key of ours, for the upstream: the sender's key was its
    own choice, and RFC 6455 §5.3 wants the key unpredictable to whoever wrote the payload.
    One pass: the payload is XORed with (old key XOR new key)."""
    raw, header = frame.raw, frame.header
    key = MASK_KEYS.next()
    delta = (int.from_bytes(raw[header - 4:header], "big")
             ^ int.from_bytes(key, "big")).to_bytes(4, "big")
    return raw[:header - 4] + key + apply_mask(raw[header:], delta)


class FrameReader:
    """Bytes of one direction in, validated `WireFrame`s out (one per wire frame).

    `masked` is True for frames from a client (they must be masked, RFC 6455 §5.1) and False
    for frames from an upstream server. `max_payload` caps a message (0 or None: no cap).
    """

    def __init__(self, masked: bool, max_payload: int | None = None) -> None:
        self.masked = masked
        self.max_payload = max_payload or None
        self._buf = bytearray()
        self._pos = 0
        self._message: int | None = None  # opcode of the message in progress
        self._size = 0  # payload bytes of the message in progress
        self._utf8: codecs.IncrementalDecoder | None = None
        self.failed = False

    @property
    def buffered(self) -> int:
        """Bytes received but not yet surfaced as a frame (at most one frame's worth)."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        """Add received bytes; call `next_frame()` until it returns None."""
        if not self.failed:
            if self._pos:  # drop what was consumed: what stays is one partial frame at most
                del self._buf[:self._pos]
                self._pos = 0
            self._buf += data

    def next_frame(self) -> WireFrame | None:
        """The next complete, validated frame, or None if more bytes are needed.

        Raises `WsError` when the sender broke the protocol or the limit.
        """
        if self.failed:
            return None
        try:
            frame = self._parse()
            if frame is not None:
                self._check(frame)
            return frame
        except WsError:
            self.failed = True
            self._buf.clear()
            self._pos = 0
            raise

    def _parse(self) -> WireFrame | None:
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < 2:
            return None
        b0, b1 = buf[pos], buf[pos + 1]
        opcode, n, header = b0 & 0x0F, b1 & 0x7F, 2
        if b0 & 0x70:
            raise WsError(PROTOCOL_ERROR, "reserved bits must be 0")
        if opcode not in _KNOWN:
            raise WsError(PROTOCOL_ERROR, "invalid opcode")
        if bool(b1 & 0x80) is not self.masked:
            raise WsError(PROTOCOL_ERROR, "incorrect masking")
        if opcode >= CLOSE:
            if not b0 & 0x80:
                raise WsError(PROTOCOL_ERROR, "fragmented control frame")
            if n > MAX_CONTROL:
                raise WsError(PROTOCOL_ERROR, "control frame too long")
        elif n == 126:
            if avail < 4:
                return None
            n, header = _U16.unpack_from(buf, pos + 2)[0], 4
        elif n == 127:
            if avail < 10:
                return None
            n, header = _U64.unpack_from(buf, pos + 2)[0], 10
        if opcode < CLOSE and self.max_payload is not None:
            before = self._size if opcode == CONT else 0
            if before + n > self.max_payload:  # judged before the payload is buffered
                raise WsError(MESSAGE_TOO_BIG, "message too big")
        if self.masked:
            header += 4
        end = pos + header + n
        if len(buf) < end:
            return None
        self._pos = end
        return WireFrame(opcode, bool(b0 & 0x80), bytes(buf[pos:end]), header)

    def _check(self, frame: WireFrame) -> None:
        """Sequencing, aggregated size, UTF-8 and close-payload checks for one frame."""
        opcode = frame.opcode
        if opcode >= CLOSE:
            if opcode == CLOSE:
                parse_close(frame.payload)
            return
        if opcode == CONT:
            if self._message is None:
                raise WsError(PROTOCOL_ERROR, "unexpected continuation frame")
            self._size += len(frame.raw) - frame.header
        else:
            if self._message is not None:
                raise WsError(PROTOCOL_ERROR, "expected a continuation frame")
            if frame.fin:  # a whole message in one frame: the common case, no state to keep
                if opcode == TEXT:
                    _check_utf8(frame.payload)
                return
            self._message, self._size = opcode, len(frame.raw) - frame.header
            self._utf8 = _utf8_decoder() if opcode == TEXT else None
        if self._utf8 is not None:
            try:
                self._utf8.decode(frame.payload, frame.fin)
            except UnicodeDecodeError:
                raise WsError(INVALID_DATA, "invalid UTF-8 in text message") from None
        if frame.fin:
            self._message, self._utf8 = None, None

    @property
    def in_message(self) -> bool:
        """True while a fragmented message is unfinished."""
        return self._message is not None

    @property
    def message_opcode(self) -> int | None:
        """TEXT or BINARY for the message in progress (continuations report their message)."""
        return self._message
