"""Node information: `/`, `/status`, `/tags`, `/plugins/enabled`, `/schemas/...`."""

from __future__ import annotations

import platform
import socket
from typing import Any

from aiohttp import web

from cp.admin.entities import page_response, page_size
from cp.admin.keys import SETTINGS, STORE
from shared import __version__
from shared import plugins as plugin_registry
from shared.entities import ENTITIES
from shared.errors import InvalidOptions
from shared.schema.fields import MISSING, text_error


async def root(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    plugins = sorted(plugin_registry.available())
    return web.json_response({
        "tagline": "Welcome to tidegate",
        "version": __version__,
        "hostname": socket.gethostname(),
        "node_id": settings.get("node_id"),
        "lua_version": None,
        "python_version": platform.python_version(),
        "configuration": {
            "role": "control_plane",
            "admin_listen": settings.get("admin_listen"),
            "cluster_listen": settings.get("cluster_listen"),
            "enforce_rbac": "on" if settings.get("enforce_rbac") else "off",
            "database": "postgres",
        },
        "plugins": {
            "available_on_server": {
                name: {"version": plugin_registry.get(name).version, "priority": None}  # type: ignore[union-attr]
                for name in plugins
            },
            "enabled_in_cluster": [],
        },
    })


async def status(request: web.Request) -> web.Response:
    store = request.app[STORE]
    try:
        counts = await store.counts()
        version = await store.version()
        reachable = True
    except Exception:  # the point of /status is to say so, not to fail
        counts, version, reachable = {}, None, False
    return web.json_response(
        {
            "database": {"reachable": reachable, "entities": counts},
            "configuration_version": version,
            "server": {"connections_active": None},
        },
        status=200 if reachable else 503,
    )


async def tags(request: web.Request) -> web.Response:
    tag = request.match_info.get("tag")
    err = text_error(tag) if tag is not None else None
    if err:
        raise InvalidOptions({"tag": err})
    page = await request.app[STORE].tagged(
        tag, size=page_size(request.query), offset=request.query.get("offset"))
    return page_response(request, page.data, page.offset)


async def plugins_enabled(request: web.Request) -> web.Response:
    return web.json_response({"enabled_plugins": sorted(plugin_registry.available())})


def _schema_json(fields: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, f in fields.items():
        item: dict[str, Any] = {"type": f.type}
        if f.required:
            item["required"] = True
        if f.default is not MISSING:
            item["default"] = f.default
        if f.one_of:
            item["one_of"] = list(f.one_of)
        if f.reference:
            item["reference"] = f.reference
        if f.fields:
            item["fields"] = _schema_json(f.fields)
        out.append({name: item})
    return out


async def entity_schema(request: web.Request) -> web.Response:
    name = request.match_info["name"].replace("-", "_")
    schema = ENTITIES.get(name)
    if schema is None:
        return web.json_response({"message": f"No entity named '{name}'"}, status=404)
    return web.json_response({"fields": _schema_json(schema.fields)})


async def plugin_schema(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    plugin = plugin_registry.get(name)
    if plugin is None:
        return web.json_response({"message": f"No plugin named '{name}'"}, status=404)
    config = {"type": "record", "fields": _schema_json(plugin.config.fields or {})}
    return web.json_response({"fields": [{"config": config}]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", root)
    app.router.add_get("/status", status)
    app.router.add_get("/tags", tags)
    app.router.add_get("/tags/{tag}", tags)
    app.router.add_get("/plugins/enabled", plugins_enabled)
    app.router.add_get("/schemas/plugins/{name}", plugin_schema)
    app.router.add_get("/schemas/{name}", entity_schema)
