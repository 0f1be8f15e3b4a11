"""WebSocket conformance through the data plane: every case runs direct to a real echo server
and through a real proxy, and the client must observe the same thing both ways.

Frames are built by hand (tests/ws_peers.py), masked as a client must — and unmasked, as a
broken client might. The echo server is `websockets`' own server (strict RFC 6455), so
"the same as direct" means "what a compliant server does".

What the client observes: the messages echoed (in order), the pongs it got (as a multiset:
a pong may overtake an echo), and the close code it finally received.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Close, Frame, Opcode

from tests.dp_fixtures import Proxy
from tests.ws_peers import BINARY, CLOSE, CONT, PING, PONG, TEXT, RawClient, cf, close_payload, raw

MAX = 2**20  # the echo server's max_size, and the proxy's default client_max_payload


async def _echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


@dataclass
class Sites:
    direct: int
    proxied: int


@pytest.fixture(scope="module")
async def sites() -> AsyncIterator[Sites]:
    async with serve(_echo, "127.0.0.1", 0, compression=None, max_size=MAX) as server:
        port = server.sockets[0].getsockname()[1]
        proxy = await Proxy().start()
        proxy.load({"services": [{"name": "echo", "url": f"ws://127.0.0.1:{port}",
                                  "routes": [{"name": "echo", "paths": ["/"],
                                              "protocols": ["ws"]}]}]})
        yield Sites(port, proxy.port)
        await proxy.stop()


END = cf(TEXT, b"END")  # a last message: its echo means the server has handled all before it
ECHOED_END = (TEXT, True, b"END")


async def observe(port: int, wire: bytes) -> tuple[list[tuple], list[bytes], int | None]:
    """Send `wire` and a last message; once its echo is back, close normally. What the client
    received until the server's close: (messages, pongs, close code)."""
    client = await RawClient.connect(port, "/")
    assert client.status == 101, client.head
    client.send(wire + END)
    messages: list[tuple] = []
    pongs: list[bytes] = []
    code: int | None = None
    try:
        while (frame := await client.frame()) is not None:
            if frame.opcode is PONG:
                pongs.append(bytes(frame.data))
            elif frame.opcode is CLOSE:
                code = Close.parse(bytes(frame.data)).code if frame.data else None
                break
            else:
                messages.append((frame.opcode, frame.fin, bytes(frame.data)))
                if bytes(frame.data) == b"END":
                    client.send(cf(CLOSE, close_payload(1000)))
    finally:
        client.close()
    return messages, sorted(pongs), code


SNOWMAN = "☃".encode()

CASES: dict[str, bytes] = {
    # framing: the three payload-length encodings and their edges
    "text": cf(TEXT, b"hello"),
    "binary": cf(BINARY, bytes(range(256))),
    "empty text": cf(TEXT, b""),
    "length 125": cf(BINARY, b"a" * 125),
    "length 126": cf(BINARY, b"b" * 126),
    "length 65535": cf(BINARY, b"c" * 65535),
    "length 65536": cf(BINARY, b"d" * 65536),
    "several messages": cf(TEXT, b"one") + cf(BINARY, b"two") + cf(TEXT, b"three"),
    # ping/pong
    "ping": cf(PING, b"are you there"),
    "ping 125": cf(PING, b"p" * 125),
    "ping 126": cf(PING, b"p" * 126),
    "empty ping": cf(PING),
    "unsolicited pong": cf(PONG, b"unasked") + cf(TEXT, b"after"),
    "fragmented ping": cf(PING, b"x", fin=False),
    # masking
    "unmasked client frame": raw(TEXT, b"naked"),
    # RSV bits and reserved opcodes
    "rsv1": cf(TEXT, b"x", rsv=4),
    "rsv2": cf(TEXT, b"x", rsv=2),
    "rsv3": cf(BINARY, b"x", rsv=1),
    **{f"reserved opcode {op:#x}": cf(op, b"x") for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xF)},
    # fragmentation
    "fragmented text": cf(TEXT, b"Hel", fin=False) + cf(CONT, b"lo, ", fin=False)
    + cf(CONT, b"world"),
    "fragmented binary": cf(BINARY, b"\x00" * 10, fin=False) + cf(CONT, b"\x01" * 10),
    "ping between fragments": cf(TEXT, b"frag", fin=False) + cf(PING, b"mid")
    + cf(CONT, b"mented"),
    "pong between fragments": cf(BINARY, b"a", fin=False) + cf(PONG, b"z") + cf(CONT, b"b"),
    "empty fragments": cf(TEXT, b"", fin=False) + cf(CONT, b"", fin=False) + cf(CONT, b"x"),
    "continuation with no start": cf(CONT, b"orphan"),
    "new message inside a fragmented one": cf(TEXT, b"a", fin=False) + cf(TEXT, b"b"),
    # UTF-8
    "utf-8 whole": cf(TEXT, "héllo ☃ 𝄞".encode()),
    "utf-8 split across fragments": cf(TEXT, b"snow" + SNOWMAN[:1], fin=False)
    + cf(CONT, SNOWMAN[1:2], fin=False) + cf(CONT, SNOWMAN[2:] + b"man"),
    "invalid utf-8": cf(TEXT, b"bad \xff byte"),
    "invalid utf-8 in a fragment": cf(TEXT, b"ok", fin=False) + cf(CONT, b"\xc0\xaf"),
    "truncated utf-8 at the end": cf(TEXT, b"cut", fin=False) + cf(CONT, SNOWMAN[:2]),
    "surrogate in utf-8": cf(TEXT, b"\xed\xa0\x80"),
    "binary is not utf-8 checked": cf(BINARY, b"\xff\xfe"),
    # large messages and the size limit
    "large text": cf(TEXT, b"x" * 300_000),
    "large fragmented binary": b"".join(cf(BINARY if i == 0 else CONT, b"y" * 100_000,
                                           fin=i == 4) for i in range(5)),
    "message at the limit": cf(BINARY, b"z" * MAX),
    "message over the limit": cf(BINARY, b"z" * (MAX + 1)),
    "fragments over the limit": cf(BINARY, b"z" * (MAX // 2), fin=False)
    + cf(CONT, b"z" * (MAX // 2 + 1)),
}

CLOSE_CASES: dict[str, bytes] = {
    **{f"close {code}": cf(CLOSE, close_payload(code)) for code in (1000, 1001, 1003, 1011,
                                                                    3000, 4000, 4999)},
    "close with a reason": cf(CLOSE, close_payload(1000, "fin ☃".encode())),
    "close with no payload": cf(CLOSE),
    **{f"invalid close {code}": cf(CLOSE, close_payload(code))
       for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000)},
    "one-byte close payload": cf(CLOSE, b"\x03"),
    "close reason not utf-8": cf(CLOSE, close_payload(1000, b"\xff")),
    "close 126 bytes": cf(CLOSE, close_payload(1000, b"r" * 124)),
    "frames after close are ignored": cf(CLOSE, close_payload(1000)) + cf(TEXT, b"late"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_same_as_direct(sites: Sites, case: str) -> None:
    direct = await observe(sites.direct, CASES[case])
    proxied = await observe(sites.proxied, CASES[case])
    assert proxied == direct


@pytest.mark.parametrize("case", list(CLOSE_CASES))
async def test_close_same_as_direct(sites: Sites, case: str) -> None:
    wire = CLOSE_CASES[case]
    results = []
    for port in (sites.direct, sites.proxied):
        client = await RawClient.connect(port, "/")
        client.send(wire)
        frames = await client.until_close()
        results.append(([_close_seen(f) for f in frames], await client.eof()))
        client.close()
    assert results[1] == results[0]


def _close_seen(frame: Frame) -> tuple:
    """A close as compared: the code, and the reason when it is an echo of ours (an error's
    reason text is each implementation's own wording)."""
    if frame.opcode is not CLOSE or not frame.data:
        return frame.opcode, bytes(frame.data)
    close = Close.parse(bytes(frame.data))
    return CLOSE, close.code, None if close.code in (1002, 1007) else close.reason


async def test_expected_outcomes(sites: Sites) -> None:
    """The direct answers are themselves what RFC 6455 requires (so "same as direct" means
    something): a spot check of each class of case through the proxy."""
    expect = {
        "text": ([(TEXT, True, b"hello"), ECHOED_END], [], 1000),
        "ping 125": ([ECHOED_END], [b"p" * 125], 1000),
        "ping 126": ([], [], 1002),
        "rsv1": ([], [], 1002),
        "reserved opcode 0xb": ([], [], 1002),
        "unmasked client frame": ([], [], 1002),
        "ping between fragments": ([(TEXT, True, b"fragmented"), ECHOED_END], [b"mid"], 1000),
        "continuation with no start": ([], [], 1002),
        "utf-8 split across fragments": ([(TEXT, True, b"snow" + SNOWMAN + b"man"), ECHOED_END],
                                         [], 1000),
        "invalid utf-8": ([], [], 1007),
        "message over the limit": ([], [], 1009),
    }
    for case, outcome in expect.items():
        assert await observe(sites.proxied, CASES[case]) == outcome, case
    for code in (0, 999, 1005, 1006, 2000):
        client = await RawClient.connect(sites.proxied, "/")
        client.send(CLOSE_CASES[f"invalid close {code}"])
        frames = await client.until_close()
        assert [Close.parse(bytes(f.data)).code for f in frames] == [1002], code
        client.close()


async def test_upstream_frames_unchanged(sites: Sites) -> None:
    """What the upstream sends reaches the client byte for byte (unmasked, same fragmentation
    the server chose), and the client's frames reach the server re-masked."""
    client = await RawClient.connect(sites.proxied, "/")
    client.send(cf(BINARY, b"\x00\x01" * 1000))
    frame = await client.frame()
    assert frame is not None and frame.opcode is Opcode.BINARY
    assert bytes(frame.data) == b"\x00\x01" * 1000 and frame.fin
    client.send(cf(CLOSE, close_payload(1000)))
    assert [(f.opcode, bytes(f.data)) for f in await client.until_close()] == [
        (CLOSE, close_payload(1000))]
    client.close()
