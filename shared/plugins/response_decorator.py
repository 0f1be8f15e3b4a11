"""response-decorator: add a header to the client response with a value read from an external
JSON service (the "consume external services" plugin pattern)."""

from shared.plugins import PluginSchema, register
from shared.schema.fields import Field

RESPONSE_DECORATOR = register(PluginSchema(
    name="response-decorator",
    version="0.1.0",
    description="Decorate responses with a value fetched from an external JSON service.",
    config=Field("record", required=True, fields={
        "url": Field("string", required=True, match=r"^https?://"),
        "method": Field("string", required=True, default="GET", one_of=("GET", "POST")),
        "json_field": Field("string", required=True, default="url", len_min=1),
        "response_header_name": Field("string", required=True, default="X-Decorated",
                                      match=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"),
        "on_error": Field("string", required=True, default="fail", one_of=("fail", "continue")),
        "timeout": Field("integer", required=True, default=3000, between=(1, 600000)),
    }),
))
