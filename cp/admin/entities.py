"""Entity endpoints, generated from the schema as Kong does — never hand-written per entity.

For every entity: `/{entities}` and `/{entities}/{key}`. For every foreign key `child.fk → parent`:
`/{parents}/{p}/{children}[/{c}]` scoped to that parent, and `/{children}/{c}/{fk}` for the
parent itself (e.g. `/routes/{r}/service`). Collections are named after the table unless the
schema says otherwise (`admin_path`, `nested_path`: `/key-auths`, `/consumers/{c}/key-auth`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from cp.admin.body import read_body
from cp.admin.keys import STORE
from cp.store import Store
from shared.entities import ENTITIES
from shared.errors import InvalidOptions, InvalidSize
from shared.schema.entity import EntitySchema
from shared.schema.fields import text_error

MAX_PAGE = 1000
_TAGS_AND = re.compile(r"^[^,/]+(,[^,/]+)*$")
_TAGS_OR = re.compile(r"^[^,/]+(/[^,/]+)+$")

NOT_FOUND = {"message": "Not found"}


def url_name(schema: EntitySchema) -> str:
    """The entity's top-level collection in URLs (`/services`, `/key-auths`)."""
    return schema.admin_path or schema.name.replace("_", "-")


def nested_url_name(schema: EntitySchema) -> str:
    """The collection under a parent (`/services/{s}/routes`, `/consumers/{c}/key-auth`)."""
    return schema.nested_path or url_name(schema)


def _store(request: web.Request) -> Store:
    return request.app[STORE]


def page_size(query: Any) -> int:
    raw = query.get("size")
    if raw is None:
        return 100
    try:
        size = int(raw)
    except ValueError:
        raise InvalidSize("size must be a number") from None
    if not 1 <= size <= MAX_PAGE:
        raise InvalidSize(f"size must be an integer between 1 and {MAX_PAGE}")
    return size


def tag_filter(query: Any) -> tuple[list[str] | None, bool]:
    raw = query.get("tags")
    if raw is None:
        return None, False
    err = text_error(raw)
    if err:
        raise InvalidOptions({"tags": err})
    if _TAGS_AND.match(raw):
        return raw.split(","), False
    if _TAGS_OR.match(raw):
        return raw.split("/"), True
    raise InvalidOptions({"tags": "invalid filter syntax: use a,b for AND or a/b for OR"})


def page_response(request: web.Request, data: list[Any], offset: str | None) -> web.Response:
    body: dict[str, Any] = {"data": data, "next": None}
    if offset is not None:
        args = {k: v for k, v in request.query.items() if k != "offset"}
        args["offset"] = offset
        body["next"] = f"{request.path}?{urlencode(args)}"
        body["offset"] = offset
    return web.json_response(body)


def _list(schema: EntitySchema, scope_fk: str | None = None, parent: EntitySchema | None = None):
    filterable = [k for k in schema.unique_fields() if not schema.fields[k].writeonly]

    async def handler(request: web.Request) -> web.Response:
        filters: dict[str, Any] = {}
        if scope_fk and parent:
            owner = await _store(request).get(parent, request.match_info["parent"])
            if owner is None:
                return web.json_response(NOT_FOUND, status=404)
            filters[f"{scope_fk}_id"] = owner["id"]
        for k in filterable:
            if k in request.query:
                filters[k] = request.query[k]
                err = text_error(filters[k])
                if err:
                    raise InvalidOptions({k: err})
        tags, tags_any = tag_filter(request.query) if "tags" in schema.fields else (None, False)
        page = await _store(request).page(
            schema, size=page_size(request.query), offset=request.query.get("offset"),
            tags=tags, tags_any=tags_any, filters=filters,
        )
        return page_response(request, page.data, page.offset)

    return handler


def _create(schema: EntitySchema, scope_fk: str | None = None, parent: EntitySchema | None = None):
    async def handler(request: web.Request) -> web.Response:
        forced = None
        if scope_fk and parent:
            owner = await _store(request).get(parent, request.match_info["parent"])
            if owner is None:
                return web.json_response(NOT_FOUND, status=404)
            forced = {scope_fk: {"id": owner["id"]}}
        data = await read_body(request, schema)
        entity = await _store(request).insert(schema, data, forced=forced)
        return web.json_response(entity, status=201)

    return handler


async def _scope(request: web.Request, scope_fk: str | None, parent: EntitySchema | None):
    """(scope columns, forced fields) for a nested URL, or None when the parent is missing."""
    if not (scope_fk and parent):
        return {}, None
    owner = await _store(request).get(parent, request.match_info["parent"])
    if owner is None:
        return None
    return {f"{scope_fk}_id": owner["id"]}, {scope_fk: {"id": owner["id"]}}


def _entity(schema: EntitySchema, scope_fk: str | None = None, parent: EntitySchema | None = None):
    """GET/PATCH/PUT/DELETE on one entity, optionally within its parent's scope."""

    async def handler(request: web.Request) -> web.Response:
        store = _store(request)
        key = request.match_info["key"]
        scoped = await _scope(request, scope_fk, parent)
        if scoped is None:
            return web.json_response(NOT_FOUND, status=404)
        scope, forced = scoped
        method = request.method
        if method == "GET":
            entity = await store.get(schema, key, scope=scope)
            if entity is None:
                return web.json_response(NOT_FOUND, status=404)
            return web.json_response(entity)
        if method == "DELETE":
            await store.delete(schema, key, scope=scope)
            return web.Response(status=204)
        data = await read_body(request, schema)
        if method == "PATCH":
            entity = await store.update(schema, key, data, forced=forced, scope=scope)
        else:
            entity = await store.upsert(schema, key, data, forced=forced, scope=scope)
        return web.json_response(entity)

    return handler


def _parent_of(child: EntitySchema, fk: str, parent: EntitySchema):
    """`/routes/{r}/service`: the referenced parent, read or changed through its child."""

    async def handler(request: web.Request) -> web.Response:
        store = _store(request)
        entity = await store.get(child, request.match_info["key"])
        if entity is None or entity.get(fk) is None:
            return web.json_response(NOT_FOUND, status=404)
        parent_id = entity[fk]["id"]
        if request.method == "GET":
            found = await store.get(parent, parent_id)
            if found is None:
                return web.json_response(NOT_FOUND, status=404)
            return web.json_response(found)
        if request.method == "DELETE":
            await store.delete(parent, parent_id)
            return web.Response(status=204)
        data = await read_body(request, parent)
        if request.method == "PATCH":
            return web.json_response(await store.update(parent, parent_id, data))
        return web.json_response(await store.upsert(parent, parent_id, data))

    return handler


ENTITY_METHODS = ("GET", "PATCH", "PUT", "DELETE")


@dataclass(frozen=True)
class EntityRoute:
    """One generated endpoint: the Admin API registers it and the OpenAPI document describes it.

    kind: `list` and `create` (a collection), `entity` (one entity by id or endpoint key) or
    `parent` (`/{children}/{key}/{fk}`: the parent a child references). For nested routes `fk`
    names the child's foreign key and `parent` the entity it references.
    """

    method: str
    path: str
    kind: str
    schema: EntitySchema
    fk: str | None = None
    parent: EntitySchema | None = None


def entity_routes() -> Iterator[EntityRoute]:
    """Every entity endpoint, in registration order; the single definition of the URL space."""
    for schema in ENTITIES.values():
        base = f"/{url_name(schema)}"
        yield EntityRoute("GET", base, "list", schema)
        yield EntityRoute("POST", base, "create", schema)
        for method in ENTITY_METHODS:
            yield EntityRoute(method, base + "/{key}", "entity", schema)
        for fk, f in schema.foreign_fields().items():
            parent = ENTITIES[f.reference or ""]
            nested = f"/{url_name(parent)}/{{parent}}/{nested_url_name(schema)}"
            yield EntityRoute("GET", nested, "list", schema, fk, parent)
            yield EntityRoute("POST", nested, "create", schema, fk, parent)
            for method in ENTITY_METHODS:
                yield EntityRoute(method, nested + "/{key}", "entity", schema, fk, parent)
                yield EntityRoute(method, f"{base}/{{key}}/{fk}", "parent", schema, fk, parent)


def _handler(route: EntityRoute):
    if route.kind == "list":
        return _list(route.schema, route.fk, route.parent)
    if route.kind == "create":
        return _create(route.schema, route.fk, route.parent)
    if route.kind == "entity":
        return _entity(route.schema, route.fk, route.parent)
    assert route.fk is not None and route.parent is not None
    return _parent_of(route.schema, route.fk, route.parent)


def add_routes(app: web.Application) -> None:
    router = app.router
    for route in entity_routes():
        if route.method == "GET":
            router.add_get(route.path, _handler(route))
        else:
            router.add_route(route.method, route.path, _handler(route))
