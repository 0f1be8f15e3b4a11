"""certificates and snis: TLS certificate/key pairs and the server names they serve."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from shared.schema.entity import EntitySchema
from shared.schema.fields import Field
from shared.schema.typedefs import (
    foreign,
    id_field,
    tags_field,
    timestamp_field,
    validate_wildcard_host,
)


def _validate_cert(value: str) -> str | None:
    try:
        x509.load_pem_x509_certificate(value.encode()).public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        return f"invalid certificate: {exc}"
    return None


def _validate_key(value: str) -> str | None:
    try:
        serialization.load_pem_private_key(value.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return f"invalid key: {exc}"
    return None


def _public_bytes(key: Any) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_matches(entity: dict[str, Any]) -> dict[str, Any] | None:
    errors = []
    for cert_field, key_field in (("cert", "key"), ("cert_alt", "key_alt")):
        if entity.get(cert_field) is None or entity.get(key_field) is None:
            continue  # a missing half of the pair is _alt_pair's error
        cert = x509.load_pem_x509_certificate(entity[cert_field].encode())
        key = serialization.load_pem_private_key(entity[key_field].encode(), password=None)
        if _public_bytes(cert.public_key()) != _public_bytes(key.public_key()):
            suffix = " (alternative)" if cert_field == "cert_alt" else ""
            errors.append(f"certificate does not match key{suffix}")
    return {"@entity": errors} if errors else None


def _alt_pair(entity: dict[str, Any]) -> dict[str, Any] | None:
    if (entity.get("cert_alt") is None) != (entity.get("key_alt") is None):
        return {"@entity": ["all or none of these fields must be set: 'cert_alt', 'key_alt'"]}
    return None


CERTIFICATES = EntitySchema(
    name="certificates",
    description="A certificate/key pair that the proxy presents for its SNIs.",
    fields={
        "id": id_field(),
        "created_at": timestamp_field(),
        "updated_at": timestamp_field(),
        "cert": Field("string", required=True, validator=_validate_cert),
        "key": Field("string", required=True, validator=_validate_key),
        "cert_alt": Field("string", validator=_validate_cert),
        "key_alt": Field("string", validator=_validate_key),
        "tags": tags_field(),
        # Names served by this certificate: stored as `snis` entities, shown here as a list.
        "snis": Field("array", elements=Field("string", validator=validate_wildcard_host)),
    },
    checks=[_alt_pair, _key_matches],
)

SNIS = EntitySchema(
    name="snis",
    endpoint_key="name",
    description="A server name (SNI) mapped to a certificate.",
    fields={
        "id": id_field(),
        "created_at": timestamp_field(),
        "updated_at": timestamp_field(),
        "name": Field("string", required=True, unique=True, validator=validate_wildcard_host),
        "tags": tags_field(),
        "certificate": foreign("certificates", on_delete="cascade", required=True),
    },
)
