"""`GET /metrics` on the Admin API: the control plane's Prometheus metrics.

Data planes are the ones connected to this control-plane node (each node reports its own; sum or
join them across nodes in Prometheus): read from the cluster registry at scrape time, with the
NACK counts and sync latency counted as they happen (cp/metrics.py). Event-hook deliveries are
this node's attempts by outcome (cp/hooks/counts.py). Like every Admin API endpoint it needs a
`Kong-Admin-Token` when RBAC is enforced.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from cp.admin.event_hooks import HOOKS
from cp.admin.keys import CLUSTER
from cp.cluster.state import parse_version
from cp.metrics import start_watching, sync_metrics
from shared.metrics import exposition, histogram_family

if TYPE_CHECKING:
    from cp.cluster.server import Cluster

WATCHER: web.AppKey[asyncio.Task[None]] = web.AppKey("sync_metrics_watcher")


def data_plane_families(cluster: Cluster) -> list[Metric]:
    state, registry = cluster.state, cluster.registry
    sync = sync_metrics(registry)
    connected = sorted(registry.connected.values(), key=lambda dp: dp.node_id)
    info = GaugeMetricFamily("tidegate_cp_data_plane_config_info", "The config each connected "
                             "data plane runs (1), with its hash", labels=[
                                 "node_id", "hostname", "config_version", "config_hash"])
    version = GaugeMetricFamily("tidegate_cp_data_plane_config_version", "The change number of "
                                "the config each connected data plane runs", labels=["node_id"])
    in_sync = GaugeMetricFamily("tidegate_cp_data_plane_in_sync", "1 when the data plane runs "
                                "this control plane's current config", labels=["node_id"])
    buffered = GaugeMetricFamily("tidegate_cp_data_plane_events_buffered", "Events the data "
                                 "plane holds for the control plane, as it last reported",
                                 labels=["node_id"])
    dropped = GaugeMetricFamily("tidegate_cp_data_plane_events_dropped", "Events the data "
                                "plane dropped since it started (its queue was full), as it "
                                "last reported", labels=["node_id"])
    for dp in connected:
        info.add_metric([dp.node_id, dp.hostname, dp.config_version, dp.config_hash], 1)
        parsed = parse_version(dp.config_version)
        if parsed is not None and parsed[0] == state.epoch:
            version.add_metric([dp.node_id], parsed[1])
        current = (dp.config_version == state.version_string
                   and dp.config_hash == state.config.hash)
        in_sync.add_metric([dp.node_id], 1 if current else 0)
        buffered.add_metric([dp.node_id], dp.events_buffered)
        dropped.add_metric([dp.node_id], dp.events_dropped)
    nacks = CounterMetricFamily("tidegate_cp_config_nacks", "Configs a data plane rejected",
                                labels=["node_id"])
    for node_id, n in sorted(sync.nacks.items()):
        nacks.add_metric([node_id], n)
    return [
        GaugeMetricFamily("tidegate_cp_config_version", "The change number of this control "
                          "plane's current config", value=state.version),
        GaugeMetricFamily("tidegate_cp_data_planes_connected", "Data planes connected to this "
                          "control-plane node", value=len(connected)),
        info, version, in_sync, buffered, dropped, nacks,
        histogram_family("tidegate_cp_config_sync_latency_seconds", "From a config change "
                         "reaching the control plane to a data plane's ACK of it", [],
                         [([], sync.latency)]),
    ]


def hook_families(request: web.Request) -> list[Metric]:
    deliveries = CounterMetricFamily("tidegate_cp_event_hook_deliveries", "Event-hook delivery "
                                     "attempts by outcome (success, retry, failed, cancelled)",
                                     labels=["outcome"])
    ctx = request.app[HOOKS].ctx
    if ctx is not None:
        for outcome, n in ctx.deliveries.by_outcome.items():
            deliveries.add_metric([outcome], n)
    return [deliveries]


async def metrics(request: web.Request) -> web.Response:
    cluster = request.app.get(CLUSTER)
    families = data_plane_families(cluster) if cluster is not None else []
    return exposition([*families, *hook_families(request)])


async def _start(app: web.Application) -> None:
    cluster = app.get(CLUSTER)
    if cluster is not None:  # set by the server before the app starts
        app[WATCHER] = start_watching(cluster.state, cluster.registry)


async def _stop(app: web.Application) -> None:
    task = app.get(WATCHER)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def add_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
