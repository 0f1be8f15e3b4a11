"""The `webhook` handler: a JSON POST of the event to `config.url`, as Kong sends it."""

from __future__ import annotations

import json
from typing import Any

from multidict import CIMultiDict

from cp.hooks.config import HooksConfig
from cp.hooks.handlers.sign import add_signatures
from cp.hooks.outbound import Outbound
from cp.hooks.outcome import Outcome


def request(hook: dict[str, Any], payload: dict[str, Any], delivery_id: str,
            config: HooksConfig) -> tuple[CIMultiDict[str], bytes]:
    """Headers and exact body bytes (the signature is over these bytes)."""
    conf = hook.get("config") or {}
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers: CIMultiDict[str] = CIMultiDict({"content-type": "application/json"})
    headers.update(conf.get("headers") or {})
    add_signatures(headers, body, conf.get("secret"), delivery_id, config)
    return headers, body


async def run(hook: dict[str, Any], payload: dict[str, Any], delivery_id: str,
              outbound: Outbound, config: HooksConfig) -> Outcome:
    conf = hook.get("config") or {}
    headers, body = request(hook, payload, delivery_id, config)
    return await outbound.send("POST", conf["url"], headers, body,
                               ssl_verify=bool(conf.get("ssl_verify")),
                               timeout=config.timeout_for(conf))
