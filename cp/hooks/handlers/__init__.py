"""The four handlers behind one call: `run(hook, payload, delivery_id, ctx)` → Outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cp.hooks.config import HooksConfig
from cp.hooks.counts import DeliveryCounts
from cp.hooks.handlers import lambda_, log, webhook, webhook_custom
from cp.hooks.handlers.lambda_ import LuaWorker
from cp.hooks.outbound import Outbound
from cp.hooks.outcome import Outcome, failed


@dataclass
class HandlerContext:
    """What handlers share on one node: the HTTP client, the Lua worker, the settings, and
    the delivery counters /metrics shows."""

    config: HooksConfig = field(default_factory=HooksConfig)
    deliveries: DeliveryCounts = field(default_factory=DeliveryCounts)
    outbound: Outbound = field(init=False)
    lua: LuaWorker = field(init=False)

    def __post_init__(self) -> None:
        self.outbound = Outbound(self.config.allow, self.config.deny)
        self.lua = LuaWorker(self.config.lambda_timeout, self.config.lambda_memory_mb)

    async def close(self) -> None:
        await self.outbound.close()
        await self.lua.close()


async def run(hook: dict[str, Any], payload: dict[str, Any], delivery_id: str,
              ctx: HandlerContext) -> Outcome:
    handler = hook.get("handler")
    if handler == "webhook":
        return await webhook.run(hook, payload, delivery_id, ctx.outbound, ctx.config)
    if handler == "webhook-custom":
        return await webhook_custom.run(hook, payload, delivery_id, ctx.outbound, ctx.config)
    if handler == "log":
        return log.run(hook, payload)
    if handler == "lambda":
        return await lambda_.run(hook, payload, ctx.lua)
    return failed(f"unknown handler '{handler}'")
