"""Target health shared across proxy worker processes.

With several workers, the main process holds the authoritative balancers: it runs every active
health check and serves `GET /upstreams/{u}/health`. Workers count passive-check observations
from their own traffic (so a passive threshold is per worker, as each worker sees a share of the
traffic) and report a target they flip to the main process as a `balancer` `health` event. The
main process applies it to its own target; only a real transition there is queued (one event per
transition, whatever the number of workers) and broadcast back to every worker, which sets the
target's state without re-reporting it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dp.balancer import Balancers, Target
from dp.events import EventQueue

HealthRow = list[Any]  # [upstream_id, hostname, port, healthy]


def _quiet(target: Target, healthy: bool) -> None:
    """A transition told by the main process: already queued there, nothing to report."""


def find_target(balancers: Balancers, upstream_id: str, hostname: str,
                port: int) -> tuple[Any, Target] | None:
    balancer = balancers.by_id.get(upstream_id)
    if balancer is None:
        return None
    for target in balancer.targets:
        if target.host == hostname and target.port == port:
            return balancer, target
    return None


def apply_reported(balancers: Balancers, data: dict[str, Any]) -> None:
    """Main process: a worker flipped a target; flip ours (queueing and broadcasting the event
    through the balancer's own change callback if it is news)."""
    found = find_target(balancers, str(data.get("upstream_id")), str(data.get("hostname")),
                        int(data.get("port") or 0))
    if found is not None:
        balancer, target = found
        target.set_health(data.get("health") == "healthy", balancer.changed)


def health_rows(balancers: Balancers) -> list[HealthRow]:
    """The state of every checked target, for a worker to adopt."""
    return [[b.id, t.host, t.port, t.healthy] for b in balancers.by_id.values()
            if not b.checks_off for t in b.targets]


def adopt(balancers: Balancers, rows: list[HealthRow]) -> None:
    """Worker: take the main process's word for these targets' health."""
    for upstream_id, hostname, port, healthy in rows:
        found = find_target(balancers, upstream_id, hostname, port)
        if found is not None:
            found[1].set_health(bool(healthy), _quiet)


class BroadcastingQueue(EventQueue):
    """The main process's event queue when it has workers: a health transition is queued as
    usual, then sent to every worker (`broadcast(rows)`)."""

    def __init__(self, maxlen: int = 10_000) -> None:
        super().__init__(maxlen)
        self.broadcast: Callable[[list[HealthRow]], None] | None = None

    def put(self, source: str, event: str, data: dict[str, Any], at: float | None = None) -> None:
        super().put(source, event, data, at)
        if source == "balancer" and event == "health" and self.broadcast is not None:
            self.broadcast([[data["upstream_id"], data["hostname"], data["port"],
                             data["health"] == "healthy"]])
