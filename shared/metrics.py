"""What both planes' `/metrics` endpoints share: a plain-Python histogram and the exposition.

Both planes are single-threaded asyncio processes, so hot paths count into plain ints, dicts and
`Histogram`s (no locks, no per-observation label lookups) and a scrape turns them into
prometheus_client metric families. Each scrape renders its families through a CollectorRegistry
of its own, never prometheus_client's global one: nothing else in the process (or another server
in the same test process) leaks into the output.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

# The classic text format every Prometheus version reads (our names need none of 1.0.0's escaping).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds. From a fast local upstream (about a millisecond) to the default 60 s read timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)


class Histogram:
    """Counts per bucket (not cumulative: one increment per observation) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # first bound >= value: `le`
        self.sum += value

    def to_json(self) -> list[Any]:
        return [self.counts, self.sum]

    def add(self, data: Sequence[Any]) -> None:
        """Add another histogram's `to_json()` (same bounds) into this one."""
        counts, total = data
        for i, n in enumerate(counts):
            self.counts[i] += int(n)
        self.sum += float(total)

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative `(le, count)` pairs ending with +Inf, as the exposition wants them."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out


def histogram_family(name: str, doc: str, labels: Sequence[str],
                     series: Iterable[tuple[Sequence[str], Histogram]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, hist in series:
        family.add_metric(values, hist.buckets(), hist.sum)
    return family


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def render(families: list[Metric]) -> bytes:
    """The text exposition format of these families."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


def exposition(families: list[Metric]) -> web.Response:
    return web.Response(body=render(families), headers={"Content-Type": CONTENT_TYPE})
