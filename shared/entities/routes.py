"""routes: rules that match client requests and hand them to a service."""

from __future__ import annotations

from typing import Any

from shared.schema.entity import EntitySchema
from shared.schema.fields import Field
from shared.schema.typedefs import (
    HTTP_PROTOCOLS,
    PROTOCOLS,
    TLS_PROTOCOLS,
    WS_PROTOCOLS,
    foreign,
    id_field,
    name_field,
    protocol_family,
    protocols_field,
    tags_field,
    timestamp_field,
    validate_router_path,
    validate_wildcard_host,
)

_MATCHERS = {
    "http": ("methods", "hosts", "headers", "paths"),
    "https": ("methods", "hosts", "headers", "paths", "snis"),
    "ws": ("hosts", "headers", "paths"),
    "wss": ("hosts", "headers", "paths", "snis"),
    "grpc": ("hosts", "headers", "paths"),
    "grpcs": ("hosts", "headers", "paths", "snis"),
}


def _has(entity: dict[str, Any], key: str) -> bool:
    return entity.get(key) not in (None, [], {})


def _matching_fields(entity: dict[str, Any]) -> dict[str, Any] | None:
    """An HTTP-family route must match on something, as in Kong."""
    for protocol in entity["protocols"]:
        needed = _MATCHERS.get(protocol)
        if needed and not any(_has(entity, k) for k in needed):
            listed = ", ".join(f"'{k}'" for k in needed)
            return {
                "@entity": [
                    f"must set one of {listed} when 'protocols' is '{protocol}'"
                ]
            }
    return None


def _snis_need_tls(entity: dict[str, Any]) -> dict[str, Any] | None:
    if _has(entity, "snis") and not any(p in TLS_PROTOCOLS for p in entity["protocols"]):
        return {"snis": "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls', "
                        "'tls_passthrough' or 'wss'"}
    return None


def _no_mixed_families(entity: dict[str, Any]) -> dict[str, Any] | None:
    families = {protocol_family(p) for p in entity["protocols"]}
    if len(families) > 1 and not families <= {"http", "grpc"}:
        return {"protocols": "mixing protocols of different families is not allowed: "
                             + ", ".join(entity["protocols"])}
    return None


def _ws_no_methods(entity: dict[str, Any]) -> dict[str, Any] | None:
    if _has(entity, "methods") and set(entity["protocols"]) <= set(WS_PROTOCOLS):
        return {"methods": "cannot set 'methods' when 'protocols' is 'ws' or 'wss'"}
    return None


def _no_host_header(entity: dict[str, Any]) -> dict[str, Any] | None:
    headers = entity.get("headers") or {}
    if any(k.lower() == "host" for k in headers):
        return {"headers": "cannot contain 'host' header, which must be specified in the "
                           "'hosts' attribute"}
    return None


def service_compatible(route: dict[str, Any], fk: str, service: dict[str, Any]) -> dict | None:
    """A route's protocols must be ones its service can carry (ws routes to ws services...)."""
    if fk != "service":
        return None
    family = protocol_family(service["protocol"])
    route_families = {protocol_family(p) for p in route["protocols"]}
    if route_families <= {family} or (family == "http" and route_families <= {"http", "grpc"}):
        return None
    return {
        "protocols": f"route protocols ({', '.join(route['protocols'])}) are not compatible "
                     f"with its service's protocol '{service['protocol']}'"
    }


ROUTES = EntitySchema(
    name="routes",
    endpoint_key="name",
    description="A Route matches client requests and forwards them to a Service.",
    fields={
        "id": id_field(),
        "created_at": timestamp_field(),
        "updated_at": timestamp_field(),
        "name": name_field(),
        "protocols": protocols_field(HTTP_PROTOCOLS, PROTOCOLS),
        "methods": Field("set", elements=Field("string", match=r"^[A-Z]+$")),
        "hosts": Field("array", elements=Field("string", validator=validate_wildcard_host)),
        "paths": Field("array", elements=Field("string", validator=validate_router_path)),
        "headers": Field(
            "map",
            keys=Field("string", match=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"),
            values=Field("array", elements=Field("string"), len_min=1),
        ),
        "https_redirect_status_code": Field(
            "integer", required=True, default=426, one_of=(426, 301, 302, 307, 308)
        ),
        "regex_priority": Field("integer", default=0),
        "strip_path": Field("boolean", required=True, default=True),
        "path_handling": Field("string", default="v0", one_of=("v0", "v1")),
        "preserve_host": Field("boolean", required=True, default=False),
        "request_buffering": Field("boolean", required=True, default=True),
        "response_buffering": Field("boolean", required=True, default=True),
        "snis": Field("set", elements=Field("string", validator=validate_wildcard_host)),
        "tags": tags_field(),
        "service": foreign("services"),
    },
    checks=[_no_mixed_families, _matching_fields, _snis_need_tls, _ws_no_methods, _no_host_header],
    parent_check=service_compatible,
)
