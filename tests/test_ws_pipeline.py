"""The sans-I/O WebSocket frame pipeline (`dp/ws/`): conformance, the PDK, size limits.

Frames are built by hand (`tests/ws_peers.py`: masked from the client, unmasked from the
upstream); what each side receives is parsed with `websockets`' own frame parser, which also
proves the masking direction (toward the upstream masked, toward the client not).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from dp.plugins.websocket_size_limit import WebSocketSizeLimit
from dp.ws import FramePipeline, Handler, WsKong
from dp.ws.pdk import PdkError
from tests.ws_peers import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    cf,
    close_payload,
    parse,
    summary,
    uf,
)

SNOWMAN = "☃".encode()  # 3 bytes: e2 98 83
FAIL_1002 = ([(CLOSE, 1001)], [(CLOSE, 1002)])  # (to upstream, to client)
FAIL_1007 = ([(CLOSE, 1001)], [(CLOSE, 1007)])


def run(client: bytes = b"", upstream: bytes = b"", p: FramePipeline | None = None,
        chunk: int = 0) -> tuple[list[tuple], list[tuple], FramePipeline]:
    """Feed bytes from each side (in `chunk`-sized pieces if given); return what each got."""
    p = p or FramePipeline()
    step = chunk or max(len(client), 1)
    for i in range(0, len(client), step):
        p.receive_client(client[i:i + step])
    if upstream:
        p.receive_upstream(upstream)
    to_up = summary(parse(p.data_to_upstream(), masked=True))
    to_client = summary(parse(p.data_to_client(), masked=False))
    return to_up, to_client, p


# -- conformance: frames from the client -----------------------------------------------------

CONFORMANCE = [
    ("text", cf(TEXT, b"hello"), [(TEXT, True, b"hello")], []),
    ("binary", cf(BINARY, b"\x00\xff"), [(BINARY, True, b"\x00\xff")], []),
    ("empty text", cf(TEXT), [(TEXT, True, b"")], []),
    ("ping 125 relayed, not answered", cf(PING, b"p" * 125), [(PING, True, b"p" * 125)], []),
    ("pong 125", cf(PONG, b"q" * 125), [(PONG, True, b"q" * 125)], []),
    ("ping 126", cf(PING, b"p" * 126), *FAIL_1002),
    ("pong 126", cf(PONG, b"q" * 126), *FAIL_1002),
    ("rsv1", cf(TEXT, b"x", rsv=4), *FAIL_1002),
    ("rsv2", cf(TEXT, b"x", rsv=2), *FAIL_1002),
    ("rsv3", cf(BINARY, b"x", rsv=1), *FAIL_1002),
    ("rsv on ping", cf(PING, b"", rsv=7), *FAIL_1002),
    ("opcode 3", cf(3, b"x"), *FAIL_1002),
    ("opcode 7", cf(7, b"x"), *FAIL_1002),
    ("opcode 0xB", cf(0xB, b""), *FAIL_1002),
    ("opcode 0xF", cf(0xF, b""), *FAIL_1002),
    ("unmasked from client", uf(TEXT, b"x"), *FAIL_1002),
    ("fragments with control frames interleaved",
     cf(TEXT, b"Hel", fin=False) + cf(PING, b"1") + cf(CONT, b"l", fin=False)
     + cf(PONG, b"2") + cf(CONT, b"o"),
     [(TEXT, False, b"Hel"), (PING, True, b"1"), (CONT, False, b"l"), (PONG, True, b"2"),
      (CONT, True, b"o")], []),
    ("fragmented ping", cf(PING, b"x", fin=False), *FAIL_1002),
    ("continuation with no start", cf(CONT, b"x"), *FAIL_1002),
    ("new message while one is unfinished", cf(TEXT, b"a", fin=False) + cf(BINARY, b"b"),
     [(TEXT, False, b"a"), (CLOSE, 1001)], [(CLOSE, 1002)]),
    ("utf-8 split across fragments",
     cf(TEXT, b"snow" + SNOWMAN[:1], fin=False) + cf(CONT, SNOWMAN[1:2], fin=False)
     + cf(CONT, SNOWMAN[2:] + b"man"),
     [(TEXT, False, b"snow" + SNOWMAN[:1]), (CONT, False, SNOWMAN[1:2]),
      (CONT, True, SNOWMAN[2:] + b"man")], []),
    ("invalid utf-8", cf(TEXT, b"\xff"), *FAIL_1007),
    ("invalid utf-8 in a later fragment", cf(TEXT, b"ok", fin=False) + cf(CONT, b"\xc0\xaf"),
     [(TEXT, False, b"ok"), (CLOSE, 1001)], [(CLOSE, 1007)]),
    ("utf-8 cut at the end of the message", cf(TEXT, SNOWMAN[:2]), *FAIL_1007),
    ("surrogate in utf-8", cf(TEXT, b"\xed\xa0\x80"), *FAIL_1007),
    ("binary is not utf-8 checked", cf(BINARY, b"\xff"), [(BINARY, True, b"\xff")], []),
    ("close 1000 relayed", cf(CLOSE, close_payload(1000, b"bye")), [(CLOSE, 1000)], []),
    ("close with no status", cf(CLOSE), [(CLOSE, None)], []),
    ("close 1001", cf(CLOSE, close_payload(1001)), [(CLOSE, 1001)], []),
    ("close 1011", cf(CLOSE, close_payload(1011)), [(CLOSE, 1011)], []),
    ("close 3000", cf(CLOSE, close_payload(3000)), [(CLOSE, 3000)], []),
    ("close 4999", cf(CLOSE, close_payload(4999)), [(CLOSE, 4999)], []),
    *[(f"close {code}", cf(CLOSE, close_payload(code)), *FAIL_1002)
      for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535)],
    ("one-byte close payload", cf(CLOSE, b"\x03"), *FAIL_1002),
    ("close reason not utf-8", cf(CLOSE, close_payload(1000, b"\xff")), *FAIL_1007),
    ("close 126 bytes", cf(CLOSE, close_payload(1000, b"r" * 124)), *FAIL_1002),
    ("large text (16-bit length)", cf(TEXT, b"a" * 65535), [(TEXT, True, b"a" * 65535)], []),
    ("large binary (64-bit length)", cf(BINARY, b"b" * 70000), [(BINARY, True, b"b" * 70000)],
     []),
]


@pytest.mark.parametrize(("client", "to_upstream", "to_client"),
                         [c[1:] for c in CONFORMANCE], ids=[c[0] for c in CONFORMANCE])
@pytest.mark.parametrize("chunk", [0, 1, 7], ids=["whole", "bytewise", "chunks7"])
def test_conformance_from_client(client: bytes, to_upstream: list, to_client: list,
                                 chunk: int) -> None:
    if chunk == 1 and len(client) > 1000:
        chunk = 4093  # byte-wise feeding of 70 kB is slow without saying more
    got_up, got_client, p = run(client, chunk=chunk)
    assert (got_up, got_client) == (to_upstream, to_client)
    failed = bool(to_client) and to_client[-1][0] is CLOSE
    assert p.done == failed


UPSTREAM_CASES = [
    ("text", uf(TEXT, b"hi"), [], [(TEXT, True, b"hi")]),
    ("ping 125", uf(PING, b"p" * 125), [], [(PING, True, b"p" * 125)]),
    ("ping 126", uf(PING, b"p" * 126), [(CLOSE, 1002)], [(CLOSE, 1001)]),
    ("masked from upstream", cf(TEXT, b"x"), [(CLOSE, 1002)], [(CLOSE, 1001)]),
    ("rsv1", uf(TEXT, b"x", rsv=4), [(CLOSE, 1002)], [(CLOSE, 1001)]),
    ("invalid utf-8", uf(TEXT, b"a", fin=False) + uf(CONT, b"\xfe"),
     [(CLOSE, 1007)], [(TEXT, False, b"a"), (CLOSE, 1001)]),
    ("close 2000", uf(CLOSE, close_payload(2000)), [(CLOSE, 1002)], [(CLOSE, 1001)]),
    ("fragments + ping", uf(BINARY, b"a", fin=False) + uf(PING) + uf(CONT, b"b"),
     [], [(BINARY, False, b"a"), (PING, True, b""), (CONT, True, b"b")]),
]


@pytest.mark.parametrize(("upstream", "to_upstream", "to_client"),
                         [c[1:] for c in UPSTREAM_CASES], ids=[c[0] for c in UPSTREAM_CASES])
def test_conformance_from_upstream(upstream: bytes, to_upstream: list, to_client: list) -> None:
    assert run(upstream=upstream)[:2] == (to_upstream, to_client)


def test_frames_to_upstream_are_remasked_and_to_client_unmasked() -> None:
    p = FramePipeline()
    sent = cf(BINARY, b"payload" * 10)
    p.receive_client(sent)
    out = p.data_to_upstream()
    assert out[1] & 0x80 and out[2:6] != sent[2:6]  # masked, with the proxy's own key
    p.receive_upstream(uf(TEXT, b"back"))
    assert p.data_to_client() == uf(TEXT, b"back")  # byte-identical, unmasked


def test_close_handshake_is_relayed_both_ways() -> None:
    p = FramePipeline()
    p.receive_client(cf(CLOSE, close_payload(1000, b"bye")))
    assert parse(p.data_to_upstream(), masked=True)[0].data == close_payload(1000, b"bye")
    assert not p.done
    p.receive_client(cf(TEXT, b"after close"))  # ignored: the client already closed
    p.receive_upstream(uf(TEXT, b"late") + uf(CLOSE, close_payload(1000)))
    assert summary(parse(p.data_to_client(), masked=False)) == [(TEXT, True, b"late"),
                                                                 (CLOSE, 1000)]
    assert p.done and p.data_to_upstream() == b""


def test_upstream_initiated_close() -> None:
    p = FramePipeline()
    p.receive_upstream(uf(CLOSE, close_payload(1001, b"restart")))
    assert p.data_to_client() == uf(CLOSE, close_payload(1001, b"restart"))
    p.receive_client(cf(CLOSE, close_payload(1001)))
    assert summary(parse(p.data_to_upstream(), masked=True)) == [(CLOSE, 1001)]
    assert p.done


def test_eof_without_close_tells_the_peer_going_away() -> None:
    p = FramePipeline()
    p.receive_client(cf(TEXT, b"a", fin=False)[:3])
    p.receive_client_eof()
    assert summary(parse(p.data_to_upstream(), masked=True)) == [(CLOSE, 1001)]
    assert p.done and p.data_to_client() == b""


def test_oversized_header_is_refused_before_the_payload_arrives() -> None:
    p = FramePipeline(client_max_payload=1024)
    p.receive_client(cf(BINARY, b"x" * 4096)[:20])  # header + a little payload only
    assert run(p=p)[:2] == ([(CLOSE, 1001)], [(CLOSE, 1009)])
    assert p.buffered_from_client == 0


def test_pending_and_buffered_sizes() -> None:
    p = FramePipeline()
    whole = cf(BINARY, b"z" * 300)
    p.receive_client(whole[:100])
    assert p.buffered_from_client > 0 and p.pending_to_upstream == 0
    p.receive_client(whole[100:])
    assert p.buffered_from_client == 0 and p.pending_to_upstream == 304 + 4
    p.data_to_upstream()
    assert p.pending_to_upstream == 0


# -- the PDK ---------------------------------------------------------------------------------

def handler(fn: Any, priority: int = 0, name: str = "", conf: Any = None) -> Handler:
    return Handler(fn, conf, priority, name or fn.__name__)


def with_client(*handlers: Handler, **kw: Any) -> FramePipeline:
    return FramePipeline(list(handlers), **kw)


@pytest.mark.parametrize(("wire", "expected"), [
    (cf(TEXT, b"t"), (b"t", "text", None)),
    (cf(BINARY, b"b"), (b"b", "binary", None)),
    (cf(PING, b"i"), (b"i", "ping", None)),
    (cf(PONG, b"o"), (b"o", "pong", None)),
    (cf(CLOSE, close_payload(1001, b"bye")), (b"bye", "close", 1001)),
    (cf(CLOSE), (b"", "close", None)),
])
def test_get_frame(wire: bytes, expected: tuple) -> None:
    seen = []
    p = with_client(handler(lambda k, c: seen.append(k.websocket.client.get_frame())))
    p.receive_client(wire)
    assert seen == [expected]


def test_get_frame_continuation_and_conf() -> None:
    seen = []
    p = with_client(handler(lambda k, c: seen.append((k.websocket.client.get_frame()[1], c)),
                            conf={"x": 1}))
    p.receive_client(cf(TEXT, b"a", fin=False) + cf(CONT, b"b"))
    assert seen == [("text", {"x": 1}), ("continuation", {"x": 1})]


def test_set_frame_data_is_seen_by_later_handlers_and_the_peer() -> None:
    seen = []

    def first(kong: WsKong, conf: Any) -> None:
        kong.websocket.client.set_frame_data("updated!")

    def second(kong: WsKong, conf: Any) -> None:
        seen.append(kong.websocket.client.get_frame()[0])

    p = with_client(handler(second, 10), handler(first, 20))  # priority, not list order
    assert run(cf(TEXT, b"original"), p=p)[0] == [(TEXT, True, b"updated!")]
    assert seen == [b"updated!"]


def test_upstream_frames_use_kong_websocket_upstream() -> None:
    def shout(kong: WsKong, conf: Any) -> None:
        data, _typ, _status = kong.websocket.upstream.get_frame()
        kong.websocket.upstream.set_frame_data(data.upper())

    p = FramePipeline(upstream_handlers=[handler(shout)])
    assert run(upstream=uf(TEXT, b"quiet"), p=p)[:2] == ([], [(TEXT, True, b"QUIET")])


def test_seed_example_close_payload_and_status() -> None:
    def goodbye(kong: WsKong, conf: Any) -> None:
        _data, typ, _status = kong.websocket.client.get_frame()  # the seed's example
        if typ == "close":
            kong.websocket.client.set_frame_data("goodbye!")
            kong.websocket.client.set_status(1000)

    p = with_client(handler(goodbye))
    p.receive_client(cf(TEXT, b"t") + cf(CLOSE, close_payload(1001, b"leaving")))
    text, close = parse(p.data_to_upstream(), masked=True)
    assert (text.data, close.data) == (b"t", close_payload(1000, b"goodbye!"))


def test_pdk_misuse_raises() -> None:
    errors: list[str] = []

    def probe(kong: WsKong, conf: Any) -> None:
        ws = kong.websocket.client
        typ = ws.get_frame()[1]
        for call in (lambda: ws.set_status(1000), ws.drop_frame,
                     lambda: ws.set_status(1005), lambda: kong.websocket.upstream.get_frame()):
            try:
                call()
            except PdkError as exc:
                errors.append(f"{typ}: {exc}")

    p = with_client(handler(probe))
    p.receive_client(cf(TEXT, b"t") + cf(CLOSE, close_payload(1000)))
    assert [e.split(":")[0] for e in errors] == ["text", "text", "text", "close", "close",
                                                 "close"]
    assert "needs a close frame" in errors[0] and "cannot be dropped" in errors[3]
    assert "invalid close status 1005" in errors[4]
    assert "wrong phase" in errors[2] and "wrong phase" in errors[5]
    # drop_frame() is legal on the text frame (it was dropped); the close went through
    assert summary(parse(p.data_to_upstream(), masked=True)) == [(CLOSE, 1000)]


@pytest.mark.parametrize(("wire", "call"), [
    (cf(TEXT, b"t"), lambda ws: ws.set_status(1000)),
    (cf(CLOSE, close_payload(1000)), lambda ws: ws.drop_frame()),
])
def test_uncaught_pdk_error_closes_both_sides_with_1011(wire: bytes, call: Any,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    p = with_client(handler(lambda k, c: call(k.websocket.client)))
    with caplog.at_level(logging.ERROR, logger="tidegate.ws"):
        to_up, to_client, p = run(wire + cf(TEXT, b"more"), p=p)
    assert (to_up, to_client) == ([(CLOSE, 1011)], [(CLOSE, 1011)])
    assert p.done and len(caplog.records) == 1


def test_drop_frame_skips_later_handlers_and_the_peer() -> None:
    later = []
    p = with_client(handler(lambda k, c: k.websocket.client.drop_frame(), 10),
                    handler(lambda k, c: later.append(1), 5))
    to_up, to_client, _ = run(cf(PING, b"x") + cf(BINARY, b"y"), p=p)
    assert (to_up, to_client, later) == ([], [], [])


def test_client_close_with_four_arguments() -> None:
    later = []

    def kick(kong: WsKong, conf: Any) -> None:
        kong.websocket.client.close(1009, "Invalid message", 1001, "Client is going away")

    p = with_client(handler(kick, 10), handler(lambda k, c: later.append(1), 5))
    p.receive_client(cf(TEXT, b"in flight"))
    assert p.data_to_client() == uf(CLOSE, close_payload(1009, b"Invalid message"))
    [up] = parse(p.data_to_upstream(), masked=True)  # the in-flight frame is not forwarded
    assert up.data == close_payload(1001, b"Client is going away")
    assert p.done and later == []


def test_upstream_close_with_four_arguments() -> None:
    def kick(kong: WsKong, conf: Any) -> None:
        kong.websocket.upstream.close(1008, "to upstream", client_status=4000,
                                      client_payload=b"to client")

    p = FramePipeline(upstream_handlers=[handler(kick)])
    p.receive_upstream(uf(BINARY, b"x"))
    assert p.data_to_client() == uf(CLOSE, close_payload(4000, b"to client"))
    [up] = parse(p.data_to_upstream(), masked=True)
    assert up.data == close_payload(1008, b"to upstream") and p.done


def test_close_defaults_to_1000_both_ways() -> None:
    p = with_client(handler(lambda k, c: k.websocket.client.close()))
    assert run(cf(TEXT, b"x"), p=p)[:2] == ([(CLOSE, 1000)], [(CLOSE, 1000)])


def test_set_max_payload_size_aggregation_example() -> None:
    """Limit 1024, three 500-byte fragments: the third exceeds it → 1009, connection closes."""
    p = FramePipeline()
    p.kong.websocket.client.set_max_payload_size(1024)  # as a ws_handshake handler would
    wire = cf(BINARY, b"a" * 500, fin=False) + cf(CONT, b"b" * 500, fin=False) \
        + cf(CONT, b"c" * 500)
    to_up, to_client, p = run(wire, p=p)
    assert to_up == [(BINARY, False, b"a" * 500), (CONT, False, b"b" * 500), (CLOSE, 1001)]
    assert to_client == [(CLOSE, 1009)] and p.done


def test_set_max_payload_size_exempts_control_frames_and_0_restores_default() -> None:
    p = FramePipeline(client_max_payload=2048)
    p.kong.websocket.client.set_max_payload_size(10)
    assert run(cf(PING, b"p" * 100) + cf(TEXT, b"t" * 10), p=p)[:2] == (
        [(PING, True, b"p" * 100), (TEXT, True, b"t" * 10)], [])
    p.kong.websocket.client.set_max_payload_size(0)
    assert run(cf(TEXT, b"t" * 2048), p=p)[0] == [(TEXT, True, b"t" * 2048)]
    assert run(cf(TEXT, b"t" * 2049), p=p)[:2] == ([(CLOSE, 1001)], [(CLOSE, 1009)])


def test_set_max_payload_size_from_a_frame_handler_applies_to_later_frames() -> None:
    p = with_client(handler(lambda k, c: k.websocket.client.set_max_payload_size(4)))
    assert run(cf(TEXT, b"12345") + cf(TEXT, b"12345"), p=p)[:2] == (
        [(TEXT, True, b"12345"), (CLOSE, 1001)], [(CLOSE, 1009)])


def test_no_handlers_fast_path_forwards_unchanged_frames() -> None:
    p = FramePipeline()
    assert not p.client.handlers and not p.upstream.handlers
    wire = b"".join(uf(BINARY, bytes([i]) * i) for i in range(50))
    p.receive_upstream(wire)
    assert p.data_to_client() == wire


# -- websocket-size-limit --------------------------------------------------------------------

@pytest.fixture
def limited() -> FramePipeline:
    p = FramePipeline()
    asyncio.run(WebSocketSizeLimit().ws_handshake(p.kong, {"client_max_payload": 100,
                                                           "upstream_max_payload": 200}))
    return p


def test_size_limit_client_direction(limited: FramePipeline) -> None:
    assert run(cf(TEXT, b"x" * 100), p=limited)[0] == [(TEXT, True, b"x" * 100)]
    assert run(cf(TEXT, b"x" * 101), p=limited)[:2] == ([(CLOSE, 1001)], [(CLOSE, 1009)])


def test_size_limit_upstream_direction(limited: FramePipeline) -> None:
    assert run(upstream=uf(BINARY, b"y" * 200), p=limited)[1] == [(BINARY, True, b"y" * 200)]
    wire = uf(BINARY, b"y" * 150, fin=False) + uf(CONT, b"y" * 51)
    assert run(upstream=wire, p=limited)[:2] == (
        [(CLOSE, 1009)], [(BINARY, False, b"y" * 150), (CLOSE, 1001)])


def test_size_limit_defaults() -> None:
    p = FramePipeline(client_max_payload=None, upstream_max_payload=None)
    asyncio.run(WebSocketSizeLimit().ws_handshake(p.kong, {}))
    assert (p.client.reader.max_payload, p.upstream.reader.max_payload) == (2**20, 2**24)
