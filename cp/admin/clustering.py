"""`/clustering/data-planes` and `/clustering/status`: what every data plane runs.

Kong's fields, plus what Kong lacks: the version each data plane acknowledged, the control plane's
current version, and why a data plane refused the newest config.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cp.admin.keys import CLUSTER


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
    }


async def data_planes(request: web.Request) -> web.Response:
    cluster = request.app.get(CLUSTER)
    if cluster is None:
        return web.json_response({"data": [], "next": None})
    rows = await cluster.registry.list()
    version = cluster.state.version_string
    return web.json_response({"data": [_row(r, version) for r in rows], "next": None})


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
    app.router.add_get("/clustering/status", status)
