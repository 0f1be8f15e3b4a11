"""Upstream load balancing: algorithms, target health (active and passive checks), events."""

from dp.balancer.targets import (
    DNS_ERROR,
    HEALTHCHECKS_OFF,
    HEALTHY,
    TCP_FAILURE,
    TIMEOUT,
    UNHEALTHY,
    Target,
)
from dp.balancer.upstream import Balancer, Balancers

__all__ = ["DNS_ERROR", "HEALTHCHECKS_OFF", "HEALTHY", "TCP_FAILURE", "TIMEOUT", "UNHEALTHY",
           "Balancer", "Balancers", "Target"]
