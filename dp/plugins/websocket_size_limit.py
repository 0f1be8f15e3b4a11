"""websocket-size-limit: cap the payload of WebSocket messages per direction.

The config (schema in `shared/plugins/websocket_size_limit.py`) holds `client_max_payload`
(default 1 MiB) and `upstream_max_payload` (default 16 MiB). The plugin does not look at frames
itself: in `ws_handshake` it sets each direction's limit through the PDK
(`set_max_payload_size`), and the pipeline's `FrameReader` enforces it from the frame header,
counted over the message being aggregated — so a frame over the limit is refused before its
payload is buffered. Over the limit: 1009 to the sender, 1001 to the peer.
"""

from __future__ import annotations

from typing import Any

from dp.plugins.base import Plugin

MiB = 1024 * 1024


class WebSocketSizeLimit(Plugin):
    name = "websocket-size-limit"
    priority = 1003
    version = "0.1.0"

    async def ws_handshake(self, kong: Any, conf: dict[str, Any]) -> None:
        client, upstream = limits(conf)
        kong.websocket.client.set_max_payload_size(client)
        kong.websocket.upstream.set_max_payload_size(upstream)


def limits(conf: dict[str, Any]) -> tuple[int, int]:
    """(client, upstream) limits from a config, with the schema's defaults filled in."""
    return (int(conf.get("client_max_payload") or MiB),
            int(conf.get("upstream_max_payload") or 16 * MiB))
