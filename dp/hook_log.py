"""The data plane's `log` event hooks: balancer and rate-limiting-advanced events in this
data plane's own log, as Kong does in hybrid mode.

The control plane streams these hooks as part of the config (only `log` hooks on a data-plane
source: see shared/entities/event_hooks.py). Every event put on the node's event queue is matched
against them here, in the main process, so each event is logged once however many proxy workers
there are. The line is the one both planes write (shared.logs.log_hook_event).

snooze and on_change apply as on the control plane, with their state in memory: per data plane
(each has its own log) and reset when the hook changes or the process restarts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from dp.events import Event
from dp.running import Snapshot
from shared.config_set import canonical
from shared.entities.event_hooks import runs_on_data_plane
from shared.events import digest
from shared.logs import log_hook_event

log = logging.getLogger("tidegate.dp.hooks")

MAX_STATE = 10_000  # throttle slots kept before expired ones are swept


class HookLog:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._by_source: dict[str, list[dict[str, Any]]] = {}
        self._versions: dict[str, bytes] = {}  # hook id -> its canonical form
        # (hook id, event, slot) -> (last digest, when it last fired)
        self._fired: dict[tuple[str, str, str], tuple[str | None, float]] = {}

    def apply(self, snapshot: Snapshot) -> None:
        """A new running config: take its data-plane log hooks; forget the throttle state of
        hooks that changed or went away (as the control plane does)."""
        by_source: dict[str, list[dict[str, Any]]] = {}
        versions: dict[str, bytes] = {}
        for hook in snapshot.config.entities.get("event_hooks", {}).values():
            if runs_on_data_plane(hook):
                by_source.setdefault(hook["source"], []).append(hook)
                versions[hook["id"]] = canonical(hook)
        changed = {h for h, v in self._versions.items() if versions.get(h) != v}
        if changed:
            self._fired = {k: v for k, v in self._fired.items() if k[0] not in changed}
        self._by_source, self._versions = by_source, versions

    def __call__(self, event: Event) -> None:
        """An event was queued: write the line of every hook it fires."""
        for hook in self._by_source.get(event.source, ()):
            wanted = hook.get("event")
            if wanted is not None and wanted != event.event:
                continue
            if not self._should_fire(hook, event):
                continue
            payload = {**event.data, "event": event.event, "source": event.source}
            log_hook_event(log, "dp", hook["id"], payload)

    def _should_fire(self, hook: dict[str, Any], event: Event) -> bool:
        """snooze S drops further events for S seconds after one fired; on_change fires only
        when the digest differs from the last; both: one window per distinct digest."""
        snooze = float(hook["snooze"]) if hook.get("snooze") else None
        on_change = bool(hook.get("on_change"))
        if snooze is None and not on_change:
            return True
        value = digest(event.source, event.event, event.data) if on_change else None
        key = (str(hook["id"]), event.event, (value or "") if snooze else "")
        now = self.clock()
        last = self._fired.get(key)
        if last is not None:
            if snooze is not None and now - last[1] < snooze:
                return False
            if on_change and snooze is None and last[0] == value:
                return False
        self._fired[key] = (value, now)
        if len(self._fired) > MAX_STATE:
            self._sweep(now)
        return True

    def _sweep(self, now: float) -> None:
        """Drop snooze windows that are over (on_change-only slots stay: they hold a digest)."""
        snoozes = {h["id"]: float(h.get("snooze") or 0) for hs in self._by_source.values()
                   for h in hs}

        def keep(key: tuple[str, str, str], fired_at: float) -> bool:
            snooze = snoozes.get(key[0])
            if snooze is None:
                return False  # the hook is gone
            return snooze == 0 or now - fired_at < snooze

        self._fired = {k: v for k, v in self._fired.items() if keep(k, v[1])}
