"""Control-plane cluster metrics that exist only as events: NACKs and config sync latency.

What a data plane runs, whether it is connected and in sync, is read from the registry when
`/metrics` is scraped (cp/admin/metrics.py); these two must be counted as they happen, from the
cluster session (`acked`, `nacked`, called by cp/cluster/service.py).

Sync latency is the time from a config change reaching this control plane (its change feed moved
the cluster state to a new version; `watch` notes when) to a data plane's ACK of a config that
includes it. An ACK that brings several changes is measured from the oldest of them; changes that
arrived before the data plane's session began are not counted (a data plane that was away is
not "syncing slowly"), nor are versions from before this control plane started.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING

from cp.cluster.state import parse_version
from shared.metrics import Histogram

if TYPE_CHECKING:
    from cp.cluster.registry import DataPlane, Registry
    from cp.cluster.state import ClusterState

SYNC_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
REMEMBERED = 4096  # versions whose arrival time is kept


class SyncMetrics:
    def __init__(self) -> None:
        self.nacks: dict[str, int] = {}  # by data-plane node id
        self.latency = Histogram(SYNC_BUCKETS)
        self.epoch: str | None = None
        self._arrived: deque[tuple[int, float]] = deque(maxlen=REMEMBERED)  # (version, when)
        self._sessions: dict[tuple[str, int], float] = {}  # a session: connected since

    def nacked(self, dp: DataPlane) -> None:
        self.nacks[dp.node_id] = self.nacks.get(dp.node_id, 0) + 1

    def acked(self, dp: DataPlane, version: str) -> None:
        """`dp` ACKed `version`; call before its `config_version` is updated to it."""
        acked, had = parse_version(version), parse_version(dp.config_version)
        if acked is None or acked[0] != self.epoch:
            return
        since = self._sessions.get((dp.node_id, id(dp)))
        floor = had[1] if had is not None and had[0] == self.epoch else -1
        for number, when in self._arrived:
            if number > acked[1]:
                return  # nothing this ACK brings arrived while the data plane was connected
            if number > floor and since is not None and when >= since:
                self.latency.observe(time.monotonic() - when)
                return

    def changed(self, state: ClusterState, registry: Registry) -> None:
        """The cluster state moved to a new version just now."""
        now = time.monotonic()
        if state.epoch != self.epoch:
            self.epoch = state.epoch
            self._arrived.clear()
        self._arrived.append((state.version, now))
        live = {(dp.node_id, id(dp)) for dp in registry.connected.values()}
        self._sessions = {key: self._sessions.get(key, now) for key in live}

    async def watch(self, state: ClusterState, registry: Registry) -> None:
        """Note when each new version arrives, until cancelled."""
        self.epoch = state.epoch
        self._sessions = {(dp.node_id, id(dp)): time.monotonic()
                          for dp in registry.connected.values()}
        while True:
            seen = state.version
            await state.wait_past(seen)
            self.changed(state, registry)


_BY_REGISTRY: weakref.WeakKeyDictionary[Registry, SyncMetrics] = weakref.WeakKeyDictionary()


def sync_metrics(registry: Registry) -> SyncMetrics:
    """The sync metrics of the cluster this registry belongs to."""
    found = _BY_REGISTRY.get(registry)
    if found is None:
        found = _BY_REGISTRY[registry] = SyncMetrics()
    return found


def start_watching(state: ClusterState, registry: Registry) -> asyncio.Task[None]:
    return asyncio.create_task(sync_metrics(registry).watch(state, registry),
                               name="sync-metrics")
