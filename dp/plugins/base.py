"""What a data-plane plugin is: a class with a name, a priority, a version and phase handlers.

Handlers receive the `kong` PDK object and the plugin's validated config (a dict; its schema is
in `shared/plugins/`, where the control plane validates it too). A handler that a class does not
override is never called, so a plugin pays only for the phases it uses.

- `access(kong, conf)` — before the request goes upstream; may end it (`kong.response.exit`).
- `response(kong, conf)` — once the upstream's status and headers are known, before anything
  is sent to the client; may set client headers or replace the response. (Kong's
  `header_filter` is the same point for us: `header_filter` is accepted as an alias.)
- `log(kong, conf)` — after the response went out; must not fail the request.

These three and `ws_handshake` may be `async def`, or plain functions that return None, or an
awaitable when they have to wait: the runtime awaits only what it gets. A handler on every
request that rarely waits (rate-limiting-advanced counting locally) then costs no coroutine.

WebSocket phases (dp/proxy/upgrade.py, dp/ws/):

- `ws_handshake(kong, conf)` — on an upgrade request, instead of `access` (a plugin
  without it runs `access` there); `kong` is the HTTP PDK plus `kong.websocket.client` /
  `.upstream` (`set_max_payload_size`); `kong.response.exit()` refuses the handshake.
- `ws_client_frame(kong, conf)` / `ws_upstream_frame(kong, conf)` (sync, per frame) — the same
  per-connection `kong` object, with the in-flight frame on `kong.websocket.client` / `.upstream`.
- `ws_close(kong, conf)` (sync) — once, when the pair has ended.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, ClassVar

Done = Awaitable[None] | None  # what a handler returns: see the module docstring

PHASES = ("access", "response", "log", "ws_handshake", "ws_client_frame", "ws_upstream_frame",
          "ws_close")


class Plugin:
    name: ClassVar[str] = ""
    priority: ClassVar[int] = 0
    version: ClassVar[str] = "0.1.0"

    def access(self, kong: Any, conf: dict[str, Any]) -> Done:  # pragma: no cover
        return None

    def response(self, kong: Any, conf: dict[str, Any]) -> Done:  # pragma: no cover
        return None

    def log(self, kong: Any, conf: dict[str, Any]) -> Done:  # pragma: no cover
        return None

    def ws_handshake(self, kong: Any, conf: dict[str, Any]) -> Done:  # pragma: no cover
        return None

    def ws_client_frame(self, kong: Any, conf: dict[str, Any]) -> None:  # pragma: no cover
        return None

    def ws_upstream_frame(self, kong: Any, conf: dict[str, Any]) -> None:  # pragma: no cover
        return None

    def ws_close(self, kong: Any, conf: dict[str, Any]) -> None:  # pragma: no cover
        return None

    @classmethod
    def phases(cls) -> frozenset[str]:
        """The phases this class really implements."""
        found = {p for p in PHASES if getattr(cls, p) is not getattr(Plugin, p)}
        if getattr(cls, "header_filter", None) is not None and "response" not in found:
            cls.response = cls.header_filter  # type: ignore[attr-defined, method-assign]
            found.add("response")
        return frozenset(found)
