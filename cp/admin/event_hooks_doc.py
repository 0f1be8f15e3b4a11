"""OpenAPI paths of the event-hook endpoints beyond CRUD (see `cp.admin.event_hooks`)."""

from __future__ import annotations

from typing import Any

JSON = "application/json"
_OBJ = {"type": "object", "additionalProperties": True}
_ERROR = {"$ref": "#/components/schemas/Error"}
_KEY = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"},
        "description": "The event hook's id."}


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema or _OBJ}}}


def _op(op_id: str, summary: str, responses: dict[str, Any],
        params: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    op = {"tags": ["event-hooks"], "operationId": op_id, "summary": summary,
          "responses": responses, **extra}
    if params:
        op["parameters"] = params
    return op


def paths() -> dict[str, dict[str, Any]]:
    not_found = _json("No such event hook.", _ERROR)
    source = {"name": "source", "in": "path", "required": True, "schema": {"type": "string"},
              "description": "A source, e.g. crud."}
    delivery = {"name": "delivery", "in": "path", "required": True,
                "schema": {"type": "string", "format": "uuid"}, "description": "A delivery id."}
    page = [{"name": "size", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
             "description": "Page size."},
            {"name": "offset", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "Offset from a previous page."}]
    return {
        "/event-hooks/sources": {"get": _op(
            "get_event_hooks_sources", "Every source, its events and their template fields",
            {"200": _json("source -> event -> {fields, description, unique}.")})},
        "/event-hooks/sources/{source}": {"get": _op(
            "get_event_hooks_sources_source", "The events of one source",
            {"200": _json("event -> {fields, description, unique}."),
             "404": _json("No such source.", _ERROR)}, [source])},
        "/event-hooks/{key}/test": {"post": _op(
            "post_event_hooks_key_test",
            "Run the hook's handler now on the posted data (snooze and on_change skipped)",
            {"200": _json("{data, result: {body, headers, status}}."),
             "400": _json("Unreadable body.", _ERROR), "404": not_found}, [_KEY],
            requestBody={"required": False, "content": {JSON: {"schema": _OBJ}}})},
        "/event-hooks/{key}/ping": {"get": _op(
            "get_event_hooks_key_ping", "Send the ping event to a webhook hook's URL",
            {"200": _json("The ping payload sent."),
             "400": _json("The handler does not support ping.", _ERROR),
             "404": not_found}, [_KEY])},
        "/event-hooks/{key}/deliveries": {"get": _op(
            "get_event_hooks_key_deliveries",
            "The hook's deliveries, newest first, with every attempt",
            {"200": _json("{data: [delivery], next, disabled}."),
             "400": _json("Invalid size or offset.", _ERROR), "404": not_found},
            [_KEY, *page])},
        "/event-hooks/{key}/deliveries/{delivery}/retry": {"post": _op(
            "post_event_hooks_key_deliveries_delivery_retry",
            "Queue a delivery again now (also re-enables a hook disabled by 410)",
            {"202": _json("Queued."), "404": _json("No such hook or delivery.", _ERROR)},
            [_KEY, delivery])},
    }
