"""One balancer per upstream, and the set of them rebuilt from each config snapshot.

A `Balancer` owns its targets, the algorithm over them, the active checker and the passive
(circuit-breaker) counters. Every health transition is put on the data plane's event queue as a
`balancer` `health` event. On a new snapshot, upstreams whose definition and targets did not
change keep their balancer (and so their health state and checker); changed ones get a new
balancer that inherits the health of targets it still has.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

from dp.balancer.active import ActiveChecker, active_enabled
from dp.balancer.algorithms import ConsistentHash, LeastConnections, RoundRobin
from dp.balancer.targets import (
    DNS_ERROR,
    HEALTHCHECKS_OFF,
    HEALTHY,
    HTTP_FAILURE,
    SUCCESS,
    TCP_FAILURE,
    TIMEOUT,
    UNHEALTHY,
    Target,
)
from dp.events import EventQueue

log = logging.getLogger("tidegate.dp.balancer")


def _thresholds(section: dict[str, Any]) -> dict[str, int]:
    healthy, unhealthy = section.get("healthy") or {}, section.get("unhealthy") or {}
    return {SUCCESS: int(healthy.get("successes") or 0),
            HTTP_FAILURE: int(unhealthy.get("http_failures") or 0),
            TCP_FAILURE: int(unhealthy.get("tcp_failures") or 0),
            TIMEOUT: int(unhealthy.get("timeouts") or 0)}


class Balancer:
    """Balancing and health for one upstream."""

    def __init__(self, upstream: dict[str, Any], targets: list[dict[str, Any]],
                 events: EventQueue | None = None) -> None:
        self.upstream = upstream
        self.id: str = upstream["id"]
        self.events = events
        self.targets = [Target(t) for t in sorted(targets, key=lambda t: t["target"])]
        checks = upstream.get("healthchecks") or {}
        self.active_conf = checks.get("active") or {}
        passive = checks.get("passive") or {}
        self.active_thresholds = _thresholds(self.active_conf)
        self.passive_thresholds = _thresholds(passive)
        self.passive_thresholds[SUCCESS] = 0  # passive checks only ever mark unhealthy
        self.passive_on = any(self.passive_thresholds.values())
        self.passive_healthy = set((passive.get("healthy") or {}).get("http_statuses") or ())
        self.passive_unhealthy = set((passive.get("unhealthy") or {}).get("http_statuses") or ())
        self.checks_off = not self.passive_on and not active_enabled(self.active_conf)
        self.threshold = float(checks.get("threshold") or 0)
        algorithm = upstream.get("algorithm") or "round-robin"
        if algorithm == "consistent-hashing":
            self.algo: Any = ConsistentHash(self.targets, int(upstream.get("slots") or 10000))
        elif algorithm == "least-connections":
            self.algo = LeastConnections(self.targets)
        else:  # round-robin; "latency" is not implemented and balances round-robin
            self.algo = RoundRobin(self.targets)
        self.checker = ActiveChecker(self.targets, self.active_conf, self._active_result)

    # -- selection -----------------------------------------------------------------------

    def pick(self, key: str | None = None, avoid: tuple[Target, ...] = ()) -> Target | None:
        """The target for this attempt, or None when no target (or too little capacity,
        per `healthchecks.threshold`) is healthy."""
        if self.threshold and self.healthy_percent() < self.threshold:
            return None
        return self.algo.pick(key, avoid)

    def healthy_percent(self) -> float:
        total = sum(t.weight for t in self.targets)
        if not total:
            return 0.0
        return 100.0 * sum(t.weight for t in self.targets if t.usable) / total

    # -- health --------------------------------------------------------------------------

    def _active_result(self, target: Target, outcome: str) -> None:
        target.record(outcome, self.active_thresholds, self.changed)

    def report_status(self, target: Target, status: int) -> None:
        """Passive check: a proxied response's status."""
        if not self.passive_on:
            return
        if status in self.passive_unhealthy:
            target.record(HTTP_FAILURE, self.passive_thresholds, self.changed)
        elif status in self.passive_healthy:
            target.record(SUCCESS, self.passive_thresholds, self.changed)

    def report_failure(self, target: Target, outcome: str) -> None:
        """Passive check: a TCP error or timeout talking to the target."""
        if self.passive_on:
            target.record(outcome, self.passive_thresholds, self.changed)

    def changed(self, target: Target, healthy: bool) -> None:
        """A target flipped: log it once and queue the `balancer` `health` event."""
        health = "healthy" if healthy else "unhealthy"
        log.info("upstream %s target %s is now %s", self.upstream.get("name"), target.name,
                 health)
        if self.events is not None:
            self.events.put("balancer", "health", {
                "upstream_id": self.id, "ip": target.ip or target.host, "port": target.port,
                "hostname": target.host, "health": health})

    def state(self, target: Target) -> str:
        if target.dns_error:
            return DNS_ERROR
        if self.checks_off:
            return HEALTHCHECKS_OFF
        return HEALTHY if target.healthy else UNHEALTHY

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.checker.start()
        if any(t.ip is None for t in self.targets):
            asyncio.get_running_loop().create_task(self._resolve())

    def stop(self) -> None:
        self.checker.stop()

    async def _resolve(self) -> None:
        loop = asyncio.get_running_loop()
        for t in self.targets:
            if t.ip is not None:
                continue
            try:
                infos = await loop.getaddrinfo(t.host, t.port, type=socket.SOCK_STREAM)
                t.ip = str(infos[0][4][0])
                t.dns_error = False
            except OSError:
                t.dns_error = True

    def inherit(self, old: Balancer) -> None:
        by_name = {t.name: t for t in old.targets}
        for t in self.targets:
            prev = by_name.get(t.name)
            if prev is not None:
                t.healthy, t.counters = prev.healthy, dict(prev.counters)
                if t.ip is None:
                    t.ip, t.dns_error = prev.ip, prev.dns_error

    def health_report(self, node_id: str) -> dict[str, Any]:
        """`GET /upstreams/{u}/health` in Kong's shape."""
        data = []
        for t in self.targets:
            state = self.state(t)
            row = {k: t.entity.get(k) for k in ("id", "created_at", "updated_at", "upstream",
                                                  "target", "weight", "tags")}
            row["health"] = state
            row["data"] = {"addresses": [{"ip": t.ip or t.host, "port": t.port,
                                          "health": state, "weight": t.weight}]}
            data.append(row)
        return {"data": data, "next": None, "node_id": node_id}


def _signature(upstream: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    return json.dumps([upstream, sorted(targets, key=lambda t: t["id"])], sort_keys=True,
                      default=str)


class Balancers:
    """The balancers of the running config, by upstream name (what services point at)."""

    def __init__(self, events: EventQueue | None = None) -> None:
        self.events = events
        self.by_name: dict[str, Balancer] = {}
        self.by_id: dict[str, Balancer] = {}
        self._signatures: dict[str, str] = {}

    def get(self, host: str) -> Balancer | None:
        return self.by_name.get(host)

    def lookup(self, name_or_id: str) -> Balancer | None:
        return self.by_id.get(name_or_id) or self.by_name.get(name_or_id)

    def rebuild(self, config: Any) -> None:
        """Swap in balancers for a new config (call from the event loop)."""
        targets: dict[str, list[dict[str, Any]]] = {}
        for t in config.entities["targets"].values():
            targets.setdefault(t["upstream"]["id"], []).append(t)
        by_id: dict[str, Balancer] = {}
        signatures: dict[str, str] = {}
        for upstream in config.entities["upstreams"].values():
            uid = upstream["id"]
            mine = targets.get(uid, [])
            sig = _signature(upstream, mine)
            signatures[uid] = sig
            old = self.by_id.get(uid)
            if old is not None and self._signatures.get(uid) == sig:
                by_id[uid] = old
                continue
            balancer = Balancer(upstream, mine, self.events)
            if old is not None:
                balancer.inherit(old)
            by_id[uid] = balancer
            balancer.start()
        for uid, old in self.by_id.items():
            if by_id.get(uid) is not old:
                old.stop()
        self.by_id = by_id
        self.by_name = {b.upstream["name"]: b for b in by_id.values()}
        self._signatures = signatures

    def stop(self) -> None:
        for b in self.by_id.values():
            b.stop()
