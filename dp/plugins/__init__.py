"""The data plane's plugin runtime: plugin classes, the PDK, scoping and ordering.

`RUNTIME` maps a plugin name to its class; the config schemas live in `shared/plugins/` so the
control plane validates them without importing this package. A plugin that has a schema but no
class here (websocket-size-limit: WebSocket phases) is accepted and does not run on HTTP traffic.
"""

from __future__ import annotations

from dp.plugins.base import Plugin


def runtime_classes() -> dict[str, type[Plugin]]:
    from dp.plugins.key_auth import KeyAuth
    from dp.plugins.response_decorator import ResponseDecorator

    return {cls.name: cls for cls in (KeyAuth, ResponseDecorator)}


__all__ = ["Plugin", "runtime_classes"]
