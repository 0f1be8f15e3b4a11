"""rate-limiting-advanced: Kong's config schema, plus a per-message WebSocket option.

Kong's fields and defaults: `limit[]` / `window_size[]` (equal-length lists, several windows at
once, kept sorted by limit as Kong stores them), `window_type` sliding (default) or fixed,
`identifier`, `namespace` (generated when absent, so every data plane receiving the plugin shares
its counters), `strategy` local or redis, `sync_rate`, `redis.*`, `hide_client_headers`,
`retry_after_jitter_max`, `disable_penalty`, `error_code`, `error_message`. `dictionary_name` is
accepted for Kong compatibility and means nothing here (counters live in the data plane's memory).

Kong's `cluster` strategy keeps counters in the node's database; data planes have none (hybrid and
DB-less), so it is refused, as Kong refuses it there, unless `sync_rate` is -1 (then it is local).

The namespace is generated where the config is validated first: by the control plane in hybrid
mode (so all data planes share it), but by each DB-less data plane loading a kong.yml (and again
on every reload) — DB-less data planes sharing a Redis need an explicit `namespace`. Of the
`redis` record, `send_timeout` (redis-py has one socket timeout: `read_timeout`),
`server_name` and `keepalive_backlog` are accepted for compatibility and not used.

`websocket` (tidegate's): `limit_messages` also counts each message a client sends on an upgraded
connection (against `websocket.limit`/`window_size`, by default the plugin's own), per the same
identifier; over the limit the connection is closed with `close_code` (1008 policy violation).

Rules spanning fields are checked by `_config_rules` (the record's validator), which also fills
what Kong fills at that point: the namespace, the sorted windows, `sync_rate` -1 for local.
"""

from __future__ import annotations

import uuid
from typing import Any

from shared.plugins import DEFAULT_PROTOCOLS, PluginSchema, register
from shared.schema.fields import Field
from shared.schema.typedefs import GRPC_PROTOCOLS, HTTP_PROTOCOLS, WS_PROTOCOLS, validate_path

MAX_INT = 2**31 - 2
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
CLUSTER_REFUSED = (
    "[rate-limiting-advanced] strategy 'cluster' is not supported with Hybrid deployments or "
    "DB-less mode (data planes have no database). Use the 'redis' strategy for one limit across "
    "data planes, the 'local' strategy, or set 'sync_rate' to -1.")
SAME_LENGTH = "You must provide the same number of windows and limits"


def _close_code(code: int) -> str | None:
    """A close code an endpoint may send (RFC 6455 §7.4: not 1004-1006 or 1015)."""
    if (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999:
        return None
    return "expected a WebSocket close code: 1000-1003, 1007-1014 or 3000-4999"


def _timeout() -> Field:
    return Field("integer", between=(0, MAX_INT))


REDIS = Field("record", required=True, fields={
    "host": Field("string", default="127.0.0.1"),
    "port": Field("integer", default=6379, between=(0, 65535)),
    "username": Field("string"),
    "password": Field("string"),
    "database": Field("integer", default=0, between=(0, MAX_INT)),
    "ssl": Field("boolean", default=False),
    "ssl_verify": Field("boolean", default=False),
    "server_name": Field("string"),
    # Kong's older single timeout; connect/send/read_timeout override it each (milliseconds).
    "timeout": Field("integer", default=2000, between=(0, MAX_INT)),
    "connect_timeout": _timeout(),
    "send_timeout": _timeout(),
    "read_timeout": _timeout(),
    "keepalive_pool_size": Field("integer", default=256, between=(1, MAX_INT)),
    "keepalive_backlog": Field("integer", between=(0, MAX_INT)),  # accepted; the pool has none
})

WEBSOCKET = Field("record", required=True, fields={
    "limit_messages": Field("boolean", required=True, default=False),
    "limit": Field("array", len_min=1, elements=Field("number", gt=0)),
    "window_size": Field("array", len_min=1, elements=Field("number", gt=0)),
    "close_code": Field("integer", required=True, default=1008, validator=_close_code),
    "close_message": Field("string", len_max=123),  # null: error_message
})


def _sorted_windows(limits: list[float], sizes: list[float]) -> tuple[list[float], list[float]]:
    """Kong stores the (limit, window_size) pairs ordered by limit."""
    pairs = sorted(zip(limits, sizes, strict=True), key=lambda p: p[0])
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _sync_rate_rule(config: dict[str, Any]) -> str | None:
    rate = config.get("sync_rate")
    if config["strategy"] == "local":
        if rate is not None and rate > -1:
            return "sync_rate cannot be configured when using a local strategy"
        config["sync_rate"] = -1
        return None
    if rate is None:
        return "sync_rate is required if not using a local strategy"
    if 0 < rate < 0.02:
        return "Config option 'sync_rate' must not be a decimal between 0 and 0.02"
    if rate < 0 and rate != -1:
        return "sync_rate must be -1 (local only), 0 (synchronous) or seconds between syncs"
    return None


def _websocket_rule(ws: dict[str, Any]) -> str | None:
    given = (ws.get("limit") is not None, ws.get("window_size") is not None)
    if given[0] != given[1] or (all(given) and len(ws["limit"]) != len(ws["window_size"])):
        return f"websocket: {SAME_LENGTH}"
    if all(given):
        ws["limit"], ws["window_size"] = _sorted_windows(ws["limit"], ws["window_size"])
    return None


def _config_rules(config: dict[str, Any]) -> str | None:
    """Kong's entity checks on a field-valid config; fills namespace, order and sync_rate."""
    if len(config["limit"]) != len(config["window_size"]):
        return SAME_LENGTH
    config["limit"], config["window_size"] = _sorted_windows(config["limit"],
                                                             config["window_size"])
    if config["strategy"] == "cluster" and config.get("sync_rate") != -1:
        return CLUSTER_REFUSED
    if config["strategy"] == "redis" and not config["redis"].get("host"):
        return "No redis config provided"
    problem = _sync_rate_rule(config)
    if problem:
        return problem
    if config["identifier"] == "header" and not config.get("header_name"):
        return "No header name provided"
    if config["identifier"] == "path" and not config.get("path"):
        return "No path provided"
    if config["retry_after_jitter_max"] < 0:
        return "Non-negative retry_after_jitter_max value is expected"
    problem = _websocket_rule(config["websocket"])
    if problem:
        return problem
    if not config.get("namespace"):
        config["namespace"] = uuid.uuid4().hex  # Kong's `auto`: a random 32-character string
    return None


RATE_LIMITING_ADVANCED = register(PluginSchema(
    name="rate-limiting-advanced",
    version="0.1.0",
    protocols=(*GRPC_PROTOCOLS, *HTTP_PROTOCOLS, *WS_PROTOCOLS),
    default_protocols=DEFAULT_PROTOCOLS,
    description="Limit how many requests (and WebSocket messages) clients make per time window.",
    config=Field("record", required=True, validator=_config_rules, fields={
        "identifier": Field("string", required=True, default="consumer", one_of=(
            "ip", "credential", "consumer", "service", "header", "path")),
        "window_size": Field("array", required=True, len_min=1,
                             elements=Field("number", gt=0)),
        "window_type": Field("string", required=True, default="sliding",
                             one_of=("fixed", "sliding")),
        "limit": Field("array", required=True, len_min=1, elements=Field("number", gt=0)),
        "sync_rate": Field("number"),
        "namespace": Field("string", len_min=1),
        "strategy": Field("string", required=True, default="local",
                          one_of=("cluster", "redis", "local")),
        "dictionary_name": Field("string", required=True,
                                 default="kong_rate_limiting_counters"),
        "hide_client_headers": Field("boolean", required=True, default=False),
        "retry_after_jitter_max": Field("number", required=True, default=0),
        "header_name": Field("string", match=HEADER_NAME),
        "path": Field("string", validator=validate_path),
        "redis": REDIS,
        "disable_penalty": Field("boolean", required=True, default=False),
        "error_code": Field("integer", required=True, default=429, between=(100, 599)),
        "error_message": Field("string", required=True, default="API rate limit exceeded"),
        "websocket": WEBSOCKET,
    }),
))
