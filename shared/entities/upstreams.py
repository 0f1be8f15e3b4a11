"""upstreams and targets: virtual hostnames balanced across targets, with health checks."""

from __future__ import annotations

from typing import Any

from shared.schema.entity import EntitySchema
from shared.schema.fields import Field
from shared.schema.typedefs import (
    _HOSTNAME_RE,
    foreign,
    id_field,
    split_host_port,
    tags_field,
    timestamp_field,
)

HASH_ON = ("none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture")



def _statuses(default: list[int]) -> Field:
    return Field("array", default=default, elements=Field("integer", between=(100, 999)))


def _counter(default: int = 0) -> Field:
    return Field("integer", default=default, between=(0, 255))


def _interval() -> Field:
    return Field("number", default=0, between=(0, 65535))


ACTIVE = Field("record", required=True, fields={
    "type": Field("string", default="http", one_of=("tcp", "http", "https", "grpc", "grpcs")),
    "timeout": Field("number", default=1, between=(0, 65535)),
    "concurrency": Field("integer", default=10, between=(1, 2**31 - 1)),
    "http_path": Field("string", default="/", starts_with="/"),
    "https_sni": Field("string"),
    "https_verify_certificate": Field("boolean", default=True),
    "headers": Field("map", keys=Field("string"), values=Field("array", elements=Field("string"))),
    "healthy": Field("record", required=True, fields={
        "interval": _interval(),
        "http_statuses": _statuses([200, 302]),
        "successes": _counter(),
    }),
    "unhealthy": Field("record", required=True, fields={
        "interval": _interval(),
        "http_statuses": _statuses([429, 404, 500, 501, 502, 503, 504, 505]),
        "tcp_failures": _counter(),
        "timeouts": _counter(),
        "http_failures": _counter(),
    }),
})

PASSIVE = Field("record", required=True, fields={
    "type": Field("string", default="http", one_of=("tcp", "http", "https", "grpc", "grpcs")),
    "healthy": Field("record", required=True, fields={
        "http_statuses": _statuses(
            [200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
             300, 301, 302, 303, 304, 305, 306, 307, 308]),
        "successes": _counter(),
    }),
    "unhealthy": Field("record", required=True, fields={
        "http_statuses": _statuses([429, 500, 503]),
        "tcp_failures": _counter(),
        "timeouts": _counter(),
        "http_failures": _counter(),
    }),
})

HEALTHCHECKS = Field("record", required=True, fields={
    "active": ACTIVE,
    "passive": PASSIVE,
    "threshold": Field("number", default=0, between=(0, 100)),
})


def validate_upstream_name(value: str) -> str | None:
    parsed = split_host_port(value)
    if parsed is not None and parsed[1] is not None:
        return f"Invalid name ('{value}'); no port allowed"
    if _HOSTNAME_RE.match(value):
        return None
    return f"Invalid name ('{value}'); must be a valid hostname"


def _hash_inputs(entity: dict[str, Any]) -> dict[str, Any] | None:
    """hash_on=header needs hash_on_header, and so on, as Kong checks them."""
    errors: dict[str, Any] = {}
    for which in ("hash_on", "hash_fallback"):
        mode = entity.get(which)
        needs = {"header": "header", "cookie": "cookie", "query_arg": "query_arg",
                 "uri_capture": "uri_capture"}.get(mode or "")
        if needs and not entity.get(f"{which}_{needs}"):
            errors[f"{which}_{needs}"] = "required field missing"
    if entity.get("hash_on") == "none" and entity.get("hash_fallback") not in (None, "none"):
        errors["hash_fallback"] = "must be 'none' when 'hash_on' is 'none'"
    if entity.get("hash_on") == "cookie" and entity.get("hash_fallback") not in (None, "none"):
        errors["hash_fallback"] = "must be 'none' when 'hash_on' is 'cookie'"
    return errors or None


UPSTREAMS = EntitySchema(
    name="upstreams",
    endpoint_key="name",
    description="An Upstream is a virtual hostname load-balanced across its Targets.",
    fields={
        "id": id_field(),
        "created_at": timestamp_field(),
        "updated_at": timestamp_field(),
        "name": Field("string", required=True, unique=True, validator=validate_upstream_name),
        "algorithm": Field("string", default="round-robin",
                           one_of=("round-robin", "consistent-hashing", "least-connections",
                                   "latency")),
        "hash_on": Field("string", default="none", one_of=HASH_ON),
        "hash_fallback": Field("string", default="none", one_of=HASH_ON),
        "hash_on_header": Field("string"),
        "hash_fallback_header": Field("string"),
        "hash_on_cookie": Field("string"),
        "hash_on_cookie_path": Field("string", default="/", starts_with="/"),
        "hash_on_query_arg": Field("string", len_min=1),
        "hash_fallback_query_arg": Field("string", len_min=1),
        "hash_on_uri_capture": Field("string", len_min=1),
        "hash_fallback_uri_capture": Field("string", len_min=1),
        "slots": Field("integer", default=10000, between=(10, 2**16)),
        "healthchecks": HEALTHCHECKS,
        "tags": tags_field(),
        "host_header": Field("string"),
        "client_certificate": foreign("certificates"),
        "use_srv_name": Field("boolean", default=False),
    },
    checks=[_hash_inputs],
)


def normalize_target(value: str) -> str | None:
    """Targets are `host:port`; a missing port means 8000, as in Kong."""
    parsed = split_host_port(value)
    if parsed is None or not parsed[0]:
        return None
    host, port = parsed
    if ":" in host:
        host = f"[{host}]"
    elif not _HOSTNAME_RE.match(host):
        return None
    return f"{host}:{port if port is not None else 8000}"


def _validate_target(value: str) -> str | None:
    if normalize_target(value) is None:
        return f"Invalid target ('{value}'); not a valid hostname or ip address"
    return None


def _normalize_target_check(entity: dict[str, Any]) -> None:
    entity["target"] = normalize_target(entity["target"])
    return None


TARGETS = EntitySchema(
    name="targets",
    cache_key=("upstream", "target"),
    description="A Target is an ip address or hostname with a port where a service runs.",
    fields={
        "id": id_field(),
        "created_at": timestamp_field(),
        "updated_at": timestamp_field(),
        "upstream": foreign("upstreams", on_delete="cascade", required=True),
        "target": Field("string", required=True, validator=_validate_target),
        "weight": Field("integer", default=100, between=(0, 65535)),
        "tags": tags_field(),
    },
    checks=[_normalize_target_check],
)
__all__ = ["TARGETS", "UPSTREAMS"]
