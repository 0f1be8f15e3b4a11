"""Event-hook endpoints beyond CRUD: the source catalogue, /test, /ping, and the delivery log.

Registered before the generic entity routes, so `/event-hooks/sources` is not read as a hook
named "sources". /test and /ping run the handler at once (outside the delivery queue) with this
node's HTTP client and Lua worker, or a private set when the server did not attach an engine.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cp.admin.body import read_body
from cp.admin.entities import page_size
from cp.admin.keys import STORE
from cp.hooks import payloads, records
from cp.hooks.config import HooksConfig
from cp.hooks.handlers import HandlerContext
from cp.hooks.handlers import run as run_handler
from shared.entities import ENTITIES
from shared.errors import InvalidOffset
from shared.events import catalogue
from shared.schema.fields import is_uuid

NOT_FOUND = {"message": "Not found"}


# Without an engine attached (tests, tools), /test and /ping may only call this machine.
LOOPBACK_ONLY = HooksConfig(allow="127.0.0.0/8,::1/128,localhost")


@dataclass
class HookServices:
    """The node's handler context (the engine's when attached, else a private one)."""

    config: HooksConfig = field(default_factory=lambda: LOOPBACK_ONLY)
    ctx: HandlerContext | None = None
    own: bool = False

    def attach(self, config: HooksConfig, ctx: HandlerContext) -> None:
        self.config, self.ctx = config, ctx

    def context(self) -> HandlerContext:
        if self.ctx is None:
            self.ctx, self.own = HandlerContext(self.config), True
        return self.ctx

    async def close(self) -> None:
        if self.own and self.ctx is not None:
            await self.ctx.close()
            self.ctx, self.own = None, False


HOOKS: web.AppKey[HookServices] = web.AppKey("event_hooks", HookServices)


async def sources(request: web.Request) -> web.Response:
    return web.json_response({"data": catalogue()})


async def source(request: web.Request) -> web.Response:
    events = catalogue().get(request.match_info["source"])
    if events is None:
        return web.json_response(NOT_FOUND, status=404)
    return web.json_response({"data": events})


async def _hook(request: web.Request) -> dict[str, Any] | None:
    return await request.app[STORE].get(ENTITIES["event_hooks"], request.match_info["key"])


async def test(request: web.Request) -> web.Response:
    """Run the handler on the posted data (snooze and on_change skipped)."""
    hook = await _hook(request)
    if hook is None:
        return web.json_response(NOT_FOUND, status=404)
    posted = await read_body(request, None)
    if not isinstance(posted, dict):
        return web.json_response({"message": "the test data must be an object"}, status=400)
    data = {**posted, "event": hook.get("event"), "source": hook["source"]}
    outcome = await run_handler(hook, data, str(uuid.uuid4()), request.app[HOOKS].context())
    return web.json_response({"data": data, "result": outcome.result()})


async def ping(request: web.Request) -> web.Response:
    hook = await _hook(request)
    if hook is None:
        return web.json_response(NOT_FOUND, status=404)
    if hook["handler"] != "webhook":
        return web.json_response(
            {"message": f"handler '{hook['handler']}' does not support 'ping'"}, status=400)
    body = payloads.ping(hook)
    await run_handler(hook, body, str(uuid.uuid4()), request.app[HOOKS].context())
    return web.json_response(body)


async def deliveries(request: web.Request) -> web.Response:
    hook = await _hook(request)
    if hook is None:
        return web.json_response(NOT_FOUND, status=404)
    raw = request.query.get("offset")
    if raw is not None and not (raw.isascii() and raw.isdigit()):
        raise InvalidOffset(raw, "bad cursor")
    async with request.app[STORE].pool.connection() as conn:
        data, more = await records.list_deliveries(
            conn, hook["id"], page_size(request.query), int(raw) if raw else None)
        reason = await records.disabled_reason(conn, hook["id"])
    body: dict[str, Any] = {"data": data, "next": None, "disabled": reason}
    if more is not None:
        body["next"] = f"{request.path}?size={page_size(request.query)}&offset={more}"
        body["offset"] = str(more)
    return web.json_response(body)


async def retry(request: web.Request) -> web.Response:
    hook = await _hook(request)
    delivery = request.match_info["delivery"]
    if hook is None or not is_uuid(delivery):
        return web.json_response(NOT_FOUND, status=404)
    period = request.app[HOOKS].config.retry_period
    async with request.app[STORE].pool.connection() as conn:
        if not await records.retry(conn, hook["id"], delivery, period):
            return web.json_response(NOT_FOUND, status=404)
    return web.json_response({"id": delivery, "status": "pending"}, status=202)


async def _close_services(app: web.Application) -> None:
    await app[HOOKS].close()


def add_routes(app: web.Application) -> None:
    app[HOOKS] = HookServices()
    app.on_cleanup.append(_close_services)
    router = app.router
    router.add_get("/event-hooks/sources", sources)
    router.add_get("/event-hooks/sources/{source}", source)
    router.add_post("/event-hooks/{key}/test", test)
    router.add_get("/event-hooks/{key}/ping", ping)
    router.add_get("/event-hooks/{key}/deliveries", deliveries)
    router.add_post("/event-hooks/{key}/deliveries/{delivery}/retry", retry)
