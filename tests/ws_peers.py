"""Hand-built WebSocket frames and a parser for what a pipeline wrote, for the ws tests.

Frames are assembled byte by byte here (RFC 6455 §5.2), not with `websockets`, so the tests
do not check the pipeline against the library it is built on; the output side is parsed with
`websockets.frames.Frame.parse`, which also asserts the masking direction.
"""

from __future__ import annotations

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
