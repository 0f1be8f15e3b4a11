"""`GET /metrics` on the data plane's status listener: Prometheus text format.

Traffic counters (requests, upstream latency, WebSocket frames and closes, rate-limit hits) are
this process's (dp/metrics.py) plus, with `--workers N`, what every worker answers when asked at
scrape time (and what exited workers had counted). Everything else is read from the node at
that moment: target health from the main process's balancers (the ones running the active
checks), the event queue's depth and drops, the running config and the cluster link.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from dp import metrics
from dp.balancer import HEALTHCHECKS_OFF, HEALTHY
from shared.metrics import exposition, histogram_family

if TYPE_CHECKING:
    from dp.server import DataPlaneNode

RS = ["route", "service"]


async def traffic(node: DataPlaneNode) -> metrics.Counts:
    """This process's counts plus the workers'."""
    total = metrics.Counts()
    total.add(metrics.COUNTS.snapshot())
    if node.pool is not None:
        total.add((await node.pool.traffic()).snapshot())
    return total


def _counter(name: str, doc: str, labels: list[str], rows: dict[Any, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, n in sorted(rows.items()):
        family.add_metric([str(v) for v in key], n)
    return family


def traffic_families(counts: metrics.Counts) -> list[Metric]:
    return [
        _counter("tidegate_dp_http_requests", "Requests answered, by route, service and "
                 "status code (no route matched: empty route and service)",
                 [*RS, "code"], counts.requests),
        histogram_family("tidegate_dp_upstream_latency_seconds", "From sending a request "
                         "upstream to the upstream's response head, by service", ["service"],
                         sorted(([s], h) for s, h in counts.latency.items())),
        _counter("tidegate_dp_ws_frames", "WebSocket frames, by route, service and the side "
                 "that sent them (client or upstream)", [*RS, "direction"], counts.ws_frames),
        _counter("tidegate_dp_ws_closes", "Proxied WebSocket connections closed, by close code",
                 [*RS, "code"], counts.ws_closes),
        _counter("tidegate_dp_rate_limited", "Requests or frames refused by a rate limit",
                 RS, counts.rate_limited),
    ]


def health_family(node: DataPlaneNode) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "tidegate_dp_upstream_target_healthy", "1 when this data plane sends traffic to the "
        "target (healthy, or its upstream checks nothing), 0 when unhealthy or unresolvable",
        labels=["upstream", "target"])
    for balancer in node.balancers.by_id.values():
        name = balancer.upstream.get("name") or balancer.id
        for target in balancer.targets:
            healthy = balancer.state(target) in (HEALTHY, HEALTHCHECKS_OFF)
            family.add_metric([name, target.name], 1 if healthy else 0)
    return family


def event_families(node: DataPlaneNode) -> list[Metric]:
    events = node.events
    return [
        GaugeMetricFamily("tidegate_dp_event_queue_depth", "Events queued for the control "
                          "plane, not yet acknowledged", value=len(events)),
        CounterMetricFamily("tidegate_dp_events", "Events put on the queue", value=events.total),
        CounterMetricFamily("tidegate_dp_events_dropped", "Events dropped because the queue was "
                            "full", value=events.dropped),
    ]


def config_families(node: DataPlaneNode) -> list[Metric]:
    running = node.running
    info = GaugeMetricFamily("tidegate_dp_config_info", "The config this data plane serves "
                             "(absent before one is loaded)", labels=["version", "hash", "source"])
    out: list[Metric] = [info]
    current = running.current
    if current is not None:
        info.add_metric([current.version, current.config.hash, current.source], 1)
        _, sep, number = current.version.rpartition(":")
        if sep and number.isdigit():  # the control plane's versions: "<epoch>:<change id>"
            out.append(GaugeMetricFamily("tidegate_dp_config_version", "The control plane's "
                                         "change number of the config served", int(number)))
    applied = CounterMetricFamily("tidegate_dp_config_applied", "Configs applied, by where "
                                  "they came from", labels=["source"])
    for source, n in sorted(running.applied.items()):
        applied.add_metric([source], n)
    out += [applied, CounterMetricFamily("tidegate_dp_config_rejected", "Configs refused "
                                         "(NACKed in hybrid mode)", value=running.rejected)]
    if node.client is not None:
        link = node.client.status
        out.append(GaugeMetricFamily("tidegate_dp_control_plane_connected", "1 while the "
                                     "cluster link is up", value=1 if link.connected else 0))
        if link.acked_at:
            out.append(GaugeMetricFamily(
                "tidegate_dp_config_last_sync_timestamp_seconds", "When this data plane last "
                "acknowledged a config from the control plane (unix time)", value=link.acked_at))
    return out


def endpoint(node: DataPlaneNode) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The `/metrics` handler for this node's status listener."""

    async def scrape(request: web.Request) -> web.Response:
        counts = await traffic(node)
        return exposition([*traffic_families(counts), health_family(node),
                           *event_families(node), *config_families(node)])

    return scrape
