"""Which plugins run for a request, with which config, in which order.

Plugins can be global or scoped to a service, a route, a consumer or a combination. For each
plugin name the most specific configuration wins, in Kong's order:

    route+service+consumer, route+consumer, service+consumer, route+service,
    consumer, route, service, global

The consumer is only known once an auth plugin ran, so the choice is made per plugin as the
access phase goes: plugins run by descending priority (auth plugins have the highest), and each
looks up its config with the consumer identified so far. Everything that does not depend on the
consumer is resolved once per (route, service) and cached for the life of the snapshot,
including, per phase, the plugins that implement it (so a phase no plugin has costs nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dp.plugins.base import PHASES, Plugin

Scope = tuple[str | None, str | None, str | None]  # (route, service, consumer) ids


@dataclass(frozen=True, slots=True)
class Configured:
    """One plugin entity, ready to run."""

    id: str
    config: dict[str, Any]
    protocols: frozenset[str]


@dataclass(slots=True)
class Entry:
    """One plugin name on one (route, service): its default and per-consumer configs."""

    plugin: Plugin
    phases: frozenset[str]
    default: Configured | None
    by_consumer: dict[str, Configured]

    def config_for(self, consumer_id: str | None) -> Configured | None:
        if consumer_id is not None and self.by_consumer:
            found = self.by_consumer.get(consumer_id)
            if found is not None:
                return found
        return self.default


def _ref(entity: dict[str, Any], key: str) -> str | None:
    ref = entity.get(key)
    return ref.get("id") if ref else None


# One handler of a phase, ready for requests over one scheme: (entry, bound handler, plugin
# name, config), the config None when a consumer-scoped one may apply (looked up per request).
Step = tuple[Entry, Callable[..., Any], str, dict[str, Any] | None]


class RouteEntries(list[Entry]):
    """The plugins of one (route, service), highest priority first, with `by_phase`: phase →
    (entry, its bound handler) for the entries that implement it, in the same order (bound
    once here rather than with a getattr per request), and `steps`: what a phase runs for
    requests over one scheme, worked out on first use (`steps_for`)."""

    def __init__(self, entries: list[Entry]) -> None:
        super().__init__(entries)
        self.by_phase: dict[str, list[tuple[Entry, Callable[..., Any]]]] = {}
        for entry in entries:
            for phase in PHASES:
                if phase in entry.phases:
                    self.by_phase.setdefault(phase, []).append(
                        (entry, getattr(entry.plugin, phase)))
        # scheme → phase → steps (two lookups by strings, cheaper than one by a new tuple)
        self.steps: dict[str, dict[str, list[Step]]] = {}

    def steps_for(self, phase: str, scheme: str) -> list[Step]:
        """The steps of `phase` over `scheme` (and keep them in `steps`): a plugin whose one
        config does not take `scheme` is left out, the others carry their config unless
        consumer-scoped configs exist for them."""
        steps: list[Step] = []
        for entry, handler in self.by_phase.get(phase, ()):
            config = None
            if not entry.by_consumer:
                if entry.default is None or scheme not in entry.default.protocols:
                    continue
                config = entry.default.config
            steps.append((entry, handler, entry.plugin.name, config))
        self.steps.setdefault(scheme, {})[phase] = steps
        return steps


NONE = RouteEntries([])  # the plugins of a route when the snapshot has none at all


class PluginIndex:
    """The plugins of one snapshot, indexed by scope."""

    def __init__(self, plugin_entities: list[dict[str, Any]],
                 classes: dict[str, type[Plugin]]) -> None:
        self.instances = {name: cls() for name, cls in classes.items()}
        self.phases = {name: cls.phases() for name, cls in classes.items()}
        # name → scope → config
        self.scoped: dict[str, dict[Scope, Configured]] = {}
        self.consumer_ids: dict[str, set[str]] = {}
        for p in plugin_entities:
            name = p.get("name")
            if not p.get("enabled", True) or name not in classes:
                continue
            scope = (_ref(p, "route"), _ref(p, "service"), _ref(p, "consumer"))
            conf = Configured(p["id"], p.get("config") or {},
                              frozenset(p.get("protocols") or ("http", "https")))
            self.scoped.setdefault(name, {})[scope] = conf
            if scope[2] is not None:
                self.consumer_ids.setdefault(name, set()).add(scope[2])
        self._cache: dict[tuple[str | None, str | None], RouteEntries] = {}

    @classmethod
    def from_config(cls, config: Any, classes: dict[str, type[Plugin]]) -> PluginIndex:
        """Index a snapshot's plugins; plugins with a `load(config)` hook (key-auth's key
        index) get to read the snapshot once here."""
        index = cls(list(config.entities["plugins"].values()), classes)
        for name, instance in index.instances.items():
            load = getattr(instance, "load", None)
            if load is not None and name in index.scoped:
                load(config)
        return index

    def __bool__(self) -> bool:
        return bool(self.scoped)

    def for_route(self, route_id: str | None, service_id: str | None) -> RouteEntries:
        """The plugins that may run on this route, highest priority first (cached)."""
        key = (route_id, service_id)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._resolve(route_id, service_id)
        return found

    def _resolve(self, r: str | None, s: str | None) -> RouteEntries:
        entries = []
        for name, scoped in self.scoped.items():
            default = _first(scoped, [(r, s, None), (r, None, None), (None, s, None),
                                      (None, None, None)])
            by_consumer = {}
            for c in self.consumer_ids.get(name, ()):
                found = _first(scoped, [(r, s, c), (r, None, c), (None, s, c), (r, s, None),
                                        (None, None, c), (r, None, None), (None, s, None),
                                        (None, None, None)])
                if found is not None and found is not default:
                    by_consumer[c] = found
            if default is None and not by_consumer:
                continue
            entries.append(Entry(self.instances[name], self.phases[name], default, by_consumer))
        entries.sort(key=lambda e: (-e.plugin.priority, e.plugin.name))
        return RouteEntries(entries)


def _first(scoped: dict[Scope, Configured], order: list[Scope]) -> Configured | None:
    for scope in order:
        found = scoped.get(scope)
        if found is not None:
            return found
    return None
