"""The Admin API application: routes, Kong-shaped errors, and RBAC."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from cp.admin import clustering, config, entities, event_hooks, info, metrics, openapi
from cp.admin.keys import SETTINGS, STORE
from cp.store import Store, token_digest
from shared.errors import KongError

log = logging.getLogger("tidegate.admin")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN_HEADER = "Kong-Admin-Token"


@web.middleware
async def kong_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure answers JSON in Kong's shape; bad input is never a 500 or a traceback."""
    try:
        return await handler(request)
    except KongError as exc:
        return web.json_response(exc.to_json(), status=exc.status)
    except web.HTTPNotFound:
        return web.json_response({"message": "Not found"}, status=404)
    except web.HTTPMethodNotAllowed:
        return web.json_response({"message": "Method not allowed"}, status=405)
    except web.HTTPRequestEntityTooLarge:
        return web.json_response({"message": "Request body too large"}, status=413)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return web.json_response({"message": "An unexpected error occurred"}, status=500)


def rbac(settings: dict[str, Any]) -> Any:
    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not settings.get("enforce_rbac"):
            return await handler(request)
        token = request.headers.get(TOKEN_HEADER)
        if token and await _token_ok(request.app[STORE], token, settings):
            return await handler(request)
        return web.json_response(
            {"message": "Invalid credentials. Token or User credentials required"}, status=401
        )

    return check_token


async def _token_ok(store: Store, token: str, settings: dict[str, Any]) -> bool:
    password_digest = settings.get("admin_password_digest")
    if password_digest and hmac.compare_digest(token_digest(token), password_digest):
        return True
    admin = await store.admin_by_token(token)
    return bool(admin and admin.get("rbac_token_enabled"))


def create_app(store: Store, settings: dict[str, Any] | None = None) -> web.Application:
    settings = dict(settings or {})
    app = web.Application(
        middlewares=[kong_errors, rbac(settings)],
        client_max_size=settings.get("max_body_bytes", 64 * 1024 * 1024),
    )
    app[STORE] = store
    app[SETTINGS] = settings
    info.add_routes(app)
    clustering.add_routes(app)
    config.add_routes(app)
    event_hooks.add_routes(app)  # before entities: /event-hooks/sources is not a hook key
    entities.add_routes(app)
    openapi.add_routes(app)
    metrics.add_routes(app)  # /metrics, behind RBAC like the rest
    return app
