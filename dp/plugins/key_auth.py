"""key-auth: identify the consumer from an API key in a header or the query string.

Keys are `keyauth_credentials` entities (`/consumers/{c}/key-auth`, kong.yml
`consumers[].keyauth_credentials[]`), indexed key → consumer once per config snapshot, so a
request costs one dict lookup. A credential with a `ttl` stops being accepted `ttl` seconds after
its `created_at`. Keys are never logged. `key_in_body` is accepted by the schema but not used (the
proxy streams bodies).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode

from dp.plugins.base import Plugin
from dp.plugins.pdk import Kong
from shared.entities.keyauth_credentials import expires_at

NO_KEY = "No API key found in request"
BAD_KEY = "Invalid authentication credentials"
CHALLENGE = {"WWW-Authenticate": 'Key realm="tidegate"'}


class Credential(NamedTuple):
    consumer: dict[str, Any]
    credential: dict[str, Any]  # what the PDK reports as authenticated: ids only, never the key
    expires: int | None  # epoch seconds, from the credential's ttl


def keys_of(
    credentials: dict[str, dict[str, Any]], consumers: dict[str, dict[str, Any]]
) -> dict[str, Credential]:
    """API key → its consumer, from the snapshot's key-auth credentials."""
    out = {}
    for credential in credentials.values():
        consumer = consumers.get((credential.get("consumer") or {}).get("id", ""))
        key = credential.get("key")
        if consumer is not None and key:
            ref = {"id": credential["id"], "consumer": {"id": consumer["id"]}}
            out[key] = Credential(consumer, ref, expires_at(credential))
    return out


class KeyAuth(Plugin):
    name = "key-auth"
    priority = 1250
    version = "0.1.0"

    def __init__(self) -> None:
        self.keys: dict[str, Credential] = {}
        self.consumers: dict[str, dict[str, Any]] = {}

    def load(self, config: Any) -> None:
        """Index the snapshot's credentials (called when the plugin index is built)."""
        self.consumers = config.entities["consumers"]
        self.keys = keys_of(config.entities["keyauth_credentials"], self.consumers)

    async def access(self, kong: Kong, conf: dict[str, Any]) -> None:
        if not conf.get("run_on_preflight", True) and kong.request.get_method() == "OPTIONS":
            return
        key, where, name = self._find_key(kong, conf)
        found = self.keys.get(key) if key is not None else None
        if found is not None and found.expires is not None and time.time() >= found.expires:
            found = None
        if found is None:
            anonymous = conf.get("anonymous")
            if anonymous:
                self._anonymous(kong, anonymous)
                return
            kong.response.error(401, NO_KEY if key is None else BAD_KEY, CHALLENGE)
        assert found is not None
        consumer = found.consumer
        if conf.get("hide_credentials"):
            self._hide(kong, where, name)
        kong.client.authenticate(consumer, found.credential)
        set_header = kong.service.request.set_header
        set_header("X-Consumer-ID", consumer["id"])
        set_header("X-Credential-Identifier", found.credential["id"])
        if consumer.get("username"):
            set_header("X-Consumer-Username", consumer["username"])
        if consumer.get("custom_id"):
            set_header("X-Consumer-Custom-ID", consumer["custom_id"])
        kong.service.request.clear_header("X-Anonymous-Consumer")

    @staticmethod
    def _find_key(kong: Kong, conf: dict[str, Any]) -> tuple[str | None, str, str]:
        names = conf.get("key_names") or ["apikey"]
        if conf.get("key_in_header", True):
            for name in names:
                value = kong.request.get_header(name)
                if value:
                    return value, "header", name
        if conf.get("key_in_query", True) and kong.request.get_raw_query():
            for name in names:
                value = kong.request.get_query_arg(name)
                if value:
                    return value, "query", name
        return None, "", ""

    def _anonymous(self, kong: Kong, ref: str) -> None:
        consumer = self.consumers.get(ref) or next(
            (c for c in self.consumers.values() if c.get("username") == ref), None)
        if consumer is None:
            kong.response.error(500, "An unexpected error occurred")
        assert consumer is not None
        kong.client.authenticate(consumer, None)
        kong.service.request.set_header("X-Consumer-ID", consumer["id"])
        if consumer.get("username"):
            kong.service.request.set_header("X-Consumer-Username", consumer["username"])
        kong.service.request.set_header("X-Anonymous-Consumer", "true")
        kong.service.request.clear_header("X-Credential-Identifier")  # no client-sent spoofs

    @staticmethod
    def _hide(kong: Kong, where: str, name: str) -> None:
        if where == "header":
            kong.service.request.clear_header(name)
        elif where == "query":
            pairs = parse_qsl(kong.request.get_raw_query(), keep_blank_values=True)
            kong.service.request.set_raw_query(urlencode([(k, v) for k, v in pairs if k != name]))
