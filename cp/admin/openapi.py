"""The Admin API's OpenAPI 3.0 document, generated from the entity schemas and the plugin registry.

Nothing here is written per entity: the paths come from the same `entity_routes()` the Admin API
registers its endpoints from, and each entity's component schema is translated field by field from
its `EntitySchema`. The document is built once and served at `GET /openapi.json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from cp.admin import event_hooks_doc
from cp.admin.entities import MAX_PAGE, EntityRoute, entity_routes, url_name
from shared import __version__
from shared import plugins as plugin_registry
from shared.entities import ENTITIES
from shared.entities.event_hooks import HANDLER_CONFIGS
from shared.schema.entity import AUTO_FIELDS, EntitySchema
from shared.schema.fields import MISSING, Field

OPENAPI_VERSION = "3.0.3"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
YAML = "application/yaml"

# Record fields whose schema depends on another field of the entity (`EntitySchema.dynamic`):
# where their variants come from, and which field picks the variant.
DYNAMIC_VARIANTS: dict[tuple[str, str], tuple[str, Callable[[], dict[str, Field]]]] = {
    ("plugins", "config"): (
        "name", lambda: {n: p.config for n, p in plugin_registry.available().items()}),
    ("event_hooks", "config"): ("handler", lambda: dict(HANDLER_CONFIGS)),
}

# Python-only regex syntax that an ECMA-262 engine rejects or reads differently.
_NOT_ECMA = re.compile(r"\(\?P|\(\?#|\(\?[aiLmsux]|\\[AZz]|[*+?}]\+|\\p\{")


def component_name(schema: EntitySchema) -> str:
    """`event_hooks` → `EventHook`."""
    return "".join(part.capitalize() for part in schema.singular.split("_"))


def ecma_pattern(pattern: str | None) -> str | None:
    """The pattern when it means the same to an ECMA-262 engine (JSON Schema's dialect)."""
    if pattern is None or _NOT_ECMA.search(pattern):
        return None
    try:
        re.compile(pattern)
    except re.error:
        return None
    return pattern


def _prefix_pattern(prefix: str) -> str:
    return "^" + "".join("\\" + c if c in r"\^$.|?*+()[]{}/" else c for c in prefix)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def field_schema(f: Field, *, name: str = "") -> dict[str, Any]:
    """JSON Schema (OpenAPI 3.0 dialect) of one field's non-null values, plus `nullable`."""
    out = _value_schema(f)
    if f.description:
        out["description"] = f.description
    if f.default is not MISSING:
        out["default"] = f.default
    if f.writeonly:
        out["writeOnly"] = True
    if name in AUTO_FIELDS and f.auto:
        out["readOnly"] = True
    if not f.required:
        out["nullable"] = True
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _value_schema(f: Field) -> dict[str, Any]:
    t = f.type
    out: dict[str, Any]
    if t == "string":
        out = {"type": "string"}
        if f.uuid:
            out["format"] = "uuid"
        if f.len_min is not None:
            out["minLength"] = f.len_min
        if f.len_max is not None:
            out["maxLength"] = f.len_max
        pattern = ecma_pattern(f.match)
        if pattern is None and f.starts_with:
            pattern = _prefix_pattern(f.starts_with)
        if pattern is not None:
            out["pattern"] = pattern
    elif t in ("integer", "number", "boolean"):
        out = {"type": t}
    elif t in ("array", "set"):
        out = {"type": "array", "items": _value_schema(f.elements) if f.elements else {}}
        if f.len_min is not None:
            out["minItems"] = f.len_min
        if f.len_max is not None:
            out["maxItems"] = f.len_max
    elif t == "map":
        out = {"type": "object",
               "additionalProperties": _value_schema(f.values) if f.values else {}}
        if f.len_min is not None:
            out["minProperties"] = f.len_min
    elif t == "record":
        out = record_schema(f.fields) if f.fields is not None else {
            "type": "object", "additionalProperties": True}
    elif t == "foreign":
        out = {
            "type": "object",
            "properties": {"id": {"type": "string", "format": "uuid"}},
            "required": ["id"],
            "additionalProperties": False,
            "description": f"A reference to a {f.reference} entity.",
        }
    else:  # json: any value
        return {}
    if f.one_of is not None:
        out["enum"] = list(f.one_of)
    if f.between is not None:
        out["minimum"], out["maximum"] = (_number(v) for v in f.between)
    if f.gt is not None:
        out["minimum"], out["exclusiveMinimum"] = _number(f.gt), True
    return out


def _input_required(name: str, f: Field) -> bool:
    """Must a request name this field? Only when nothing (default, server) fills it in."""
    if not f.required or f.auto or name in AUTO_FIELDS:
        return False
    return f.default is MISSING and not (f.type == "record" and f.fields is not None)


def record_schema(fields: dict[str, Field], *, partial: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "object",
        "properties": {name: field_schema(f, name=name) for name, f in fields.items()},
        "additionalProperties": False,
    }
    required = [] if partial else [n for n, f in fields.items() if _input_required(n, f)]
    if required:
        out["required"] = required
    return out


def entity_schema(schema: EntitySchema, *, partial: bool = False) -> dict[str, Any]:
    out = record_schema(schema.fields, partial=partial)
    props = out["properties"]
    for name in schema.dynamic:
        variants = DYNAMIC_VARIANTS.get((schema.name, name))
        base = props.get(name, {})
        if variants is None:
            continue
        selector, load = variants
        refs = [{"$ref": _variant_ref(schema, name, v)} for v in load()]
        props[name] = {
            "type": "object",
            "nullable": True,
            "anyOf": refs,
            "description": (base.get("description", "") + f" Its schema depends on "
                            f"'{selector}'; see the variants.").strip(),
        }
        names = list(load())
        if selector in props and "enum" not in props[selector]:
            props[selector] = {**props[selector], "enum": names}
    for key in schema.shorthands:
        props[key] = {"type": "string", "writeOnly": True, "nullable": True,
                      "description": "Input shorthand, expanded into other fields."}
    if schema.description:
        out["description"] = schema.description
    return out


def _variant_ref(schema: EntitySchema, field_name: str, variant: str) -> str:
    return f"#/components/schemas/{_variant_name(schema, field_name, variant)}"


def _variant_name(schema: EntitySchema, field_name: str, variant: str) -> str:
    return f"{component_name(schema)}.{field_name}.{variant}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(schema: dict[str, Any], *types: str) -> dict[str, Any]:
    return {t: {"schema": schema} for t in types}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _content(_ref("Error"), JSON)}


def _param(name: str, where: str, schema: dict[str, Any], description: str,
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path",
            "schema": schema, "description": description}


def _key_param(name: str, schema: EntitySchema) -> dict[str, Any]:
    if schema.endpoint_key:
        return _param(name, "path", {"type": "string"},
                      f"The {schema.singular}'s id or {schema.endpoint_key}.")
    return _param(name, "path", {"type": "string", "format": "uuid"},
                  f"The {schema.singular}'s id.")


def _page_params(schema: EntitySchema | None) -> list[dict[str, Any]]:
    params = [
        _param("size", "query", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                                 "default": 100}, "Page size."),
        _param("offset", "query", {"type": "string"}, "Opaque offset from a previous page."),
    ]
    if schema is None:
        return params
    if "tags" in schema.fields:
        params.append(_param("tags", "query", {"type": "string"},
                             "Only entities tagged a,b (all of them) or a/b (any of them)."))
    for k in schema.unique_fields():
        if not schema.fields[k].writeonly:
            params.append(_param(k, "query", {"type": "string"}, f"Only the one with this {k}."))
    return params


def _list_schema(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "data": {"type": "array", "items": item},
            "next": {"type": "string", "nullable": True,
                     "description": "Path of the next page, null on the last one."},
            "offset": {"type": "string", "description": "Offset of the next page."},
        },
        "required": ["data", "next"],
    }


def _operation(route: EntityRoute) -> dict[str, Any]:
    schema, parent, fk = route.schema, route.parent, route.fk
    # The entity the operation reads or writes: the parent itself for `/{children}/{c}/{fk}`.
    target = parent if route.kind == "parent" and parent is not None else schema
    name = component_name(target)
    params: list[dict[str, Any]] = []
    scope = ""
    if parent is not None and route.kind in ("list", "create", "entity"):
        params.append(_key_param("parent", parent))
        scope = f" of a {parent.singular} (as its '{fk}')"
    if route.kind in ("entity", "parent"):
        params.append(_key_param("key", schema))
    op: dict[str, Any] = {
        "tags": [url_name(target)],
        "operationId": _operation_id(route),
        "responses": {},
    }
    responses = op["responses"]
    m = route.method
    if route.kind == "list":
        op["summary"] = f"List {schema.name}{scope}"
        params += _page_params(schema)
        responses["200"] = {"description": "A page of entities.",
                            "content": _content(_list_schema(_ref(name)), JSON)}
        responses["400"] = _error("Invalid size, offset or filter.")
    elif route.kind == "create":
        op["summary"] = f"Create a {schema.singular}{scope}"
        op["requestBody"] = {"required": True, "content": _content(_ref(name), JSON, FORM)}
        responses["201"] = {"description": "Created.", "content": _content(_ref(name), JSON)}
        responses["400"] = _error("Schema or foreign key violation.")
        responses["409"] = _error("Unique constraint violation.")
        responses["415"] = _error("Unsupported Content-Type.")
    else:
        what = (f"the {target.singular} a {schema.singular} references as '{fk}'"
                if route.kind == "parent" else f"a {schema.singular}{scope}")
        op["summary"] = {"GET": "Read", "PATCH": "Update", "PUT": "Create or replace",
                         "DELETE": "Delete"}[m] + " " + what
        if m == "GET":
            responses["200"] = {"description": "The entity.",
                                "content": _content(_ref(name), JSON)}
        elif m == "DELETE":
            responses["204"] = {"description": "Deleted (or there was nothing to delete)."}
            responses["400"] = _error("Still referenced by another entity.")
        else:
            body = _ref(name + "Update") if m == "PATCH" else _ref(name)
            op["requestBody"] = {"required": True, "content": _content(body, JSON, FORM)}
            responses["200"] = {"description": "The entity after the change.",
                                "content": _content(_ref(name), JSON)}
            responses["400"] = _error("Schema or foreign key violation.")
            responses["409"] = _error("Unique constraint violation.")
            responses["415"] = _error("Unsupported Content-Type.")
    if parent is not None or route.kind != "list":
        responses["404"] = _error("Not found.")
    if params:
        op["parameters"] = params
    return op


def _operation_id(route: EntityRoute) -> str:
    slug = re.sub(r"[{}]", "", route.path).strip("/").replace("/", "_").replace("-", "_")
    return f"{route.method.lower()}_{slug}"


def _node_paths() -> dict[str, dict[str, Any]]:
    obj = {"type": "object", "additionalProperties": True}
    ok = {"description": "OK.", "content": _content(obj, JSON)}
    tag_rows = _list_schema({
        "type": "object",
        "properties": {"entity_name": {"type": "string"}, "entity_id": {"type": "string"},
                       "tag": {"type": "string"}},
    })

    def get(op_id: str, summary: str, responses: dict[str, Any],
            params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        op: dict[str, Any] = {"tags": ["information"], "operationId": op_id,
                              "summary": summary, "responses": responses}
        if params:
            op["parameters"] = params
        return {"get": op}

    tag_param = _param("tag", "path", {"type": "string"}, "A tag.")
    name_param = _param("name", "path", {"type": "string"}, "An entity name, e.g. services.")
    plugin_param = _param("name", "path", {"type": "string"}, "A plugin name.")
    return {
        "/": get("get_root", "Node information", {"200": ok}),
        "/status": get("get_status", "Health of the node and its database",
                       {"200": ok, "503": {"description": "Database unreachable.",
                                           "content": _content(obj, JSON)}}),
        "/tags": get("get_tags", "Every tagged entity, by tag",
                     {"200": {"description": "A page of tags.",
                              "content": _content(tag_rows, JSON)},
                      "400": _error("Invalid size or offset.")}, _page_params(None)),
        "/tags/{tag}": get("get_tags_tag", "The entities with one tag",
                           {"200": {"description": "A page of tags.",
                                    "content": _content(tag_rows, JSON)},
                            "400": _error("Invalid size or offset.")},
                           [tag_param, *_page_params(None)]),
        "/plugins/enabled": get("get_plugins_enabled", "Plugins this node can run",
                                {"200": {"description": "Enabled plugins.", "content": _content({
                                    "type": "object",
                                    "properties": {"enabled_plugins": {
                                        "type": "array", "items": {"type": "string"}}},
                                }, JSON)}}),
        "/schemas/plugins/{name}": get("get_schemas_plugins_name", "A plugin's config schema",
                                       {"200": ok, "404": _error("No such plugin.")},
                                       [plugin_param]),
        "/schemas/{name}": get("get_schemas_name", "An entity's schema",
                               {"200": ok, "404": _error("No such entity.")}, [name_param]),
        "/openapi.json": get("get_openapi", "This document", {"200": ok}),
        "/metrics": get("get_metrics", "This node's Prometheus metrics",
                        {"200": {"description": "Prometheus text exposition format.",
                                 "content": {"text/plain": {"schema": {"type": "string"}}}}}),
        "/clustering/data-planes": get(
            "get_clustering_data_planes", "The data planes and the config each one runs",
            {"200": {"description": "Every known data plane.",
                     "content": _content(_list_schema(obj), JSON)}}),
        "/clustering/data-planes/{id}/events": get(
            "get_clustering_data_planes_id_events",
            "Events a data plane sent up (balancer health, rate limits), newest first",
            {"200": {"description": "A page of events.", "content": _content(_list_schema({
                "type": "object", "properties": {
                    "id": {"type": "string", "format": "uuid"}, "source": {"type": "string"},
                    "event": {"type": "string"}, "data": obj,
                    "at": {"type": "number", "description": "When it happened (unix time)."},
                    "received_at": {"type": "number", "description": "When it was stored."},
                    "boot_id": {"type": "string"}, "seq": {"type": "integer"}}}), JSON)},
             "400": _error("Invalid size, offset or filter."),
             "404": _error("No such data plane.")},
            [_param("id", "path", {"type": "string"}, "The data plane's node id."),
             *_page_params(None),
             _param("source", "query", {"type": "string"}, "Only events of this source."),
             _param("event", "query", {"type": "string"}, "Only events with this name.")]),
        "/clustering/status": get("get_clustering_status",
                                  "Data planes by node id (deprecated shape)", {"200": ok}),
        "/config": {**get(
            "get_config", "Export the whole configuration as a declarative document",
            {"200": {"description": "The declarative configuration.",
                     "content": {JSON: {"schema": obj}, YAML: {"schema": {"type": "string"}}}},
             "400": _error("Invalid format option.")},
            [_param("format", "query", {"type": "string", "enum": ["json", "yaml"]},
                    "Output format; YAML also with `Accept: application/yaml`.")]),
            "post": {
                "tags": ["information"],
                "operationId": "post_config",
                "summary": "Replace the whole configuration with a declarative document",
                "requestBody": {"required": True, "content": {
                    JSON: {"schema": {
                        "type": "object", "additionalProperties": True,
                        "description": "The document (`_format_version`, `services`, ...), "
                                       "or `{\"config\": \"<JSON or YAML text>\"}`."}},
                    YAML: {"schema": {"type": "string"}},
                    FORM: {"schema": {"type": "object",
                                      "properties": {"config": {"type": "string"}},
                                      "required": ["config"]}},
                }},
                "responses": {
                    "201": {"description": "Applied.", "content": _content(obj, JSON)},
                    "400": _error("Invalid declarative configuration (code 14)."),
                    "415": _error("Unsupported Content-Type."),
                },
            },
        },
    }


def _components() -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "description": "Kong's error shape; a plain 404 carries only `message`.",
            "properties": {
                "code": {"type": "integer"},
                "name": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"description": "Errors by field, nested like the input."},
            },
            "required": ["message"],
        },
    }
    for schema in ENTITIES.values():
        name = component_name(schema)
        schemas[name] = entity_schema(schema)
        schemas[name + "Update"] = entity_schema(schema, partial=True)
        for field_name in schema.dynamic:
            variants = DYNAMIC_VARIANTS.get((schema.name, field_name))
            if variants is None:
                continue
            for variant, f in variants[1]().items():
                schemas[_variant_name(schema, field_name, variant)] = field_schema(f)
    return {"schemas": schemas}


def build_openapi() -> dict[str, Any]:
    """The whole document: entity paths generated from ENTITIES, the routes and the plugin
    registry; the node endpoints (information, /config, /clustering) described once above."""
    paths: dict[str, dict[str, Any]] = dict(_node_paths())
    paths.update(event_hooks_doc.paths())
    for route in entity_routes():
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "tidegate Admin API",
            "version": __version__,
            "description": "Kong-compatible Admin API of the tidegate control plane. Generated "
                           "from the entity schemas; errors use Kong's "
                           "{code, name, message, fields} shape.",
        },
        "tags": [{"name": "information"}]
        + [{"name": url_name(s), "description": s.description} for s in ENTITIES.values()],
        "paths": paths,
        "components": _components(),
    }


_CACHE: dict[str, bytes] = {}


def document_bytes() -> bytes:
    if "doc" not in _CACHE:
        _CACHE["doc"] = json.dumps(build_openapi()).encode()
    return _CACHE["doc"]


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=document_bytes(), content_type=JSON)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi_json)
