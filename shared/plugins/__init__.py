"""Plugin config schemas: the registry both planes share.

A plugin's config schema lives here (not with its data-plane code) so that the control plane can
validate plugin config without importing the data plane. Each plugin module calls `register()`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from shared.schema.fields import Field
from shared.schema.typedefs import GRPC_PROTOCOLS, HTTP_PROTOCOLS, WS_PROTOCOLS

DEFAULT_PROTOCOLS = (*GRPC_PROTOCOLS, *HTTP_PROTOCOLS)


@dataclass(frozen=True)
class PluginSchema:
    name: str
    version: str
    config: Field  # a record
    protocols: tuple[str, ...] = DEFAULT_PROTOCOLS  # which a plugin may run on
    default_protocols: tuple[str, ...] = DEFAULT_PROTOCOLS
    no_consumer: bool = False  # cannot be scoped to a consumer (e.g. auth plugins)
    description: str = ""


_REGISTRY: dict[str, PluginSchema] = {}
_loaded = False

# Modules that register the bundled plugins' schemas.
BUNDLED = ("key_auth", "response_decorator", "websocket_size_limit", "websocket_validator",
           "rate_limiting_advanced")


def register(schema: PluginSchema) -> PluginSchema:
    _REGISTRY[schema.name] = schema
    return schema


def _load_bundled() -> None:
    """Import the bundled schemas once (a plugin registered before that — a custom one —
    must not stop them from loading)."""
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUNDLED:
            importlib.import_module(f"shared.plugins.{module}")


def get(name: str) -> PluginSchema | None:
    _load_bundled()
    return _REGISTRY.get(name)


def available() -> dict[str, PluginSchema]:
    _load_bundled()
    return dict(sorted(_REGISTRY.items()))


__all__ = ["DEFAULT_PROTOCOLS", "WS_PROTOCOLS", "PluginSchema", "available", "get", "register"]
