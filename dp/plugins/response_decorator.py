"""response-decorator: set a client response header from a field of an external JSON service.

Once the upstream answered, the plugin calls `conf.url` with the pooled plugin HTTP client and
copies `json_field` of the JSON reply into `response_header_name`. When the service is down,
times out, answers an error status or something that is not a JSON object holding the field,
the client gets 500 with the reason (`on_error: fail`, the default), or the error is logged and
the response goes out undecorated (`on_error: continue`).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from dp.plugins.base import Plugin
from dp.plugins.pdk import Kong

ACCESS_ERROR = "Error when trying to access 3rd party service: "
DECODE_ERROR = "Error when decoding 3rd party service response: "


class ResponseDecorator(Plugin):
    name = "response-decorator"
    priority = 800
    version = "0.1.0"

    async def response(self, kong: Kong, conf: dict[str, Any]) -> None:
        try:
            result = await kong.http.request(conf.get("method") or "GET", conf["url"],
                                             timeout=(conf.get("timeout") or 3000) / 1000)
            if result.status >= 400:
                raise aiohttp.ClientError(f"status {result.status}")
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            self._fail(kong, conf, ACCESS_ERROR + (str(exc) or type(exc).__name__))
            return
        try:
            doc = json.loads(result.body)
            field = conf.get("json_field") or "url"
            if not isinstance(doc, dict) or field not in doc:
                raise ValueError(f"no field '{field}' in the reply")
            value = doc[field]
        except ValueError as exc:
            self._fail(kong, conf, DECODE_ERROR + str(exc))
            return
        text = value if isinstance(value, str) else json.dumps(value)
        kong.response.set_header(conf.get("response_header_name") or "X-Decorated", text)

    @staticmethod
    def _fail(kong: Kong, conf: dict[str, Any], message: str) -> None:
        if conf.get("on_error") == "continue":
            kong.log.err(message)
            return
        kong.response.error(500, message)
