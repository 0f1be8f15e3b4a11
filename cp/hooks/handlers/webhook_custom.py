"""The `webhook-custom` handler: method, URL, headers, payload or body, rendered by templates.

Templates (`{{ entity.username }}`, `{{ operation }}`) are Jinja2 in a sandboxed environment: no
attribute access to Python internals, bounded ranges, and a missing field renders as an empty
string at any depth. Template variables are the event's fields plus `event` and `source`.
Without `body`, the `payload` map is encoded by the Content-Type header (JSON when it names
json, else a form); a template error fails the delivery without retry, never an error page.
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import urlencode

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from multidict import CIMultiDict

from cp.hooks.config import HooksConfig
from cp.hooks.handlers.sign import add_signatures
from cp.hooks.outbound import Outbound
from cp.hooks.outcome import Outcome, failed

FORM = "application/x-www-form-urlencoded"
_ENV = SandboxedEnvironment(undefined=jinja2.ChainableUndefined, autoescape=False,
                            finalize=lambda v: "" if v is None else v)


@functools.lru_cache(maxsize=512)
def _template(text: str) -> jinja2.Template:
    return _ENV.from_string(text)


def render(text: str, variables: dict[str, Any]) -> str:
    return _template(text).render(variables)


def request(hook: dict[str, Any], payload: dict[str, Any], delivery_id: str,
            config: HooksConfig) -> tuple[CIMultiDict[str], bytes | None]:
    """Headers and body; raises jinja2.TemplateError for a broken template."""
    conf = hook.get("config") or {}
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in (conf.get("headers") or {}).items():
        headers[name] = render(value, payload) if conf.get("headers_format") else value
    body: bytes | None = None
    if conf.get("body") is not None:
        text = conf["body"]
        body = (render(text, payload) if conf.get("body_format", True) else text).encode()
    elif conf.get("payload"):
        values = {k: render(v, payload) if conf.get("payload_format", True) else v
                  for k, v in conf["payload"].items()}
        ctype = headers.get("content-type", "")
        if "json" in ctype.lower():
            body = json.dumps(values, ensure_ascii=False).encode()
        else:
            headers.setdefault("content-type", FORM)
            body = urlencode(values).encode()
    add_signatures(headers, body or b"", conf.get("secret"), delivery_id, config)
    return headers, body


async def run(hook: dict[str, Any], payload: dict[str, Any], delivery_id: str,
              outbound: Outbound, config: HooksConfig) -> Outcome:
    conf = hook.get("config") or {}
    try:
        headers, body = request(hook, payload, delivery_id, config)
    except jinja2.TemplateError as exc:
        return failed(f"template error: {exc}")
    return await outbound.send(conf["method"], conf["url"], headers, body,
                               ssl_verify=bool(conf.get("ssl_verify")),
                               timeout=config.timeout_for(conf))
