"""key-auth: identify the consumer from an API key in a header or the query string.

Where keys come from: tidegate has no `keyauth_credentials` entity yet, so a consumer's keys are
its tags of the form `key-auth:<key>` (e.g. `tags: ["key-auth:s3cr3t"]`). That works unchanged
from kong.yml and from the Admin API, and is indexed once per config snapshot. A proper
credentials entity can replace `keys_of()` later without touching the plugin's behaviour.
`key_in_body` is accepted by the schema but not used (the proxy streams bodies).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

from dp.plugins.base import Plugin
from dp.plugins.pdk import Kong

TAG_PREFIX = "key-auth:"
NO_KEY = "No API key found in request"
BAD_KEY = "Invalid authentication credentials"
CHALLENGE = {"WWW-Authenticate": 'Key realm="tidegate"'}


def keys_of(consumers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """API key → consumer, from the consumers' `key-auth:` tags."""
    out = {}
    for consumer in consumers.values():
        for tag in consumer.get("tags") or ():
            if tag.startswith(TAG_PREFIX) and len(tag) > len(TAG_PREFIX):
                out[tag[len(TAG_PREFIX):]] = consumer
    return out


class KeyAuth(Plugin):
    name = "key-auth"
    priority = 1250
    version = "0.1.0"

    def __init__(self) -> None:
        self.keys: dict[str, dict[str, Any]] = {}
        self.consumers: dict[str, dict[str, Any]] = {}

    def load(self, config: Any) -> None:
        """Index the snapshot's consumers (called when the plugin index is built)."""
        self.consumers = config.entities["consumers"]
        self.keys = keys_of(self.consumers)

    async def access(self, kong: Kong, conf: dict[str, Any]) -> None:
        if not conf.get("run_on_preflight", True) and kong.request.get_method() == "OPTIONS":
            return
        key, where, name = self._find_key(kong, conf)
        consumer = self.keys.get(key) if key is not None else None
        if consumer is None:
            anonymous = conf.get("anonymous")
            if anonymous:
                self._anonymous(kong, anonymous)
                return
            kong.response.error(401, NO_KEY if key is None else BAD_KEY, CHALLENGE)
        assert consumer is not None
        if conf.get("hide_credentials"):
            self._hide(kong, where, name)
        kong.client.authenticate(consumer, {"consumer": {"id": consumer["id"]}})
        set_header = kong.service.request.set_header
        set_header("X-Consumer-ID", consumer["id"])
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

    @staticmethod
    def _hide(kong: Kong, where: str, name: str) -> None:
        if where == "header":
            kong.service.request.clear_header(name)
        elif where == "query":
            pairs = parse_qsl(kong.request.get_raw_query(), keep_blank_values=True)
            kong.service.request.set_raw_query(urlencode([(k, v) for k, v in pairs if k != name]))
