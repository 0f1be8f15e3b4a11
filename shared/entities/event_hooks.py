"""event_hooks: run a handler (webhook, webhook-custom, log, lambda) when an event happens.

Only the entity lives here; the delivery engine is the control plane's. Each handler's `config`
fields and defaults follow the seed reference (002).

Data planes receive only the hooks they run themselves: `log` hooks on a data-plane source
(balancer, rate-limiting-advanced), whose lines belong in the data plane's log. Every other hook
runs on the control plane, so its URL, secret, headers or Lua code never leave it.
"""

from __future__ import annotations

from typing import Any

from shared.events import SOURCE_PLANE, check_source_event
from shared.schema.entity import EntitySchema
from shared.schema.fields import Field, check
from shared.schema.typedefs import id_field, timestamp_field

_URL = Field("string", required=True, match=r"^https?://[^\s]+$")
_HEADERS = Field("map", keys=Field("string"), values=Field("string"))
# Per hook: seconds for one request (connect + answer); null = the node's event_hooks_timeout.
_TIMEOUT = Field("number", gt=0, between=(0, 3600),
                 description="Seconds for one delivery request; default: the node setting.")

HANDLER_CONFIGS: dict[str, Field] = {
    "webhook": Field("record", fields={
        "url": _URL,
        "headers": _HEADERS,
        "secret": Field("string"),
        "ssl_verify": Field("boolean", default=False),
        "timeout": _TIMEOUT,
    }),
    "webhook-custom": Field("record", fields={
        "url": _URL,
        "method": Field("string", required=True, match=r"^[A-Z]+$"),
        "payload": Field("map", keys=Field("string"), values=Field("string")),
        "payload_format": Field("boolean", default=True),
        "body": Field("string"),
        "body_format": Field("boolean", default=True),
        "headers": _HEADERS,
        "headers_format": Field("boolean", default=False),
        "secret": Field("string"),
        "ssl_verify": Field("boolean", default=False),
        "timeout": _TIMEOUT,
    }),
    "log": Field("record", fields={}),
    "lambda": Field("record", fields={
        "functions": Field("array", required=True, len_min=1, elements=Field("string")),
    }),
}


def _catalogue_and_config(entity: dict[str, Any]) -> dict[str, Any] | None:
    errors = check_source_event(entity["source"], entity.get("event"))
    if errors:
        return errors
    config, err = check(HANDLER_CONFIGS[entity["handler"]], entity.get("config") or {})
    if err:
        return {"config": err}
    entity["config"] = config
    return None


def runs_on_data_plane(hook: dict[str, Any]) -> bool:
    """A `log` hook on a source whose events happen on data planes."""
    return hook.get("handler") == "log" and SOURCE_PLANE.get(str(hook.get("source"))) == "dp"


EVENT_HOOKS = EntitySchema(
    name="event_hooks",
    description="An Event Hook runs a handler when a source emits an event.",
    fields={
        "id": id_field(),
        "created_at": timestamp_field(),
        "updated_at": timestamp_field(),
        "source": Field("string", required=True),
        "event": Field("string"),
        "handler": Field("string", required=True, one_of=tuple(HANDLER_CONFIGS)),
        "on_change": Field("boolean"),
        "snooze": Field("integer", between=(0, 2**31 - 1)),
        "config": Field("record", description="Validated by the handler's own schema."),
    },
    checks=[_catalogue_and_config],
    dynamic={"config": lambda e: HANDLER_CONFIGS.get(str(e.get("handler")))},
    data_plane_filter=runs_on_data_plane,
)
