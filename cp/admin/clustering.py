"""`/clustering/data-planes` and `/clustering/status`: what every data plane runs.

Kong's fields, plus what Kong lacks: the version each data plane acknowledged, the control plane's
current version, why a data plane refused the newest config, and its event queue as it last
reported it (`events.dropped`: lost to its bound since the data plane started).

`/clustering/data-planes/{id}/events`: the events a data plane sent up, newest (last stored)
first, Kong-style pages (`size`, default 100, at most 1000; `offset` from the previous page's
`next`), optionally only one `source` / `event`. Each item: id, source, event, data (the event's
payload), at (when it happened, data plane clock), received_at (when stored), boot_id and seq
(the data plane process and the event's number within it).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from cp.admin.entities import NOT_FOUND, page_size
from cp.admin.keys import CLUSTER
from shared.errors import InvalidOffset, InvalidOptions
from shared.schema.fields import text_error


def _row(row: dict[str, Any], cp_version: str | None) -> dict[str, Any]:
    return {
        "id": row["id"], "hostname": row["hostname"], "ip": row["ip"],
        "version": row["version"], "sync_status": row["sync_status"],
        "config_hash": row["config_hash"], "last_seen": row["last_seen"],
        "updated_at": row["updated_at"], "labels": row["labels"],
        "cert_details": {"expiry_timestamp": row["cert_expiry"]},
        "config_version": row["acked_version"] or None,
        "cp_config_version": cp_version,
        "connected": row["connected"],
        "last_nack": row["last_nack"],
        "events": {"dropped": row["events_dropped"], "buffered": row["events_buffered"]},
    }


async def data_planes(request: web.Request) -> web.Response:
    cluster = request.app.get(CLUSTER)
    if cluster is None:
        return web.json_response({"data": [], "next": None})
    rows = await cluster.registry.list()
    version = cluster.state.version_string
    return web.json_response({"data": [_row(r, version) for r in rows], "next": None})


async def events(request: web.Request) -> web.Response:
    cluster = request.app.get(CLUSTER)
    dp_id = request.match_info["id"]
    size = page_size(request.query)
    raw = request.query.get("offset")
    if raw is not None and not (raw.isascii() and raw.isdigit() and int(raw) < 2**63):
        raise InvalidOffset(raw, "bad cursor")
    filters = {k: request.query.get(k) for k in ("source", "event")}
    for k, v in filters.items():
        err = text_error(v) if v is not None else None
        if err:
            raise InvalidOptions({k: err})
    if cluster is None or text_error(dp_id) or not await cluster.events.known(dp_id):
        return web.json_response(NOT_FOUND, status=404)
    data, more = await cluster.events.page(dp_id, size, int(raw) if raw else None, **filters)
    body: dict[str, Any] = {"data": data, "next": None}
    if more is not None:
        args = {"size": size, "offset": more, **{k: v for k, v in filters.items() if v}}
        body["next"] = f"{request.path}?{urlencode(args)}"
        body["offset"] = str(more)
    return web.json_response(body)


async def status(request: web.Request) -> web.Response:
    """Kong's deprecated shape: {node id: {config_hash, hostname, ip, last_seen}}."""
    cluster = request.app.get(CLUSTER)
    rows = await cluster.registry.list() if cluster is not None else []
    return web.json_response({
        r["id"]: {"config_hash": r["config_hash"], "hostname": r["hostname"], "ip": r["ip"],
                  "last_seen": r["last_seen"]}
        for r in rows
    })


def add_routes(app: web.Application) -> None:
    app.router.add_get("/clustering/data-planes", data_planes)
    app.router.add_get("/clustering/data-planes/{id}/events", events)
    app.router.add_get("/clustering/status", status)
