"""Building the request head sent upstream and the response head sent to the client.

Upstream requests carry the client's headers minus hop-by-hop ones, a Host chosen by
`preserve_host`, and the forwarding headers: `X-Forwarded-For` (appended to), `-Proto`, `-Host`,
`-Port`, `-Path`, `X-Real-IP` (set by us, as the gateway trusts no client for them) and
`Via: 1.1 tidegate`. Plugins' header changes (`kong.service.request.set_header`) apply here.
"""

from __future__ import annotations

from typing import Any

from dp.proxy.http import HOP_BY_HOP, header_bytes, reason

_SET_BY_US = frozenset((b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
                        b"x-forwarded-port", b"x-forwarded-path", b"x-real-ip", b"via"))
_SKIP_REQUEST = HOP_BY_HOP | _SET_BY_US
VIA = "1.1 tidegate"


def upstream_host(service: dict[str, Any], upstream: dict[str, Any] | None) -> str:
    """Host header when the client's is not preserved: the service's host (or the upstream's
    host_header), with the port unless it is the scheme's default."""
    host = (upstream or {}).get("host_header") or service["host"]
    port = service.get("port") or 80
    return host if port in (80, 443) else f"{host}:{port}"


def request_head(req: Any, path: str, host: str, client_ip: str, scheme: str,
                 listen_port: int, overrides: dict[str, tuple[str, str | None]] | None,
                 chunked_body: bool) -> bytes:
    """The request line and headers for the upstream."""
    out = [b"%b %b HTTP/1.1\r\nHost: %b\r\n" % (req.method.encode(), path.encode("latin-1"),
                                                host.encode("latin-1"))]
    hmap = req.hmap
    for name, value in req.headers:
        lname = name.lower()
        if lname in _SKIP_REQUEST:
            continue
        if overrides and lname.decode("latin-1") in overrides:
            continue
        out.append(b"%b: %b\r\n" % (name, value))
    xff = hmap.get("x-forwarded-for")
    via = hmap.get("via")
    original_host = req.host.rpartition(":")[0] if ":" in req.host else req.host
    out.append((
        f"X-Forwarded-For: {f'{xff}, {client_ip}' if xff else client_ip}\r\n"
        f"X-Forwarded-Proto: {scheme}\r\nX-Forwarded-Host: {original_host}\r\n"
        f"X-Forwarded-Port: {listen_port}\r\nX-Forwarded-Path: {req.path}\r\n"
        f"X-Real-IP: {client_ip}\r\nVia: {f'{via}, {VIA}' if via else VIA}\r\n"
    ).encode("latin-1"))
    if overrides:
        for name_, value_ in overrides.values():
            if value_ is not None:
                out.append(header_bytes(f"{name_}: {value_}\r\n"))
    if chunked_body:
        out.append(b"Transfer-Encoding: chunked\r\n")
    if req.upgrade:
        out.append(b"Connection: Upgrade\r\nUpgrade: %b\r\n"
                   % hmap.get("upgrade", "websocket").encode("latin-1"))
    out.append(b"\r\n")
    return b"".join(out)


def response_head(status: int, reason_phrase: bytes, headers: list[tuple[bytes, bytes]],
                  changes: dict[bytes, bytes] | None, *, chunked: bool, close: bool,
                  version: str = "1.1") -> bytes:
    """The status line and headers for the client. `changes` are plugins' headers (the PDK's
    `Exchange.resp_set`): lower-case name → the lines to send instead of the upstream's."""
    out = [b"HTTP/%b %d %b\r\n" % (version.encode(), status, reason_phrase or reason(status))]
    if changes:
        for name, value in headers:
            lname = name.lower()
            if lname not in HOP_BY_HOP and lname not in changes:
                out.append(b"%b: %b\r\n" % (name, value))
        out += changes.values()
    else:
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                out.append(b"%b: %b\r\n" % (name, value))
    out.append(b"Via: 1.1 tidegate\r\n")
    if chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    if close:
        out.append(b"Connection: close\r\n")
    out.append(b"\r\n")
    return b"".join(out)
