"""The WebSocket benchmark's two peers, written for speed rather than generality.

- `EchoServer`: an upgrade handshake, then every client frame is unmasked (websockets' C
  `apply_mask`) and sent back unmasked — a minimal RFC 6455 echo, so the proxies in front of
  it, not the echo, dominate what is measured.
- `run_load`: the load generator. Pre-built masked frames over raw sockets; closed loop (each
  connection keeps one message in flight: maximum throughput) or open loop (messages sent on a
  fixed schedule across the connections: latency at a given rate). Echoes come back in order
  on a connection, so a FIFO of send times gives each round trip.

Both run under uvloop in their own processes (bench/websocket.py starts them).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
import time
from collections import deque
from typing import Any

from websockets.speedups import apply_mask  # type: ignore[import-not-found]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(payload: bytes, *, masked: bool, opcode: int = 1) -> bytes:
    """One final frame; masked (client → server) with a random key, or not."""
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, mask_bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, mask_bit | 127, n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + apply_mask(payload, key)


def message(size: int) -> bytes:
    """A JSON object of exactly `size` bytes (so websocket-validator has something to check)."""
    return b'{"d":"' + b"x" * (size - 8) + b'"}'


# -- the echo server ---------------------------------------------------------------------------

class EchoProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.open = False
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.open:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self._handshake(bytes(self.buf[:end]))
            del self.buf[:end + 4]
        self._frames()

    def _handshake(self, head: bytes) -> None:
        key = b""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                             + b"\r\n\r\n")
        self.open = True

    def _frames(self) -> None:
        buf, out = self.buf, []
        pos = 0
        while len(buf) - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n, at = b1 & 0x7F, pos + 2
            if n == 126:
                if len(buf) - at < 2:
                    break
                n, at = struct.unpack_from("!H", buf, at)[0], at + 2
            elif n == 127:
                if len(buf) - at < 8:
                    break
                n, at = struct.unpack_from("!Q", buf, at)[0], at + 8
            if len(buf) - at < 4 + n:
                break
            key, payload = bytes(buf[at:at + 4]), bytes(buf[at + 4:at + 4 + n])
            pos = at + 4 + n
            out.append(frame(apply_mask(payload, key), masked=False, opcode=b0 & 0x0F))
            if b0 & 0x0F == 8:  # close: echoed, then done
                self.transport.write(b"".join(out))
                self.transport.close()
                return
        del buf[:pos]
        if out:
            self.transport.write(b"".join(out))


async def serve_echo(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# -- the load generator ------------------------------------------------------------------------

class LoadProtocol(asyncio.Protocol):
    """One client connection: counts echoed bytes, one message's worth per round trip."""

    def __init__(self, wire: bytes, echo_len: int, rtts: list[float], closed_loop: bool,
                 host: str = "bench") -> None:
        self.wire, self.echo_len, self.rtts, self.host = wire, echo_len, rtts, host
        self.closed_loop = closed_loop
        self.sent: deque[float] = deque()
        self.got = 0
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.head = b""
        self.transport: Any = None
        self.running = True

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(b"GET /ws HTTP/1.1\r\nHost: " + self.host.encode()
                        + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        b"Sec-WebSocket-Version: 13\r\n\r\n")

    def data_received(self, data: bytes) -> None:
        if not self.ready.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(RuntimeError(self.head[:80].decode()))
                return
            data = self.head[end + 4:]
            self.ready.set_result(None)
        self.got += len(data)
        now = time.perf_counter()
        while self.got >= self.echo_len and self.sent:
            self.got -= self.echo_len
            self.rtts.append(now - self.sent.popleft())
            if self.closed_loop and self.running:
                self.send()

    def send(self) -> None:
        self.sent.append(time.perf_counter())
        self.transport.write(self.wire)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed during the handshake"))


async def open_connections(port: int, count: int, wire: bytes, echo_len: int,
                           rtts: list[float], closed_loop: bool,
                           host: str = "bench") -> list[LoadProtocol]:
    loop = asyncio.get_running_loop()
    conns: list[LoadProtocol] = []
    for _ in range(count):
        _, proto = await loop.create_connection(
            lambda: LoadProtocol(wire, echo_len, rtts, closed_loop, host), "127.0.0.1", port)
        conns.append(proto)
    await asyncio.gather(*(c.ready for c in conns))
    return conns


async def run_load(port: int, connections: int, size: int, duration: float,
                   rate: float | None = None, host: str = "bench") -> dict[str, Any]:
    """Round trips for `duration` seconds; closed loop, or `rate` messages/s in total."""
    payload = message(size)
    wire = frame(payload, masked=True)
    echo_len = len(frame(payload, masked=False))
    rtts: list[float] = []
    conns = await open_connections(port, connections, wire, echo_len, rtts, rate is None, host)
    for c in conns:  # warm-up: one round trip each
        c.send()
    while len(rtts) < len(conns):
        await asyncio.sleep(0.01)
    rtts.clear()
    started = time.perf_counter()
    if rate is None:
        for c in conns:
            c.send()
        await asyncio.sleep(duration)
        for c in conns:
            c.running = False
        elapsed = time.perf_counter() - started
    else:
        await _paced(conns, rate, duration)
        elapsed = duration  # the sending schedule's length (the tail only collects echoes)
    for c in conns:
        c.transport.close()
    return {"round_trips": len(rtts), "elapsed": elapsed, "rtts": rtts}


async def _paced(conns: list[LoadProtocol], rate: float, duration: float) -> None:
    """Send `rate` messages per second, round-robin over the connections, on schedule (a late
    tick sends what it owes, so the rate holds even when the loop is briefly busy)."""
    start = time.perf_counter()
    sent, i = 0, 0
    while (now := time.perf_counter()) - start < duration:
        due = int((now - start) * rate)
        while sent < due:
            conns[i % len(conns)].send()
            sent, i = sent + 1, i + 1
        await asyncio.sleep(0.0005)
    await asyncio.sleep(0.2)  # let the last echoes arrive


async def hold_idle(port: int, count: int) -> list[Any]:
    """`count` open, idle WebSocket connections (for the memory figure)."""
    rtts: list[float] = []
    conns: list[LoadProtocol] = []
    for start in range(0, count, 500):
        conns += await open_connections(port, min(500, count - start), b"", 1, rtts, False)
    return conns
