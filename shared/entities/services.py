"""services: an upstream API or microservice that routes forward to."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from shared.schema.entity import EntitySchema
from shared.schema.fields import Field
from shared.schema.typedefs import (
    PROTOCOLS,
    foreign,
    id_field,
    name_field,
    port_field,
    tags_field,
    timeout_field,
    timestamp_field,
    validate_host,
    validate_path,
)

DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443, "grpc": 80, "grpcs": 443}


def expand_url(url: Any) -> tuple[dict[str, Any], str | None]:
    """`url` shorthand: `https://host:8443/path` → protocol, host, port, path."""
    if not isinstance(url, str):
        return {}, "expected a string"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return {}, f"could not parse url. {exc}"
    if not parts.scheme:
        return {}, "missing scheme in url"
    if not parts.hostname:
        return {}, "missing host in url"
    protocol = parts.scheme.lower()
    return {
        "protocol": protocol,
        "host": parts.hostname,
        "port": port if port is not None else DEFAULT_PORTS.get(protocol, 80),
        "path": parts.path or None,
    }, None


def _path_only_for_http(entity: dict[str, Any]) -> dict[str, Any] | None:
    if entity.get("path") is not None and entity["protocol"] not in ("http", "https", "ws", "wss"):
        return {"path": f"value must be null when 'protocol' is '{entity['protocol']}'"}
    return None


SERVICES = EntitySchema(
    name="services",
    endpoint_key="name",
    description="A Service is an upstream API or microservice that Routes forward requests to.",
    fields={
        "id": id_field(),
        "created_at": timestamp_field(),
        "updated_at": timestamp_field(),
        "name": name_field(),
        "retries": Field("integer", default=5, between=(0, 32767)),
        "protocol": Field("string", required=True, default="http", one_of=PROTOCOLS),
        "host": Field("string", required=True, validator=validate_host),
        "port": Field("integer", required=True, default=80, between=(0, 65535)),
        "path": Field("string", validator=validate_path),
        "connect_timeout": timeout_field(),
        "write_timeout": timeout_field(),
        "read_timeout": timeout_field(),
        "tags": tags_field(),
        "client_certificate": foreign("certificates"),
        "tls_verify": Field("boolean"),
        "tls_verify_depth": Field("integer", between=(0, 64)),
        "ca_certificates": Field("array", elements=Field("string", uuid=True)),
        "enabled": Field("boolean", required=True, default=True),
    },
    shorthands={"url": expand_url},
    checks=[_path_only_for_http],
)
__all__ = ["SERVICES", "port_field"]
