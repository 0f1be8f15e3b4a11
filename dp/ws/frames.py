"""Read one direction of a WebSocket connection as individual, validated wire frames.

The sans-I/O `ServerProtocol`/`ClientProtocol` of `websockets` answer pings and echo closes by
themselves, which a proxy must not do (the peer answers; doing it twice is observable), so the
reader uses the layer below them: `websockets.frames.Frame.parse` over a `StreamReader`. That
already handles masking, RSV bits, reserved opcodes and oversized or fragmented control frames.
On top of it `FrameReader` checks what a single frame cannot show:

- message sequencing: a continuation with no message in progress, or a new text/binary frame
  while one is unfinished → 1002;
- the payload limit, counted over the message being aggregated (data frames only; control
  frames are exempt) → 1009, decided from the frame header before the payload is buffered;
- UTF-8 of text messages, incrementally across fragments → 1007;
- close payloads: one byte, or a status RFC 6455 forbids on the wire → 1002; a reason that is
  not UTF-8 → 1007.

Errors are raised as `WsError(code, reason)`; after one the reader is dead (the connection
must fail), and further input is ignored.
"""

from __future__ import annotations

import codecs
from collections.abc import Generator
from typing import Final

from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.frames import CTRL_OPCODES, Close, Frame, Opcode
from websockets.streams import StreamReader

PROTOCOL_ERROR: Final = 1002
INVALID_DATA: Final = 1007
MESSAGE_TOO_BIG: Final = 1009
MAX_CONTROL: Final = 125  # RFC 6455 §5.5: control payloads are at most 125 bytes

_CONTROL_CODES = frozenset(int(op) for op in CTRL_OPCODES)
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


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


class FrameReader:
    """Bytes of one direction in, validated `Frame`s out (one per wire frame).

    `masked` is True for frames from a client (they must be masked, RFC 6455 §5.1) and False
    for frames from an upstream server. `max_payload` caps a message (0 or None: no cap).
    """

    def __init__(self, masked: bool, max_payload: int | None = None) -> None:
        self.masked = masked
        self.max_payload = max_payload or None
        self._stream = StreamReader()
        self._parser: Generator[None, None, Frame] | None = None
        self._head = 0  # first byte of the frame being parsed (its opcode)
        self._message: Opcode | None = None  # opcode of the message in progress
        self._size = 0  # payload bytes of the message in progress
        self._utf8: codecs.IncrementalDecoder | None = None
        self.failed = False

    @property
    def buffered(self) -> int:
        """Bytes received but not yet surfaced as a frame (at most one frame's worth)."""
        return len(self._stream.buffer)

    def feed(self, data: bytes) -> None:
        """Add received bytes; call `next_frame()` until it returns None."""
        if not self.failed:
            self._stream.feed_data(data)

    def next_frame(self) -> Frame | None:
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
            self._stream.discard()
            raise

    def _parse(self) -> Frame | None:
        """Advance the `websockets` frame parser; map its exceptions to close codes."""
        if self._parser is None:
            if not self._stream.buffer:
                return None
            self._head = self._stream.buffer[0]
            self._parser = Frame.parse(self._stream.read_exact, mask=self.masked,
                                       max_size=self._frame_budget(self._head))
        try:
            next(self._parser)
        except StopIteration as done:
            self._parser = None
            return done.value
        except PayloadTooBig:
            if self._head & 0x0F in _CONTROL_CODES:
                raise WsError(PROTOCOL_ERROR, "control frame too long") from None
            raise WsError(MESSAGE_TOO_BIG, "message too big") from None
        except ProtocolError as exc:
            raise WsError(PROTOCOL_ERROR, str(exc)) from None
        return None

    def _frame_budget(self, head1: int) -> int | None:
        """The largest payload the next frame may announce, judged from its first byte.

        Control frames get 125 so that a huge announced ping fails before it is buffered;
        data frames get what is left of the message's budget.
        """
        if head1 & 0x0F in _CONTROL_CODES:
            return MAX_CONTROL
        if self.max_payload is None:
            return None
        size = self._size if head1 & 0x0F == Opcode.CONT else 0
        return max(self.max_payload - size, 0)

    def _check(self, frame: Frame) -> None:
        """Sequencing, aggregated size, UTF-8 and close-payload checks for one frame."""
        opcode = frame.opcode
        if opcode is Opcode.CLOSE:
            parse_close(bytes(frame.data))
            return
        if opcode in CTRL_OPCODES:
            return
        if opcode is Opcode.CONT:
            if self._message is None:
                raise WsError(PROTOCOL_ERROR, "unexpected continuation frame")
            self._size += len(frame.data)
        else:
            if self._message is not None:
                raise WsError(PROTOCOL_ERROR, "expected a continuation frame")
            self._message, self._size = opcode, len(frame.data)
            self._utf8 = _utf8_decoder() if opcode is Opcode.TEXT else None
        if self.max_payload is not None and self._size > self.max_payload:
            raise WsError(MESSAGE_TOO_BIG, "message too big")
        if self._utf8 is not None:
            try:
                self._utf8.decode(frame.data, frame.fin)
            except UnicodeDecodeError:
                raise WsError(INVALID_DATA, "invalid UTF-8 in text message") from None
        if frame.fin:
            self._message, self._utf8 = None, None

    @property
    def in_message(self) -> bool:
        """True while a fragmented message is unfinished."""
        return self._message is not None

    @property
    def message_opcode(self) -> Opcode | None:
        """TEXT or BINARY for the message in progress (continuations report their message)."""
        return self._message
