"""admins: people allowed to use the Admin API when RBAC is enforced.

`token` is write-only: it is stored as a digest by the control plane and never shown, exported,
logged or sent to data planes.
"""

from shared.schema.entity import EntitySchema, at_least_one_of
from shared.schema.fields import Field
from shared.schema.typedefs import id_field, tags_field, timestamp_field

ADMINS = EntitySchema(
    name="admins",
    endpoint_key="username",
    to_data_plane=False,
    description="An Admin may call the Admin API with its token when RBAC is enforced.",
    fields={
        "id": id_field(),
        "created_at": timestamp_field(),
        "updated_at": timestamp_field(),
        "username": Field("string", required=True, unique=True, len_min=1),
        "email": Field("string", unique=True, match=r"^[^@\s]+@[^@\s]+$"),
        "custom_id": Field("string", unique=True, len_min=1),
        "token": Field("string", writeonly=True, len_min=8,
                       description="Sent as Kong-Admin-Token; stored only as a digest."),
        "rbac_token_enabled": Field("boolean", required=True, default=True),
        "tags": tags_field(),
    },
    checks=[at_least_one_of("username")],
)
