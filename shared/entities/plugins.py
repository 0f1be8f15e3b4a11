"""plugins: a plugin's config, applied globally or scoped to a service, route and/or consumer."""

from __future__ import annotations

from typing import Any

from shared import plugins as registry
from shared.schema.entity import EntitySchema
from shared.schema.fields import Field, check
from shared.schema.typedefs import PROTOCOLS, foreign, id_field, tags_field, timestamp_field


def _known_plugin(name: str) -> str | None:
    if registry.get(name) is None:
        return f"plugin '{name}' not enabled; add it to the 'plugins' configuration property"
    return None


def _config_by_plugin(entity: dict[str, Any]) -> dict[str, Any] | None:
    """Validate `config` with the named plugin's own schema; fill its defaults."""
    plugin = registry.get(entity["name"])
    assert plugin is not None  # the name field's validator ran first
    config, err = check(plugin.config, entity.get("config") or {})
    if err:
        return {"config": err}
    entity["config"] = config
    if entity.get("protocols") is None:
        entity["protocols"] = list(plugin.default_protocols)
    unsupported = [p for p in entity["protocols"] if p not in plugin.protocols]
    if unsupported:
        return {"protocols": "expected one of: " + ", ".join(plugin.protocols)}
    if plugin.no_consumer and entity.get("consumer") is not None:
        return {"consumer": "value must be null"}
    return None


PLUGINS = EntitySchema(
    name="plugins",
    cache_key=("name", "route", "service", "consumer"),
    description="A Plugin runs during the request/response lifecycle of the proxied traffic.",
    fields={
        "id": id_field(),
        "created_at": timestamp_field(),
        "updated_at": timestamp_field(),
        "name": Field("string", required=True, validator=_known_plugin),
        "instance_name": Field("string", unique=True, match=r"^[\w.~-]+$"),
        "route": foreign("routes", on_delete="cascade"),
        "service": foreign("services", on_delete="cascade"),
        "consumer": foreign("consumers", on_delete="cascade"),
        "config": Field("record", description="Validated by the plugin's own schema."),
        "protocols": Field("set", elements=Field("string", one_of=PROTOCOLS), len_min=1),
        "enabled": Field("boolean", required=True, default=True),
        "tags": tags_field(),
    },
    checks=[_config_by_plugin],
    dynamic={"config": lambda e: getattr(registry.get(str(e.get("name"))), "config", None)},
)
