"""The control plane's view of the data-plane config: current entities, version, recent changes.

Loaded from one consistent database snapshot, then advanced row by row from the change log. The
recent changes are kept so a data plane that is a little behind gets only what changed (merged
per entity); one that is further behind than the history reaches gets a snapshot.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

from shared.config_set import DP_TYPES, ConfigSet, streamed

HISTORY = 20_000  # change-log rows kept for deltas


@dataclass(frozen=True)
class Change:
    version: int
    entity_type: str
    entity_id: str
    entity: dict[str, Any] | None  # None: deleted


def format_version(epoch: str, version: int) -> str:
    return f"{epoch}:{version}"


def parse_version(text: str) -> tuple[str, int] | None:
    epoch, sep, number = text.rpartition(":")
    if not sep or not (number.isascii() and number.isdigit()):
        return None
    return epoch, int(number)


class ClusterState:
    def __init__(self, epoch: str, version: int, config: ConfigSet, history: int = HISTORY):
        self.epoch = epoch
        self.version = version
        self.config = config
        self.base = version  # deltas can be computed from any version >= base
        self._history: deque[Change] = deque()
        self._limit = history
        self._changed = asyncio.Event()

    @property
    def version_string(self) -> str:
        return format_version(self.epoch, self.version)

    def apply(self, rows: list[dict[str, Any]]) -> bool:
        """Advance by change-log rows (in id order); True when the version moved."""
        moved = False
        for row in rows:
            if row["id"] <= self.version:
                continue
            self.version = row["id"]
            moved = True
            if row["entity_type"] not in DP_TYPES:
                continue
            entity = row["new_entity"]
            if entity is not None and not streamed(row["entity_type"], entity):
                entity = None  # no longer for data planes: a removal for them
            if entity is None:
                self.config.remove(row["entity_type"], row["entity_id"])
            else:
                self.config.upsert(row["entity_type"], entity)
            self._history.append(Change(row["id"], row["entity_type"], row["entity_id"], entity))
            while len(self._history) > self._limit:
                self.base = self._history.popleft().version
        if moved:
            self._changed.set()
            self._changed = asyncio.Event()
        return moved

    async def wait_past(self, version: int) -> None:
        """Return once the version is past `version`."""
        while self.version <= version:
            await self._changed.wait()

    def delta_since(self, version: int) -> dict[tuple[str, str], dict[str, Any] | None] | None:
        """What changed after `version`, last state per entity; None when history is too short."""
        if version < self.base or version > self.version:
            return None
        merged: dict[tuple[str, str], dict[str, Any] | None] = {}
        for change in reversed(self._history):
            if change.version <= version:
                break
            merged.setdefault((change.entity_type, change.entity_id), change.entity)
        return merged

    def plugins_in_use(self) -> dict[str, int]:
        used: dict[str, int] = {}
        for plugin in self.config.entities["plugins"].values():
            used[plugin["name"]] = used.get(plugin["name"], 0) + 1
        return used
