"""The data plane's status listener (127.0.0.1:8100 by default).

`/status` says what it runs and how it syncs; `/status/ready` is 503 until a config is loaded and
stays 200 when the control plane goes away; `/health` answers plain probes with 200 OK. In DB-less
standalone mode `POST /config` replaces the declarative config, as on Kong's DB-less admin API.
With proxy worker processes, /status sums their counters and lists each (`proxy.workers`).
`/metrics` serves Prometheus metrics (dp/scrape.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from dp.scrape import endpoint as metrics_endpoint
from shared.errors import KongError

if TYPE_CHECKING:
    from dp.server import DataPlaneNode

NODE: web.AppKey[DataPlaneNode] = web.AppKey("node")


async def status(request: web.Request) -> web.Response:
    node = request.app[NODE]
    running = node.running
    current = running.current
    body: dict[str, Any] = {
        "node_id": node.node_id,
        "mode": "standalone" if node.standalone else "hybrid",
        "ready": current is not None,
        "configuration_version": running.version or None,
        "config_hash": running.hash or None,
        "config_source": current.source if current else None,
        "entities": {t: len(es) for t, es in current.config.entities.items()} if current else {},
        "sync": {
            "applied_snapshots": running.applied.get("cluster-snapshot", 0),
            "applied_deltas": running.applied.get("cluster-delta", 0),
            "loaded_from_cache": running.applied.get("cache", 0),
            "rejected": running.rejected,
            "last_error": running.last_error,
        },
    }
    body["proxy"] = await node.proxy_status()
    # queued: not yet acknowledged by the control plane (unacked of them sent); dropped: pushed
    # out by the `event_queue_size` bound while the control plane was away or slow.
    body["events"] = node.events.stats()
    if node.client is not None:
        link = node.client.status
        body["control_plane"] = {
            "address": node.client.target, "connected": link.connected,
            "connects": link.connects, "last_error": link.last_error,
            "rejection": link.rejection,
        }
    return web.json_response(body)


async def ready(request: web.Request) -> web.Response:
    node = request.app[NODE]
    if not node.ready:
        message = ("no configuration loaded" if node.running.current is None
                   else "proxy workers starting")
        return web.json_response({"message": message}, status=503)
    return web.json_response({"message": "ready"})


async def health(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def upstream_health(request: web.Request) -> web.Response:
    """Each target's health as this data plane sees it, in Kong's shape."""
    node = request.app[NODE]
    balancer = node.balancers.lookup(request.match_info["upstream"])
    if balancer is None:
        return web.json_response({"message": "Not found"}, status=404)
    return web.json_response(balancer.health_report(node.node_id))


async def get_config(request: web.Request) -> web.Response:
    current = request.app[NODE].running.current
    if current is None:
        return web.json_response({"message": "no configuration loaded"}, status=503)
    return web.json_response({"version": current.version, "hash": current.config.hash,
                              "config": current.config.to_lists()})


async def post_config(request: web.Request) -> web.Response:
    node = request.app[NODE]
    if not node.standalone:
        return web.json_response(
            {"message": "this data plane takes its config from the control plane"}, status=405)
    try:
        node.load_declarative(await request.read())
    except KongError as exc:
        return web.json_response(exc.to_json(), status=exc.status)
    return web.json_response({"version": node.running.version, "hash": node.running.hash},
                             status=201)


def status_app(node: DataPlaneNode) -> web.Application:
    app = web.Application()
    app[NODE] = node
    app.router.add_get("/status", status)
    app.router.add_get("/status/ready", ready)
    app.router.add_get("/health", health)
    app.router.add_get("/config", get_config)
    app.router.add_get("/upstreams/{upstream}/health", upstream_health)
    app.router.add_get("/metrics", metrics_endpoint(node))
    app.router.add_post("/config", post_config)
    return app
