"""The data plane's plugin runtime: plugin classes, the PDK, scoping and ordering.

`RUNTIME` maps a plugin name to its class; the config schemas live in `shared/plugins/` so the
control plane validates them without importing this package. A plugin that has a schema but no
class here is accepted by the control plane and ignored by this data plane.
"""

from __future__ import annotations

from dp.plugins.base import Plugin


def runtime_classes() -> dict[str, type[Plugin]]:
    from dp.plugins.key_auth import KeyAuth
    from dp.plugins.rate_limiting_advanced import RateLimitingAdvanced
    from dp.plugins.response_decorator import ResponseDecorator
    from dp.plugins.websocket_size_limit import WebSocketSizeLimit
    from dp.plugins.websocket_validator import WebSocketValidator

    classes: tuple[type[Plugin], ...] = (KeyAuth, ResponseDecorator, WebSocketSizeLimit,
                                         WebSocketValidator, RateLimitingAdvanced)
    return {cls.name: cls for cls in classes}


__all__ = ["Plugin", "runtime_classes"]
