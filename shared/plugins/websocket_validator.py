"""websocket-validator: check WebSocket messages against a JSON Schema (draft 4).

Kong's config shape: `client` and `upstream`, each with optional `text` and `binary`, each a
`{type: "draft4", schema: "<JSON Schema as a string>"}`. A schema that is not JSON or not a valid
draft-4 schema is refused when the plugin is saved, so a data plane never meets one.
"""

from __future__ import annotations

import json
from typing import Any

from shared.plugins import PluginSchema, register
from shared.schema.fields import Field
from shared.schema.typedefs import WS_PROTOCOLS


def _check_schema(value: Any) -> str | None:
    from jsonschema import Draft4Validator
    from jsonschema.exceptions import SchemaError

    try:
        schema = json.loads(value)
    except ValueError as exc:
        return f"not valid JSON: {exc}"
    try:
        Draft4Validator.check_schema(schema)
    except SchemaError as exc:
        return f"not a valid draft4 schema: {exc.message}"
    return None


_RULE = Field("record", fields={
    "type": Field("string", required=True, default="draft4", one_of=("draft4",)),
    "schema": Field("string", required=True, validator=_check_schema),
})
_DIRECTION = Field("record", fields={"text": _RULE, "binary": _RULE})


def _needs_a_rule(config: dict[str, Any]) -> str | None:
    for direction in ("client", "upstream"):
        for kind in ("text", "binary"):
            if (config.get(direction) or {}).get(kind):
                return None
    return "at least one of these fields must be non-empty: 'client', 'upstream'"


WEBSOCKET_VALIDATOR = register(PluginSchema(
    name="websocket-validator",
    version="0.1.0",
    protocols=WS_PROTOCOLS,
    default_protocols=WS_PROTOCOLS,
    description="Validate WebSocket messages against a JSON Schema (draft 4) per direction "
                "and frame type; an invalid message closes the connection with 1007.",
    config=Field("record", required=True, validator=_needs_a_rule, fields={
        "client": _DIRECTION,
        "upstream": _DIRECTION,
    }),
))
