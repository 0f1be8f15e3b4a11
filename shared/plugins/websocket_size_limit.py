"""websocket-size-limit: cap the payload of WebSocket messages per direction."""

from shared.plugins import PluginSchema, register
from shared.schema.fields import Field
from shared.schema.typedefs import WS_PROTOCOLS

MiB = 1024 * 1024

WEBSOCKET_SIZE_LIMIT = register(PluginSchema(
    name="websocket-size-limit",
    version="0.1.0",
    protocols=WS_PROTOCOLS,
    default_protocols=WS_PROTOCOLS,
    description="Limit the size of WebSocket messages sent by clients and upstreams.",
    config=Field("record", required=True, fields={
        "client_max_payload": Field("integer", default=MiB, between=(1, 2**31 - 1)),
        "upstream_max_payload": Field("integer", default=16 * MiB, between=(1, 2**31 - 1)),
    }),
))
