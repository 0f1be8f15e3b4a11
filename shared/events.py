"""The event catalogue: every source, its events, their template fields and `unique` keys.

Served by `/event-hooks/sources`, checked when an event hook is saved, and used by both planes
(crud and dao:crud happen on the control plane; balancer and rate-limiting-advanced on data planes).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

CRUD_FIELDS = ["operation", "entity", "old_entity", "schema"]
OPERATIONS = ("create", "update", "delete")

# Where each source's events happen; the `log` handler writes to that plane's log.
SOURCE_PLANE = {"crud": "cp", "dao:crud": "cp", "balancer": "dp", "rate-limiting-advanced": "dp"}


def catalogue() -> dict[str, dict[str, dict[str, Any]]]:
    """source → event → {fields[, description, unique]}, in the shape Kong's API shows."""
    from shared.entities import ENTITIES  # late: entities import this module's users

    crud: dict[str, dict[str, Any]] = {}
    for table in sorted(ENTITIES):
        crud[table] = {"fields": list(CRUD_FIELDS)}
        for op in OPERATIONS:
            crud[f"{table}:{op}"] = {"fields": list(CRUD_FIELDS)}
    return {
        "balancer": {
            "health": {"fields": ["upstream_id", "ip", "port", "hostname", "health"]},
        },
        "crud": crud,
        "dao:crud": {op: {"fields": list(CRUD_FIELDS)} for op in OPERATIONS},
        "rate-limiting-advanced": {
            "rate-limit-exceeded": {
                "description": "Run an event when a rate limit has been exceeded",
                "fields": ["consumer", "ip", "service", "rate", "limit", "window"],
                "unique": ["consumer", "ip", "service"],
            },
        },
    }


def check_source_event(source: str, event: str | None) -> dict[str, str] | None:
    """Errors for a hook whose source/event is not in the catalogue, naming the valid ones."""
    sources = catalogue()
    if source not in sources:
        return {"source": f"source '{source}' is not registered; expected one of: "
                          + ", ".join(sorted(sources))}
    if event is not None and event not in sources[source]:
        names = sorted(sources[source])
        shown = ", ".join(names) if len(names) <= 12 else ", ".join(names[:12]) + ", ..."
        return {"event": f"source '{source}' has no '{event}' event; expected one of: {shown}"}
    return None


def digest(source: str, event: str, data: dict[str, Any]) -> str:
    """An event's identity for `on_change` (both planes): MD5 over the source's `unique` fields
    when it defines them (rate-limiting-advanced: consumer, ip, service), else the whole payload."""
    unique = (catalogue().get(source, {}).get(event) or {}).get("unique")
    subject = {k: data.get(k) for k in unique} if unique else data
    return hashlib.md5(json.dumps(subject, sort_keys=True, default=str).encode()).hexdigest()
