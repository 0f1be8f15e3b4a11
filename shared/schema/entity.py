"""An entity's schema: its fields plus the rules that span fields, and how input becomes an entity.

One `EntitySchema` per entity drives the Admin API endpoints, the SQL columns, the declarative
loader and the data plane's config. `process()` is the single path from user input to a stored
entity: shorthands, unknown fields, defaults, types, constraints, entity checks, ids, timestamps.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.errors import SchemaViolation
from shared.schema.fields import MISSING, UNKNOWN, Field, check_record

EntityCheck = Callable[[dict[str, Any]], "dict[str, Any] | None"]
Shorthand = Callable[[Any], "tuple[dict[str, Any], str | None]"]
ParentCheck = Callable[[dict[str, Any], str, dict[str, Any]], "dict[str, Any] | None"]

AUTO_FIELDS = ("id", "created_at", "updated_at")


@dataclass
class EntitySchema:
    """Schema of one entity type.

    name: table and Admin API collection (`services`).
    endpoint_key: field usable instead of the id in URLs and references (`name`, `username`).
    cache_key: fields that together must be unique (plugins: name+route+service+consumer).
    checks: entity-level rules; each returns field errors or None.
    shorthands: input-only fields expanded into real ones (service `url`).
    parent_check: rule between an entity and a referenced parent (route vs service protocols).
    to_data_plane: whether data planes receive this entity type.
    data_plane_filter: which entities of such a type a control plane streams to data planes
      (None: all of them); event_hooks sends only what a data plane runs itself.
    admin_path: the Admin API collection when it is not the table name with `_` → `-`
      (`keyauth_credentials` is served at `/key-auths`).
    nested_path: the collection under a parent when it differs from admin_path
      (`/consumers/{c}/key-auth`).
    """

    name: str
    fields: dict[str, Field]
    endpoint_key: str | None = None
    cache_key: tuple[str, ...] | None = None
    checks: list[EntityCheck] = field(default_factory=list)
    shorthands: dict[str, Shorthand] = field(default_factory=dict)
    parent_check: ParentCheck | None = None
    to_data_plane: bool = True
    data_plane_filter: Callable[[dict[str, Any]], bool] | None = None
    description: str = ""
    admin_path: str | None = None
    nested_path: str | None = None
    # Record fields whose own schema depends on the entity (a plugin's config on its name).
    dynamic: dict[str, Callable[[dict[str, Any]], Field | None]] = field(default_factory=dict)

    @property
    def singular(self) -> str:
        return self.name[:-1] if self.name.endswith("s") else self.name

    def foreign_fields(self) -> dict[str, Field]:
        return {k: f for k, f in self.fields.items() if f.type == "foreign"}

    def unique_fields(self) -> list[str]:
        return [k for k, f in self.fields.items() if f.unique]

    def process(
        self,
        data: Any,
        *,
        existing: dict[str, Any] | None = None,
        partial: bool = False,
        entity_id: str | None = None,
    ) -> dict[str, Any]:
        """Turn input into a complete, valid entity, or raise SchemaViolation.

        partial=True is PATCH: `data` is merged into `existing` (records key by key).
        Otherwise `data` is the whole entity (POST, PUT): missing fields take their defaults.
        """
        if not isinstance(data, dict):
            raise SchemaViolation({"@entity": ["expected an input table"]})
        data, errors = self._expand_shorthands(data)
        for auto in AUTO_FIELDS:
            if auto in self.fields and auto in data and auto != "id":
                data.pop(auto)  # server-owned; Kong ignores them on input
        if partial and existing is not None:
            data = merge_entity(self.fields, existing, data)
        now = int(time.time())
        given_id = data.get("id")
        entity, field_errors = check_record(self.fields, {k: v for k, v in data.items()})
        errors.update(field_errors or {})
        if errors:
            raise SchemaViolation(errors)
        entity["id"] = entity_id or given_id or (existing or {}).get("id") or str(uuid.uuid4())
        if "created_at" in self.fields:
            entity["created_at"] = (existing or {}).get("created_at") or now
        if "updated_at" in self.fields:
            entity["updated_at"] = now
        check_errors: dict[str, Any] = {}
        for rule in self.checks:
            for k, v in (rule(entity) or {}).items():
                if k == "@entity":
                    check_errors.setdefault("@entity", []).extend(v if isinstance(v, list) else [v])
                else:
                    check_errors.setdefault(k, v)
        if check_errors:
            raise SchemaViolation(check_errors)
        return entity

    def _expand_shorthands(self, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        data = dict(data)
        errors: dict[str, Any] = {}
        for key, expand in self.shorthands.items():
            if key not in data:
                continue
            value = data.pop(key)
            if value is None:
                continue
            expanded, err = expand(value)
            if err:
                errors[key] = err
            else:
                data.update(expanded)
        return data, errors

    def public(self, entity: dict[str, Any]) -> dict[str, Any]:
        """The entity as users see it: write-only fields (secrets) removed."""
        hidden = [k for k, f in self.fields.items() if f.writeonly]
        if not hidden:
            return entity
        return {k: v for k, v in entity.items() if k not in hidden}


def merge_entity(fields: dict[str, Field], old: dict[str, Any], patch: dict[str, Any]) -> dict:
    """PATCH semantics (Kong's): record fields merge key by key; every other value is replaced."""
    merged = {k: v for k, v in old.items() if k in fields}
    for k, v in patch.items():
        f = fields.get(k)
        if f is not None and f.type == "record" and isinstance(v, dict):
            old_value = merged.get(k)
            if isinstance(old_value, dict):
                v = merge_entity(f.fields, old_value, v) if f.fields else _merge_dicts(old_value, v)
            merged[k] = v
        else:
            merged[k] = v
    return merged


def _merge_dicts(old: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = dict(old)
    for k, v in patch.items():
        old_value = merged.get(k)
        merged[k] = _merge_dicts(old_value, v) if isinstance(old_value, dict) and isinstance(
            v, dict) else v
    return merged


def at_least_one_of(*names: str) -> EntityCheck:
    def rule(entity: dict[str, Any]) -> dict[str, Any] | None:
        if any(entity.get(n) not in (None, [], {}, "") for n in names):
            return None
        listed = ", ".join(f"'{n}'" for n in names)
        return {"@entity": [f"at least one of these fields must be non-empty: {listed}"]}

    return rule


def mutually_required(*names: str) -> EntityCheck:
    def rule(entity: dict[str, Any]) -> dict[str, Any] | None:
        present = [entity.get(n) is not None for n in names]
        if all(present) or not any(present):
            return None
        listed = ", ".join(f"'{n}'" for n in names)
        return {"@entity": [f"all or none of these fields must be set: {listed}"]}

    return rule


__all__ = ["MISSING", "UNKNOWN", "EntitySchema", "at_least_one_of", "merge_entity"]
