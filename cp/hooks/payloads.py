"""Event payloads in Kong's shape, built from change-log rows, and the hook matching rules.

crud: `{"source": "crud", "event": "consumers", "operation": "create", "schema": "consumers",
"entity": {…}}` plus `old_entity` on updates; a hook on `consumers` gets every operation on
consumers, one on `consumers:create` only creates. dao:crud: event = the operation, any entity.
Secrets of other hooks (`config.secret`) never leave in a payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.entities import ENTITIES

REDACTED = "<redacted>"
PING_SOURCE = "kong:event_hooks"


@dataclass(frozen=True)
class Event:
    source: str
    names: tuple[str, ...]   # event names a hook may subscribe to for this event
    data: dict[str, Any]     # the event's fields (operation, entity, ...)


def public_hook(hook: dict[str, Any]) -> dict[str, Any]:
    """A hook as it may be shown to a receiver or a log: its secret replaced."""
    config = hook.get("config")
    if isinstance(config, dict) and config.get("secret") is not None:
        return {**hook, "config": {**config, "secret": REDACTED}}
    return hook


def _public(entity_type: str, entity: dict[str, Any] | None) -> dict[str, Any] | None:
    if entity is None:
        return None
    schema = ENTITIES.get(entity_type)
    shown = schema.public(entity) if schema is not None else entity
    return public_hook(shown) if entity_type == "event_hooks" else shown


def from_change(row: dict[str, Any]) -> list[Event]:
    """The crud and dao:crud events of one change-log row."""
    table, op = row["entity_type"], row["op"]
    new = _public(table, row.get("new_entity"))
    old = _public(table, row.get("old_entity"))
    data: dict[str, Any] = {"operation": op, "schema": table,
                            "entity": old if op == "delete" else new}
    if op == "update":
        data["old_entity"] = old
    return [Event("crud", (table, f"{table}:{op}"), data), Event("dao:crud", (op,), data)]


def matches(hook: dict[str, Any], event: Event) -> str | None:
    """The event name this hook receives the event under, or None when it does not match."""
    if hook.get("source") != event.source:
        return None
    wanted = hook.get("event")
    if wanted is None:
        return event.names[0]
    return wanted if wanted in event.names else None


def payload(event: Event, name: str) -> dict[str, Any]:
    """What a handler receives: the event's fields plus `event` and `source`."""
    return {**event.data, "event": name, "source": event.source}


def ping(hook: dict[str, Any]) -> dict[str, Any]:
    return {"source": PING_SOURCE, "event": "ping", "event_hooks": public_hook(hook)}
