"""consumers: the users or applications that call the APIs."""

from shared.schema.entity import EntitySchema, at_least_one_of
from shared.schema.fields import Field
from shared.schema.typedefs import id_field, tags_field, timestamp_field

CONSUMERS = EntitySchema(
    name="consumers",
    endpoint_key="username",
    description="A Consumer is a user or application that consumes the proxied APIs.",
    fields={
        "id": id_field(),
        "created_at": timestamp_field(),
        "updated_at": timestamp_field(),
        "username": Field("string", unique=True, len_min=1),
        "custom_id": Field("string", unique=True, len_min=1),
        "tags": tags_field(),
    },
    checks=[at_least_one_of("custom_id", "username")],
)
