"""HTTP/1.1 bits shared by both sides of the proxy: hop-by-hop headers, reason phrases, chunk
framing and the gateway's own (Kong-worded) answers."""

from __future__ import annotations

import json
from http import HTTPStatus

# Headers that describe one connection and never cross the proxy as they are.
HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade", b"proxy-authenticate"))

NO_ROUTE = "no Route matched with those values"
NO_SERVICE = "no Service found with those values"
BAD_UPSTREAM = "An invalid response was received from the upstream server"
TIMED_OUT = "The upstream server is timing out"
NO_PEER = "failure to get a peer from the ring-balancer"
USE_HTTPS = "Please use HTTPS protocol"
BAD_REQUEST = "Bad request"
UNEXPECTED = "An unexpected error occurred"  # a plugin raised: Kong's 500

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
LAST_CHUNK = b"0\r\n\r\n"


def reason(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def body_of(status: int, message: str | None = None, body: object = None,
            content_type: str | None = None) -> tuple[bytes, str]:
    """A gateway-made body: JSON `{"message": ...}` unless HTML is asked for or a body given."""
    if body is not None:
        if isinstance(body, bytes | bytearray):
            return bytes(body), content_type or "application/octet-stream"
        if isinstance(body, str):
            return body.encode(), content_type or "text/plain; charset=utf-8"
        return json.dumps(body).encode(), content_type or "application/json; charset=utf-8"
    text = message if message is not None else HTTPStatus(status).phrase
    if content_type and "html" in content_type:
        page = (f"<!doctype html><html><head><title>Error</title></head><body><h1>Error</h1>"
                f"<p>{_html_escape(text)}</p></body></html>")
        return page.encode(), content_type
    return json.dumps({"message": text}, separators=(",", ":")).encode(), \
        "application/json; charset=utf-8"


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def header_bytes(text: str) -> bytes:
    """Header text as sent: latin-1 when it holds (header values are read as latin-1, so a
    value read from a request goes out as the bytes it came as), else UTF-8 (text from a config
    or a service, a consumer's name in Cyrillic, goes out as Kong sends a Lua string). Raises
    UnicodeEncodeError only for a lone surrogate, which has no bytes."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def response_head(status: int, headers: list[tuple[str, str]], version: bytes = b"1.1") -> bytes:
    lines = [b"HTTP/%b %d %b\r\n" % (version, status, reason(status))]
    lines.extend(header_bytes(f"{k}: {v}\r\n") for k, v in headers)
    lines.append(b"\r\n")
    return b"".join(lines)


def simple_response(status: int, message: str | None = None, *, body: object = None,
                    headers: dict[str, str] | None = None, keep_alive: bool = True,
                    head_only: bool = False) -> bytes:
    """A complete response the gateway answers itself (errors, plugin exits)."""
    content_type = None
    extra: list[tuple[str, str]] = []
    for k, v in (headers or {}).items():
        if k.lower() == "content-type":
            content_type = v
        elif k.lower() != "content-length":
            extra.append((k, v))
    payload, ctype = body_of(status, message, body, content_type)
    hdrs = [("Content-Type", ctype), ("Content-Length", str(len(payload))),
            ("Server", "tidegate"), *extra]
    if not keep_alive:
        hdrs.append(("Connection", "close"))
    head = response_head(status, hdrs)
    return head if head_only else head + payload
