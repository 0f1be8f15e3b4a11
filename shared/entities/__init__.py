"""Every entity type, in dependency order (parents before the children that reference them)."""

from shared.entities.admins import ADMINS
from shared.entities.certificates import CERTIFICATES, SNIS
from shared.entities.consumers import CONSUMERS
from shared.entities.event_hooks import EVENT_HOOKS
from shared.entities.keyauth_credentials import KEYAUTH_CREDENTIALS
from shared.entities.plugins import PLUGINS
from shared.entities.routes import ROUTES
from shared.entities.services import SERVICES
from shared.entities.upstreams import TARGETS, UPSTREAMS
from shared.schema.entity import EntitySchema

ENTITIES: dict[str, EntitySchema] = {
    s.name: s
    for s in (
        CERTIFICATES, SNIS, SERVICES, ROUTES, CONSUMERS, KEYAUTH_CREDENTIALS, UPSTREAMS, TARGETS,
        PLUGINS, EVENT_HOOKS, ADMINS,
    )
}

__all__ = ["ENTITIES"]
