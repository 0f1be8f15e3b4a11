"""keyauth_credentials: the API keys the key-auth plugin accepts, each one owned by a consumer.

Served at `/key-auths` and `/consumers/{c}/key-auth`; kong.yml nests them as
`consumers[].keyauth_credentials[]`. A credential created without a key gets a random URL-safe one.
The key is shown by the Admin API (as Kong does) but is never written to logs or error reports.
"""

from __future__ import annotations

import secrets
from typing import Any

from shared.schema.entity import EntitySchema
from shared.schema.fields import Field
from shared.schema.typedefs import foreign, id_field, tags_field, timestamp_field

KEY_BYTES = 24  # 32 URL-safe characters


def generate_key() -> str:
    return secrets.token_urlsafe(KEY_BYTES)


def _key_or_generated(entity: dict[str, Any]) -> None:
    if entity.get("key") is None:
        entity["key"] = generate_key()
    return None


def expires_at(credential: dict[str, Any]) -> int | None:
    """When a credential with a `ttl` stops being accepted (epoch seconds), else None."""
    ttl = credential.get("ttl")
    if not ttl:
        return None
    return int(credential.get("created_at") or 0) + int(ttl)


KEYAUTH_CREDENTIALS = EntitySchema(
    name="keyauth_credentials",
    endpoint_key="key",
    admin_path="key-auths",
    nested_path="key-auth",
    description="An API key that identifies a consumer to the key-auth plugin.",
    fields={
        "id": id_field(),
        "created_at": timestamp_field(),
        "consumer": foreign("consumers", on_delete="cascade", required=True),
        "key": Field("string", unique=True, len_min=1, len_max=1000,
                     description="The API key; a random one is generated when none is given."),
        "ttl": Field("integer", between=(1, 100_000_000),
                     description="Seconds after created_at when the key stops being accepted."),
        "tags": tags_field(),
    },
    checks=[_key_or_generated],
)

__all__ = ["KEYAUTH_CREDENTIALS", "expires_at", "generate_key"]
