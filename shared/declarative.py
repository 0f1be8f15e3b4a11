"""Declarative configuration (kong.yml): parse, load (validate + flatten) and export.

One loader for every consumer: the control plane's `POST /config`, `tidegate config validate`
and the DB-less data plane. `load()` turns a kong.yml-shaped document into flat, validated
entities with ids, `{entity_type: [entity, ...]}` in dependency order — the shape
`Store.replace_config()` and the data plane's config take.

What `load()` does, in order:

1. walks the document, pulling nested entities out of their parents (`services[].routes[]`,
   `services[].plugins[]`, `routes[].plugins[]`, `consumers[].plugins[]`,
   `consumers[].keyauth_credentials[]`, `upstreams[].targets[]`, `certificates[].snis[]`) and
   remembering where each came from, so errors can mirror the input;
2. per entity type, parents first: resolves references (`service: my-svc`, `{name: ...}`,
   `{id: ...}`) against the entities of the same file, gives every entity an id (the one it
   carries, or a deterministic one: the same file always gets the same ids), and validates it with
   its schema;
3. checks what spans entities: unique fields and cache keys within the file, and the rules
   between a child and its parent (route protocols vs the service's).

Every problem is collected before raising one `DeclarativeConfigError` whose `fields` mirror the
input (int keys for list positions) and whose `flattened` list names each bad entity.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import yaml

from shared.entities import ENTITIES
from shared.entities.upstreams import normalize_target
from shared.errors import DeclarativeConfigError, SchemaViolation
from shared.schema.entity import EntitySchema
from shared.schema.fields import MISSING, Field, is_uuid

FORMAT_VERSION = "3.0"
SUPPORTED_VERSIONS = ("1.1", "2.1", "3.0")

# Top-level keys that describe the file rather than hold entities; accepted and ignored.
META_KEYS = ("_format_version", "_transform", "_comment", "_workspace", "_info", "_konnect")

# Where entities may be nested: parent type → {key inside the parent: the child's foreign key}.
NESTED: dict[str, dict[str, str]] = {
    "certificates": {"snis": "certificate"},
    "services": {"routes": "service", "plugins": "service"},
    "routes": {"plugins": "route"},
    "consumers": {"plugins": "consumer", "keyauth_credentials": "consumer"},
    "upstreams": {"targets": "upstream"},
}

# Generated ids are uuid5 in this namespace (fixed forever: changing it changes every id).
ID_NAMESPACE = uuid.UUID("f6ec6393-97de-43c6-b72b-d923f6fc2530")
_PLACEHOLDER_ID = "00000000-0000-0000-0000-000000000000"

# Fields never echoed back in error reports (secrets).
_SECRET_FIELDS = {"certificates": ("key", "key_alt"), "keyauth_credentials": ("key",)}

# Characters that make a pre-3.0 route path a regex (3.0 wants those prefixed with `~`).
_LEGACY_REGEX = re.compile(r"[\\^$*+?()\[\]{}|]")

Path = tuple[Any, ...]


# ---- parsing ----------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """safe_load without its surprises: timestamps stay strings, duplicate keys are errors."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Any:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` keys may be overridden by the mapping's own keys
        key = loader.construct_object(key_node)  # type: ignore[no-untyped-call]
        try:
            duplicate = key in seen
        except TypeError:
            duplicate = False
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r}", key_node.start_mark,
            )
        seen[key] = True
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_error(message: str) -> DeclarativeConfigError:
    return DeclarativeConfigError({"@entity": [message]})


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem is None:
        return str(exc).replace("\n", " ")
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(exc, "context", None)
    return f"{context + ': ' if context else ''}{problem}{where}"


def parse(text: str | bytes, fmt: str | None = None) -> dict[str, Any]:
    """A declarative config document from YAML or JSON text.

    fmt: "json", "yaml", or None to detect (JSON is tried first when the text looks like it).
    Raises DeclarativeConfigError with a one-line reason on any problem.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _parse_error(f"failed parsing declarative configuration: not UTF-8 ({exc})") \
                from None
    if not text.strip():
        raise _parse_error("failed parsing declarative configuration: empty document")
    looks_json = text.lstrip().startswith(("{", "["))
    if fmt == "json" or (fmt is None and looks_json):
        try:
            data = json.loads(text)
        except ValueError as exc:
            if fmt == "json":
                raise _parse_error(f"failed parsing declarative configuration as JSON: {exc}") \
                    from None
        else:
            return _top_level(data)
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        raise _parse_error(
            f"failed parsing declarative configuration as YAML: {_yaml_problem(exc)}") from None
    except (ValueError, TypeError, RecursionError) as exc:  # e.g. unhashable keys
        raise _parse_error(f"failed parsing declarative configuration: {exc}") from None
    return _top_level(data)


def _top_level(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        kind = "nothing" if data is None else type(data).__name__
        raise _parse_error(
            f"expected an object (a mapping of entity types) at the top level, got {kind}")
    return data


def dump_yaml(document: dict[str, Any]) -> str:
    """YAML text for an exported config: block style, multi-line strings (PEM) as `|` blocks."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=100)


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


# ---- loading ----------------------------------------------------------------------------------


@dataclass
class _Item:
    """One entity of the file: where it was, what it said, what it became."""

    type: str
    raw: dict[str, Any]
    path: Path
    index: int
    parent: tuple[str, _Item] | None = None  # (foreign key, enclosing entity)
    id: str | None = None
    entity: dict[str, Any] | None = None
    refs: dict[str, str] = field(default_factory=dict)  # foreign key → parent id in the file
    errors: dict[str, Any] = field(default_factory=dict)

    @property
    def schema(self) -> EntitySchema:
        return ENTITIES[self.type]

    def add_error(self, key: str, error: Any) -> None:
        if key == "@entity":
            messages = error if isinstance(error, list) else [error]
            self.errors.setdefault("@entity", []).extend(messages)
        elif key not in self.errors:
            self.errors[key] = error


@dataclass
class _Index:
    ids: dict[str, _Item] = field(default_factory=dict)
    names: dict[str, _Item] = field(default_factory=dict)


class _Load:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.errors: dict[Any, Any] = {}  # top-level problems, mirroring the input
        self.items: list[_Item] = []
        self.index: dict[str, _Index] = {name: _Index() for name in ENTITIES}
        self.taken_ids: dict[str, set[str]] = {name: set() for name in ENTITIES}
        self.version: str | None = None

    # ---- walking the document ----

    def run(self) -> dict[str, list[dict[str, Any]]]:
        self._check_meta()
        for key, value in self.document.items():
            if not isinstance(key, str):
                self.errors[str(key)] = "unknown field"
            elif key in META_KEYS:
                continue
            elif key in ENTITIES and ENTITIES[key].to_data_plane:
                self._walk(key, value, (key,), None)
            elif key in ENTITIES:
                self.errors[key] = f"'{key}' cannot be set in a declarative configuration"
            else:
                self.errors[key] = "unknown field"
        by_type: dict[str, list[_Item]] = {name: [] for name in ENTITIES}
        for item in self.items:
            by_type[item.type].append(item)
        for name in ENTITIES:  # dependency order: parents have ids before their children
            for item in by_type[name]:
                self._process(item)
            self._index(by_type[name])
        self._check_unique(by_type)
        self._check_parents()
        self._raise_if_invalid()
        return {
            name: [item.entity for item in by_type[name] if item.entity is not None]
            for name, schema in ENTITIES.items() if schema.to_data_plane
        }

    def _check_meta(self) -> None:
        version = self.document.get("_format_version", MISSING)
        if isinstance(version, (int, float)) and not isinstance(version, bool):
            version = str(version)  # `_format_version: 3.0` unquoted in YAML
        if version is MISSING or not isinstance(version, str):
            self.errors["_format_version"] = (
                "expected a version string; set '_format_version' to one of: "
                + ", ".join(SUPPORTED_VERSIONS))
        elif version not in SUPPORTED_VERSIONS:
            self.errors["_format_version"] = (
                f"unsupported version '{version}'; expected one of: "
                + ", ".join(SUPPORTED_VERSIONS))
        else:
            self.version = version
        transform = self.document.get("_transform")
        if transform is not None and not isinstance(transform, bool):
            self.errors["_transform"] = "expected a boolean"

    def _walk(self, type_: str, value: Any, path: Path, parent: tuple[str, _Item] | None) -> None:
        if not isinstance(value, list):
            if value is not None:
                self._set_error(path, "expected an array")
            return
        nested = NESTED.get(type_, {})
        for i, raw in enumerate(value):
            if type_ == "snis" and isinstance(raw, str):
                raw = {"name": raw}  # certificates[].snis may list bare names
            if not isinstance(raw, dict):
                self._set_error((*path, i), "expected a record")
                continue
            raw = dict(raw)
            children = {key: raw.pop(key) for key in nested if key in raw}
            item = _Item(type_, raw, (*path, i), i, parent)
            self.items.append(item)
            for key, child_value in children.items():
                self._walk(key, child_value, (*path, i, key), (nested[key], item))

    def _set_error(self, path: Path, error: Any) -> None:
        node = self.errors
        for seg in path[:-1]:
            child = node.get(seg)
            if not isinstance(child, dict):
                child = node[seg] = {}
            node = child
        last = path[-1]
        if isinstance(node.get(last), dict) and isinstance(error, dict):
            node[last].update(error)
        else:
            node[last] = error

    # ---- entities ----

    def _process(self, item: _Item) -> None:
        schema = item.schema
        data = dict(item.raw)
        if item.type == "routes" and self.version in ("1.1", "2.1"):
            data["paths"] = _legacy_paths(data.get("paths"))
        parent_fk = item.parent[0] if item.parent else None
        if item.parent is not None:
            fk, parent = item.parent
            given = data.get(fk)
            if given is not None:
                rid, err = self._resolve(fk, schema.fields[fk], given)
                if err is not None:
                    item.add_error(fk, err)
                elif rid != parent.id:
                    item.add_error(fk, f"conflicts with the enclosing {parent.schema.singular}")
            data[fk] = {"id": parent.id}
            item.refs[fk] = parent.id or _PLACEHOLDER_ID
        for fk, f in schema.foreign_fields().items():
            if fk == parent_fk or data.get(fk) is None:
                continue
            rid, err = self._resolve(fk, f, data[fk])
            if err is not None:
                item.add_error(fk, err)
                data[fk] = {"id": _PLACEHOLDER_ID}  # keep validating the other fields
            else:
                data[fk] = {"id": rid}
                item.refs[fk] = rid or _PLACEHOLDER_ID
        given_id = data.get("id")
        if schema.cache_key is None:
            item.id = self._claim_id(item, given_id, self._natural_key(item, data))
        try:
            entity = schema.process(data, entity_id=item.id)
        except SchemaViolation as exc:
            for key, error in exc.errors.items():
                item.add_error(key, error)
            entity = None
        if schema.cache_key is not None:
            item.id = self._claim_id(item, given_id, self._natural_key(item, data))
        if entity is None or item.errors:
            return
        entity["id"] = item.id
        created = item.raw.get("created_at")
        if "created_at" in schema.fields and isinstance(created, int) and created > 0 \
                and not isinstance(created, bool):
            entity["created_at"] = created  # an exported file keeps its timestamps
        item.entity = entity

    def _resolve(self, fk: str, f: Field, value: Any) -> tuple[str | None, str | None]:
        """A reference in the file → (parent id, None) or (None, why not)."""
        parent = ENTITIES[f.reference or ""]
        index = self.index[parent.name]
        what = parent.singular
        key_name = parent.endpoint_key
        if isinstance(value, str):
            found = index.ids.get(value) or (index.names.get(value) if key_name else None)
            if found is not None:
                return found.id, None
            by = f"id or {key_name}" if key_name else "id"
            return None, f"no {what} with {by} '{value}' in this declarative config"
        if isinstance(value, dict) and len(value) == 1:
            ((k, v),) = value.items()
            if k == "id" and isinstance(v, str):
                found = index.ids.get(v)
                if found is not None:
                    return found.id, None
                return None, f"no {what} with id '{v}' in this declarative config"
            if k == key_name and isinstance(v, str):
                found = index.names.get(v)
                if found is not None:
                    return found.id, None
                return None, f"no {what} with {k} '{v}' in this declarative config"
        forms = f"an id or {key_name}" if key_name else "an id"
        braces = f"{{id: ...}} or {{{key_name}: ...}}" if key_name else "{id: ...}"
        return None, f"expected {forms} of a {what} (a string or {braces})"

    def _natural_key(self, item: _Item, data: dict[str, Any]) -> str | None:
        """What identifies this entity in the file besides its position, if anything."""
        schema = item.schema
        if schema.cache_key is not None:
            parts = []
            for k in schema.cache_key:
                if schema.fields[k].type == "foreign":
                    parts.append(item.refs.get(k, ""))
                else:
                    v = data.get(k)
                    if k == "target" and isinstance(v, str):
                        v = normalize_target(v) or v
                    parts.append("" if v is None else str(v))
            return "|".join(parts)
        secret = _SECRET_FIELDS.get(item.type, ())
        for k in (schema.endpoint_key or "", *schema.unique_fields()):
            # not a secret: an id derived from an API key would let anyone test guesses of it
            if k and k not in secret and isinstance(data.get(k), str):
                return f"{k}={data[k]}"
        if item.type == "certificates" and isinstance(data.get("cert"), str):
            return "cert=" + data["cert"].strip()
        return None

    def _claim_id(self, item: _Item, given: Any, natural: str | None) -> str:
        """The entity's id: its own, or one derived from its type and natural key or position."""
        taken = self.taken_ids[item.type]
        if isinstance(given, str) and is_uuid(given):
            if given in taken:
                item.add_error("id", f"another {item.schema.singular} in this declarative config "
                                     f"has the id '{given}'")
            taken.add(given)
            return given
        if natural is not None:
            seed = f"{item.type}|{natural}"
        elif item.parent is not None:
            fk, parent = item.parent
            seed = f"{item.type}|{fk}={parent.id}|#{item.index}"
        else:
            seed = f"{item.type}|#{item.index}"
        new_id = str(uuid.uuid5(ID_NAMESPACE, seed))
        n = 1
        while new_id in taken:  # a duplicate; the uniqueness checks will say so
            new_id = str(uuid.uuid5(ID_NAMESPACE, f"{seed}|{n}"))
            n += 1
        taken.add(new_id)
        return new_id

    def _index(self, items: list[_Item]) -> None:
        for item in items:
            if item.id is None:
                continue
            index = self.index[item.type]
            index.ids.setdefault(item.id, item)
            key = item.schema.endpoint_key
            if key and isinstance(item.raw.get(key), str):
                index.names.setdefault(item.raw[key], item)

    # ---- rules across entities ----

    def _check_unique(self, by_type: dict[str, list[_Item]]) -> None:
        for name, items in by_type.items():
            schema = ENTITIES[name]
            unique = [k for k in schema.unique_fields() if not schema.fields[k].writeonly]
            seen: dict[tuple[str, Any], _Item] = {}
            for item in items:
                entity = item.entity
                for k in unique:
                    # an invalid entity still claims its names, so duplicates are reported too
                    value = entity.get(k) if entity is not None else item.raw.get(k)
                    if value is None or (entity is None and not isinstance(value, str)):
                        continue
                    first = seen.setdefault((k, _hashable(value)), item)
                    if first is not item:
                        shown = "this value" if k in _SECRET_FIELDS.get(name, ()) else f"'{value}'"
                        item.add_error(k, f"{shown} is already used by the {schema.singular} at "
                                          f"{_dotted(first.path)}")
                if schema.cache_key and entity is not None:
                    key = tuple(_hashable(entity.get(k)) for k in schema.cache_key)
                    first = seen.setdefault(("@cache_key", key), item)
                    if first is not item:
                        listed = ", ".join(schema.cache_key)
                        item.add_error("@entity", f"the {schema.singular} at {_dotted(first.path)}"
                                                  f" has the same {listed}")
        for item in self.items:  # an entity that broke a rule is not part of the config
            if item.errors:
                item.entity = None

    def _check_parents(self) -> None:
        for item in self.items:
            schema = item.schema
            if item.entity is None or schema.parent_check is None:
                continue
            for fk, parent_id in item.refs.items():
                parent = self.index[schema.fields[fk].reference or ""].ids.get(parent_id)
                if parent is None or parent.entity is None:
                    continue
                err = schema.parent_check(item.entity, fk, parent.entity)
                for key, error in (err or {}).items():
                    item.add_error(key, error)
            if item.errors:
                item.entity = None

    # ---- reporting ----

    def _raise_if_invalid(self) -> None:
        flattened = []
        for item in self.items:
            if not item.errors:
                continue
            self._set_error(item.path, dict(item.errors))
            flattened.append(_flattened(item))
        if self.errors:
            raise DeclarativeConfigError(self.errors, flattened)


def _legacy_paths(paths: Any) -> Any:
    """Before 3.0, regex paths had no `~` prefix: add it where a path is clearly a regex."""
    if not isinstance(paths, list):
        return paths
    return [
        f"~{p}" if isinstance(p, str) and not p.startswith("~") and _LEGACY_REGEX.search(p) else p
        for p in paths
    ]


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, list):
        return json.dumps(value, default=str)
    return value


def _dotted(path: Path) -> str:
    return ".".join(str(seg + 1) if isinstance(seg, int) else seg for seg in path)


def _error_list(errors: Any, prefix: str = "") -> list[dict[str, Any]]:
    """Nested field errors → [{field, message, type}], field paths as in the message."""
    out: list[dict[str, Any]] = []
    if isinstance(errors, dict):
        for key, value in errors.items():
            name = str(key + 1) if isinstance(key, int) else str(key)
            if name == "@entity":
                messages = value if isinstance(value, list) else [value]
                for message in messages:
                    entry: dict[str, Any] = {"type": "entity", "message": str(message)}
                    if prefix:
                        entry["field"] = prefix
                    out.append(entry)
                continue
            out.extend(_error_list(value, f"{prefix}.{name}" if prefix else name))
    elif isinstance(errors, list):
        for message in errors:
            out.append({"type": "field", "field": prefix, "message": str(message)})
    else:
        out.append({"type": "field", "field": prefix, "message": str(errors)})
    return out


def _flattened(item: _Item) -> dict[str, Any]:
    schema = item.schema
    shown = {k: v for k, v in item.raw.items()
             if k not in _SECRET_FIELDS.get(item.type, ())
             and not (k in schema.fields and schema.fields[k].writeonly)}
    entry: dict[str, Any] = {"entity_type": schema.singular, "entity_path": _dotted(item.path)}
    key = schema.endpoint_key
    if key and isinstance(item.raw.get(key), str) and key not in _SECRET_FIELDS.get(item.type, ()):
        entry["entity_name"] = item.raw[key]
    if isinstance(item.raw.get("id"), str):
        entry["entity_id"] = item.raw["id"]
    if isinstance(item.raw.get("tags"), list):
        entry["entity_tags"] = item.raw["tags"]
    entry["entity"] = json.loads(json.dumps(shown, default=str))
    entry["errors"] = _error_list(item.errors)
    return entry


def load(data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Validate a parsed declarative config; flat entities with ids, by type, parents first.

    Raises DeclarativeConfigError listing every problem found.
    """
    if not isinstance(data, dict):
        raise _parse_error("expected an object (a mapping of entity types) at the top level")
    return _Load(data).run()


def load_text(text: str | bytes, fmt: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """parse() then load()."""
    return load(parse(text, fmt))


def error_lines(exc: DeclarativeConfigError) -> list[str]:
    """A human report of the error: its message, then one line per field error."""
    lines = [exc.message]
    for entry in exc.flattened:
        label = entry.get("entity_name") or entry.get("entity_id") or ""
        who = f"{entry['entity_type']} {label}".strip() + f" (at {entry['entity_path']})"
        for err in entry["errors"]:
            where = f"{err['field']}: " if err.get("field") else ""
            lines.append(f"  {who}: {where}{err['message']}")
    return lines


# ---- export -----------------------------------------------------------------------------------


def export(config: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """A kong.yml-shaped document (flat form, ids kept) that load() turns back into `config`."""
    document: dict[str, Any] = {"_format_version": FORMAT_VERSION}
    for name, schema in ENTITIES.items():
        if not schema.to_data_plane or not config.get(name):
            continue
        rows = [_exported(schema, entity) for entity in config[name]]
        rows.sort(key=lambda e: str(e.get("id")))
        document[name] = rows
    return document


def _exported(schema: EntitySchema, entity: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in entity.items():
        f = schema.fields.get(key)
        if f is None or f.writeonly or key == "updated_at":
            continue
        if schema.name == "certificates" and key == "snis":
            continue  # SNIs are exported as their own entities
        pruned = _prune(f, value)
        if pruned is MISSING:
            continue
        out[key] = pruned
    return out


def _prune(f: Field, value: Any) -> Any:
    """Drop nulls that load() would give back anyway (the field's default is null)."""
    if value is None:
        return MISSING if f.default is MISSING and not f.required else None
    if f.type == "record" and f.fields and isinstance(value, dict):
        out = {}
        for key, v in value.items():
            sub = f.fields.get(key)
            pruned = _prune(sub, v) if sub is not None else v
            if pruned is not MISSING:
                out[key] = pruned
        return out
    return value


__all__ = [
    "FORMAT_VERSION",
    "SUPPORTED_VERSIONS",
    "dump_yaml",
    "error_lines",
    "export",
    "load",
    "load_text",
    "parse",
]
