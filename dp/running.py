"""The config a data plane serves, and the only way it changes: validate a copy, then swap.

A snapshot or delta is applied to a copy of the current config and checked with the shared schema
(and, for a delta, against the hash the control plane expects). Only a config that passes replaces
the running one; a failure leaves it untouched and returns the reason, which becomes a NACK.
"""

from __future__ import annotations

import gc
import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.config_set import DP_TYPES, ConfigSet, validate_entities

log = logging.getLogger("tidegate.dp")

Listener = Callable[["Snapshot"], None]


@dataclass(frozen=True)
class Snapshot:
    """One immutable running config: what request handling reads."""

    version: str
    config: ConfigSet
    source: str  # "cluster-snapshot", "cluster-delta", "cache", "file"


class ApplyError(Exception):
    pass


@dataclass
class RunningConfig:
    current: Snapshot | None = None
    listeners: list[Listener] = field(default_factory=list)
    applied: dict[str, int] = field(default_factory=dict)  # by source
    rejected: int = 0
    last_error: str | None = None

    @property
    def version(self) -> str:
        return self.current.version if self.current else ""

    @property
    def hash(self) -> str:
        return self.current.config.hash if self.current else ""

    def _swap(self, snapshot: Snapshot) -> Snapshot:
        self.current = snapshot
        for listener in self.listeners:
            listener(snapshot)
        # A config is a large, long-lived tree of dicts without cycles: keep the cyclic GC from
        # rescanning it on every collection (a 10 000-route config made each full pass ~100 ms).
        # Replaced configs are still freed by reference counting.
        gc.freeze()
        return snapshot

    def _reject(self, reason: str) -> ApplyError:
        self.rejected += 1
        self.last_error = reason
        log.warning("config rejected, still serving %s: %s", self.version or "nothing", reason)
        return ApplyError(reason)

    def load(self, version: str, config: ConfigSet, source: str, expected_hash: str = "",
             *, validated: bool = False) -> None:
        """Replace everything (a snapshot, the cache, a declarative file) after validating it,
        unless it is known to be valid already (our own checksummed cache)."""
        problems = [] if validated else validate_entities(config)
        if problems:
            raise self._reject(_summary(problems))
        if expected_hash and config.hash != expected_hash:
            raise self._reject(f"hash mismatch: expected {expected_hash}, got {config.hash}")
        self._swap(Snapshot(version, config, source))
        self.applied[source] = self.applied.get(source, 0) + 1
        self.last_error = None

    def apply_delta(
        self, from_version: str, to_version: str, expected_hash: str,
        upserts: list[tuple[str, str, bytes]], removals: list[tuple[str, str]],
    ) -> None:
        if self.current is None or from_version != self.current.version:
            held = self.version or "no config"
            raise self._reject(f"delta from {from_version} does not apply to {held}")
        config = self.current.config.copy()
        touched = []
        try:
            for entity_type, entity_id, raw in upserts:
                entity = json.loads(raw)
                if entity_type not in DP_TYPES or entity.get("id") != entity_id:
                    raise ValueError(f"bad upsert of {entity_type} {entity_id}")
                config.upsert(entity_type, entity)
                touched.append((entity_type, entity_id))
            for entity_type, entity_id in removals:
                if entity_type not in DP_TYPES:
                    raise ValueError(f"bad removal of {entity_type} {entity_id}")
                config.remove(entity_type, entity_id)
                touched.append((entity_type, entity_id))
        except (ValueError, TypeError, AttributeError) as exc:
            raise self._reject(f"malformed delta: {exc}") from None
        problems = validate_entities(config, touched)
        if problems:
            raise self._reject(_summary(problems))
        if config.hash != expected_hash:
            raise self._reject(f"hash mismatch after delta: expected {expected_hash}, "
                               f"got {config.hash}")
        self._swap(Snapshot(to_version, config, "cluster-delta"))
        self.applied["cluster-delta"] = self.applied.get("cluster-delta", 0) + 1
        self.last_error = None


def decode_snapshot(data: bytes) -> ConfigSet:
    """A snapshot's payload (zlib-compressed JSON lists by type) as a ConfigSet."""
    try:
        lists: Any = json.loads(zlib.decompress(data))
        if not isinstance(lists, dict):
            raise ValueError("expected an object of entity lists")
        return ConfigSet.from_lists(lists)
    except (zlib.error, ValueError, TypeError, KeyError) as exc:
        raise ApplyError(f"unreadable snapshot: {exc}") from None


def _summary(problems: list[str]) -> str:
    shown = "; ".join(problems[:5])
    return shown + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
