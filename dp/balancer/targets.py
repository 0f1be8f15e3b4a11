"""A balancer target and its health bookkeeping (shared by active and passive checks).

States as Kong names them: HEALTHY, UNHEALTHY, DNS_ERROR (its hostname does not resolve) and
HEALTHCHECKS_OFF (the upstream checks nothing, so the target is always used). Counters follow
the upstream's thresholds: enough consecutive failures of one kind (HTTP statuses, TCP errors,
timeouts) mark a target unhealthy, enough consecutive successes mark it healthy again; a
threshold of 0 disables that transition.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

HEALTHY = "HEALTHY"
UNHEALTHY = "UNHEALTHY"
DNS_ERROR = "DNS_ERROR"
HEALTHCHECKS_OFF = "HEALTHCHECKS_OFF"

# What a check observed.
SUCCESS, HTTP_FAILURE, TCP_FAILURE, TIMEOUT = "success", "http_failures", "tcp_failures", "timeouts"


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class Target:
    """One `host:port` of an upstream, with its weight, live connections and health."""

    __slots__ = ("active", "counters", "dns_error", "entity", "healthy", "host", "ip", "name",
                 "port", "weight")

    def __init__(self, entity: dict[str, Any]) -> None:
        self.entity = entity
        self.name: str = entity["target"]
        host, _, port = self.name.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.weight: int = int(entity.get("weight", 100))
        self.ip: str | None = self.host if is_ip(self.host) else None
        self.dns_error = False  # set when the balancer fails to resolve the hostname
        self.healthy = True
        self.active = 0  # connections in flight (least-connections)
        self.counters = {SUCCESS: 0, HTTP_FAILURE: 0, TCP_FAILURE: 0, TIMEOUT: 0}

    @property
    def address(self) -> str:
        """What to connect to: the resolved IP, else the hostname."""
        return self.ip or self.host

    @property
    def usable(self) -> bool:
        return self.healthy and self.weight > 0 and not self.dns_error

    def record(self, outcome: str, thresholds: dict[str, int],
               on_change: Callable[[Target, bool], None]) -> None:
        """Count one observation; flip health when its threshold is reached."""
        counters = self.counters
        if outcome == SUCCESS:
            for k in (HTTP_FAILURE, TCP_FAILURE, TIMEOUT):
                counters[k] = 0
            counters[SUCCESS] += 1
            need = thresholds.get(SUCCESS, 0)
            if not self.healthy and need and counters[SUCCESS] >= need:
                self.set_health(True, on_change)
            return
        counters[SUCCESS] = 0
        counters[outcome] += 1
        need = thresholds.get(outcome, 0)
        if self.healthy and need and counters[outcome] >= need:
            self.set_health(False, on_change)

    def set_health(self, healthy: bool, on_change: Callable[[Target, bool], None]) -> None:
        if healthy == self.healthy:
            return
        self.healthy = healthy
        for k in self.counters:
            self.counters[k] = 0
        on_change(self, healthy)
