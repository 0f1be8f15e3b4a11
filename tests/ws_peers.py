"""Hand-built WebSocket frames and a parser for what a pipeline wrote, for the ws tests.

Frames are assembled byte by byte here (RFC 6455 §5.2), not with `websockets`, so the tests
do not check the pipeline against the library it is built on; the output side is parsed with
`websockets.frames.Frame.parse`, which also asserts the masking direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

KEY = b"\x37\xfa\x21\x3d"

TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
PING, PONG, CLOSE = Opcode.PING, Opcode.PONG, Opcode.CLOSE


def raw(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
        key: bytes | None = None) -> bytes:
    """One frame on the wire; masked with `key` when given (frames from a client)."""
    head1 = (0x80 if fin else 0) | (rsv & 7) << 4 | opcode
    mask_bit = 0x80 if key is not None else 0
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", head1, mask_bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", head1, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", head1, mask_bit | 127, n)
    if key is None:
        return head + payload
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def cf(opcode: int, payload: bytes = b"", **kw: object) -> bytes:
    """A frame from the client: masked."""
    return raw(opcode, payload, key=KEY, **kw)  # type: ignore[arg-type]


def uf(opcode: int, payload: bytes = b"", **kw: object) -> bytes:
    """A frame from the upstream: unmasked."""
    return raw(opcode, payload, **kw)  # type: ignore[arg-type]


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def parse(data: bytes, *, masked: bool) -> list[Frame]:
    """Every frame in `data`, parsed by `websockets` (no size limit, no extensions)."""
    stream = StreamReader()
    stream.feed_data(data)
    stream.feed_eof()
    frames = []
    while stream.buffer:
        gen = Frame.parse(stream.read_exact, mask=masked)
        try:
            next(gen)
        except StopIteration as done:
            frames.append(done.value)
        else:  # pragma: no cover - a truncated frame
            raise AssertionError("truncated frame in output")
    return frames


def summary(frames: list[Frame]) -> list[tuple]:
    """Comparable frames: (opcode, fin, payload), close frames as (CLOSE, code)."""
    out: list[tuple] = []
    for f in frames:
        if f.opcode is Opcode.CLOSE:
            out.append((CLOSE, Close.parse(f.data).code) if f.data else (CLOSE, None))
        else:
            out.append((f.opcode, f.fin, bytes(f.data)))
    return out


# -- a raw client over a real socket ----------------------------------------------------------

HANDSHAKE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key


def upgrade_request(path: str, host: str = "localhost", extra: str = "") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {HANDSHAKE_KEY}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


class RawClient:
    """A WebSocket client that sends hand-built bytes and reports every frame it receives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 head: bytes) -> None:
        self.reader, self.writer, self.head = reader, writer, head
        self._stream = StreamReader()

    @classmethod
    async def connect(cls, port: int, path: str = "/", extra: str = "",
                      host: str = "localhost") -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(upgrade_request(path, host, extra))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        return cls(reader, writer, head)

    @property
    def status(self) -> int:
        return int(self.head.split(b" ", 2)[1])

    async def body(self) -> bytes:
        """The body of a non-101 answer (its Content-Length's worth)."""
        for line in self.head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return await asyncio.wait_for(self.reader.readexactly(int(value)), 10)
        raise AssertionError(f"no Content-Length in {self.head!r}")

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def frame(self, timeout: float = 10) -> Frame | None:
        """The next frame from the server, or None at the end of the stream."""
        async with asyncio.timeout(timeout):
            while True:
                if self._stream.buffer:
                    gen = Frame.parse(self._stream.read_exact, mask=False)
                    try:
                        next(gen)
                        while True:  # more bytes needed for this frame
                            data = await self.reader.read(65536)
                            if not data:
                                return None
                            self._stream.feed_data(data)
                            next(gen)
                    except StopIteration as done:
                        return done.value  # type: ignore[no-any-return]
                data = await self.reader.read(65536)
                if not data:
                    return None
                self._stream.feed_data(data)

    async def until_close(self, timeout: float = 10) -> list[Frame]:
        """Frames up to and including the server's close (answered with the same code), or
        up to the end of the stream."""
        frames: list[Frame] = []
        while (f := await self.frame(timeout)) is not None:
            frames.append(f)
            if f.opcode is Opcode.CLOSE:
                with contextlib.suppress(ConnectionError):
                    self.send(cf(CLOSE, bytes(f.data[:2])))
                break
        return frames

    async def eof(self, timeout: float = 10) -> bool:
        """Whether the server closes the TCP connection (after the close handshake)."""
        async with asyncio.timeout(timeout):
            while await self.reader.read(65536):
                pass
        return True

    def close(self) -> None:
        self.writer.close()
