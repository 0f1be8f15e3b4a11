"""key-auth: identify consumers by an API key in a header, query string or body."""

from shared.plugins import PluginSchema, register
from shared.schema.fields import Field
from shared.schema.typedefs import WS_PROTOCOLS

KEY_AUTH = register(PluginSchema(
    name="key-auth",
    version="0.1.0",
    protocols=("grpc", "grpcs", "http", "https", *WS_PROTOCOLS),
    no_consumer=True,
    description="Authenticate consumers with an API key.",
    config=Field("record", required=True, fields={
        "key_names": Field("array", required=True, default=["apikey"], len_min=1,
                           elements=Field("string", match=r"^[A-Za-z0-9_-]+$")),
        "hide_credentials": Field("boolean", required=True, default=False),
        "anonymous": Field("string"),
        "key_in_header": Field("boolean", required=True, default=True),
        "key_in_query": Field("boolean", required=True, default=True),
        "key_in_body": Field("boolean", required=True, default=False),
        "run_on_preflight": Field("boolean", required=True, default=True),
    }),
))
