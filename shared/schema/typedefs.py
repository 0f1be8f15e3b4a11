"""Reusable field definitions (Kong's typedefs): hosts, ports, paths, protocols, tags, names."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from shared.schema.fields import Field

HTTP_PROTOCOLS = ("http", "https")
WS_PROTOCOLS = ("ws", "wss")
GRPC_PROTOCOLS = ("grpc", "grpcs")
STREAM_PROTOCOLS = ("tcp", "tls", "tls_passthrough", "udp")
PROTOCOLS = (*GRPC_PROTOCOLS, *HTTP_PROTOCOLS, *STREAM_PROTOCOLS, *WS_PROTOCOLS)
TLS_PROTOCOLS = ("https", "wss", "grpcs", "tls", "tls_passthrough")

_LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
_HOSTNAME_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")
_NAME_RE = re.compile(r"^[\w.~-]+$")
_TAG_BAD = re.compile(r"[,/\x00-\x1f\x7f]")


def protocol_family(protocol: str) -> str:
    """Protocols that can carry each other's traffic share a family."""
    for family, members in (
        ("http", HTTP_PROTOCOLS),
        ("ws", WS_PROTOCOLS),
        ("grpc", GRPC_PROTOCOLS),
        ("stream", STREAM_PROTOCOLS),
    ):
        if protocol in members:
            return family
    return protocol


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return True


def validate_host(value: str) -> str | None:
    """A hostname or an IP address, no port."""
    if _is_ip(value) or _HOSTNAME_RE.match(value):
        return None
    if ":" in value and _HOSTNAME_RE.match(value.rsplit(":", 1)[0]):
        return "must not have a port"
    return f"invalid value: {value}"


def split_host_port(value: str) -> tuple[str, int | None] | None:
    """`host`, `host:port`, `[v6]:port` → (host, port); None when unparseable."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    elif value.count(":") > 1:
        return (value, None) if _is_ip(value) else None
    else:
        host, _, port_text = value.partition(":")
        port_text = port_text or None
    port = None
    if port_text is not None:
        if not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) <= 65535:
            return None
        port = int(port_text)
    return host, port


def validate_wildcard_host(value: str) -> str | None:
    """Route hosts: an optional port, and at most one `*` as the leftmost or rightmost label."""
    parsed = split_host_port(value)
    if parsed is None:
        return f"invalid value: {value}"
    host = parsed[0]
    stars = host.count("*")
    if stars > 1:
        return "invalid wildcard: must have at most one wildcard"
    if stars == 1:
        if not (host.startswith("*.") or host.endswith(".*")):
            return "invalid wildcard: must be placed at leftmost or rightmost label"
        host = host.replace("*", "wildcard")
    if _is_ip(host) or _HOSTNAME_RE.match(host):
        return None
    return f"invalid value: {value}"


_PCRE_NAMED_GROUP = re.compile(r"\(\?<(?![=!])")


def compile_route_regex(pattern: str) -> re.Pattern[str]:
    """A route's regex as Kong users write it (PCRE): `(?<name>...)` is Python's `(?P<name>...)`."""
    return re.compile(_PCRE_NAMED_GROUP.sub("(?P<", pattern))


def validate_router_path(value: str) -> str | None:
    """`/prefix` or `~regex` (compiled now, so a bad regex fails when saved, not when routed)."""
    if value.startswith("~"):
        try:
            compile_route_regex(value[1:])
        except (re.error, OverflowError) as exc:  # huge repeat counts overflow
            return f"invalid regex: '{value[1:]}' ({exc})"
        except RecursionError:  # thousands of nested groups
            return f"invalid regex: '{value[1:]}' (too deeply nested)"
        return None
    if not value.startswith("/"):
        return "should start with: / (fixed path) or ~/ (regex path)"
    if "//" in value:
        return "must not have empty segments"
    return None


def validate_path(value: str) -> str | None:
    if not value.startswith("/"):
        return "should start with: /"
    if "//" in value:
        return "must not have empty segments"
    return None


def validate_name(value: str) -> str | None:
    if _NAME_RE.match(value):
        return None
    return (
        f"invalid value '{value}': the only accepted ascii characters are alphanumerics or "
        "., -, _, and ~"
    )


def validate_tag(value: str) -> str | None:
    if _TAG_BAD.search(value):
        return (f"invalid tag '{value}': expected printable ascii (except `,` and `/`) "
                "or valid utf-8")
    return None


def id_field() -> Field:
    return Field("string", auto=True, uuid=True, description="Unique identifier (UUID).")


def timestamp_field() -> Field:
    return Field("integer", auto=True, description="Unix epoch seconds.")


def tags_field() -> Field:
    return Field(
        "set",
        elements=Field("string", len_min=1, validator=validate_tag),
        description="Tags for grouping and filtering.",
    )


def name_field(unique: bool = True) -> Field:
    return Field("string", unique=unique, validator=validate_name, len_min=1)


def port_field(default: Any = None) -> Field:
    kwargs: dict[str, Any] = {"between": (0, 65535)}
    if default is not None:
        kwargs["default"] = default
    return Field("integer", **kwargs)


def timeout_field() -> Field:
    return Field("integer", default=60000, between=(1, 2**31 - 2))


def protocols_field(default: tuple[str, ...], allowed: tuple[str, ...] = PROTOCOLS) -> Field:
    return Field(
        "set",
        required=True,
        default=list(default),
        len_min=1,
        elements=Field("string", one_of=allowed),
    )


def foreign(reference: str, on_delete: str = "restrict", required: bool = False) -> Field:
    return Field("foreign", reference=reference, on_delete=on_delete, required=required)
