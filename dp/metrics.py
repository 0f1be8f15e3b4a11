"""Traffic counters of one data-plane process, cheap enough for the proxy's hot path.

Every proxy process (the main one with `--workers 1`, else each worker) counts what it proxies
into `COUNTS`: plain dicts keyed by label tuples, one `get` and one store per event, no locks
(one thread) and no prometheus_client objects. The status listener's `/metrics` (dp/scrape.py)
adds up its own process's counts and those the workers send when asked (dp/workers.py) and
renders them. Labels are entity names, falling back to ids, as Kong's Prometheus plugin does;
a request that matched no route counts with empty `route` and `service`.

What calls what:
- the proxy (dp/proxy/handler.py): `count_request` once per answered request, and
  `observe_upstream` when an upstream's response head has arrived;
- the WebSocket pipeline: `count_request` for the handshake's answer (101 or an error),
  `count_ws_frames` with the frames read from each side (reported in batches),
  `count_ws_close` per connection closed, with the close code the client got;
- rate-limiting plugins: `count_rate_limited` when a request or frame is refused for its limit.
"""

from __future__ import annotations

from typing import Any

from shared.metrics import Histogram

Entity = dict[str, Any] | None

CLIENT, UPSTREAM = "client", "upstream"  # the side that sent a WebSocket frame


class Counts:
    """One process's counters (or a sum of several processes' counters)."""

    __slots__ = ("latency", "rate_limited", "requests", "ws_closes", "ws_frames")
    COUNTERS = ("requests", "ws_frames", "ws_closes", "rate_limited")

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}  # (route, service, status)
        self.ws_frames: dict[tuple[str, str, str], int] = {}  # (route, service, direction)
        self.ws_closes: dict[tuple[str, str, int], int] = {}  # (route, service, close code)
        self.rate_limited: dict[tuple[str, str], int] = {}  # (route, service)
        self.latency: dict[str, Histogram] = {}  # upstream latency by service

    def snapshot(self) -> dict[str, list[Any]]:
        """JSON-ready: each counter as rows of [*labels, n], latency as [service, hist]."""
        out: dict[str, list[Any]] = {name: [[*key, n] for key, n in getattr(self, name).items()]
                                     for name in self.COUNTERS}
        out["latency"] = [[service, h.to_json()] for service, h in self.latency.items()]
        return out

    def add(self, snapshot: dict[str, list[Any]]) -> None:
        """Add another process's `snapshot()` into these counts."""
        for name in self.COUNTERS:
            counter: dict[Any, int] = getattr(self, name)
            for row in snapshot.get(name, ()):
                key = tuple(row[:-1])
                counter[key] = counter.get(key, 0) + int(row[-1])
        for service, data in snapshot.get("latency", ()):
            hist = self.latency.get(service)
            if hist is None:
                hist = self.latency[service] = Histogram()
            hist.add(data)


COUNTS = Counts()  # this process's


def _names(route: Entity, service: Entity) -> tuple[str, str]:
    return ((route.get("name") or route["id"]) if route else "",
            (service.get("name") or service["id"]) if service else "")


def count_request(route: Entity, service: Entity, status: int) -> None:
    """A request answered with `status` (by the upstream, a plugin or the proxy itself)."""
    key = (*_names(route, service), status)
    requests = COUNTS.requests
    requests[key] = requests.get(key, 0) + 1


def observe_upstream(service: dict[str, Any], seconds: float) -> None:
    """Time from sending a request upstream to the upstream's response head."""
    name = service.get("name") or service["id"]
    hist = COUNTS.latency.get(name)
    if hist is None:
        hist = COUNTS.latency[name] = Histogram()
    hist.observe(seconds)


def count_ws_frames(route: Entity, service: Entity, direction: str, n: int = 1) -> None:
    """`n` WebSocket frames; `direction` is the side that sent them: CLIENT or UPSTREAM."""
    key = (*_names(route, service), direction)
    frames = COUNTS.ws_frames
    frames[key] = frames.get(key, 0) + n


def count_ws_close(route: Entity, service: Entity, code: int) -> None:
    """One proxied WebSocket connection ended with close code `code` (1006: no close frame)."""
    key = (*_names(route, service), code)
    closes = COUNTS.ws_closes
    closes[key] = closes.get(key, 0) + 1


def count_rate_limited(route: Entity, service: Entity) -> None:
    """A request (or frame) refused because a rate limit was exceeded."""
    key = _names(route, service)
    hits = COUNTS.rate_limited
    hits[key] = hits.get(key, 0) + 1
