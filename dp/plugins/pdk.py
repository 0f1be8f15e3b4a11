"""The plugin development kit: what a plugin handler sees as `kong`.

In the spirit of Kong's PDK, in Python: `kong.request` reads the client request,
`kong.service.request` changes what goes upstream, `kong.response` sets headers on the client
response or ends the request (`exit`, `error`), `kong.client` tells who is calling (and lets auth
plugins name the consumer), `kong.ctx.shared` / `kong.ctx.plugin` carry data between phases,
`kong.log` logs with the plugin's name, `kong.http` is the pooled async HTTP client for plugins
that call external services.

`kong.response.exit()` and `error()` raise `PluginExit`, so `return` after them is optional; the
runtime turns it into the client's response and skips the rest of the phase.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from dp.plugins import http_client


class PluginExit(Exception):
    """A plugin ended the request with its own response."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None,
                 message: str | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers, self.message = status, body, headers, message


class Exchange:
    """Per-request state the proxy and the PDK share (created only when plugins run)."""

    __slots__ = ("client_ip", "client_port", "consumer", "credential", "listen_port",
                 "plugin_ctx", "req", "resp_headers", "resp_set", "resp_status", "route",
                 "scheme", "service", "shared", "up_headers", "up_query")

    def __init__(self, req: Any, scheme: str, client: tuple[str, int], listen_port: int,
                 route: dict[str, Any], service: dict[str, Any] | None) -> None:
        self.req = req
        self.scheme = scheme
        self.client_ip, self.client_port = client
        self.listen_port = listen_port
        self.route, self.service = route, service
        self.consumer: dict[str, Any] | None = None
        self.credential: dict[str, Any] | None = None
        self.shared: dict[str, Any] = {}
        self.plugin_ctx: dict[str, dict[str, Any]] = {}
        self.up_headers: dict[str, tuple[str, str | None]] = {}  # lower → (name, value|None)
        self.up_query: str | None = None
        self.resp_status = 0
        self.resp_headers: list[tuple[bytes, bytes]] = []
        self.resp_set: dict[str, tuple[str, list[str] | None]] = {}  # lower → (name, values)


class _Request:
    def __init__(self, ex: Exchange) -> None:
        self._ex = ex

    def get_method(self) -> str:
        return str(self._ex.req.method)

    def get_scheme(self) -> str:
        return self._ex.scheme

    def get_host(self) -> str:
        return str(self._ex.req.host).partition(":")[0]

    def get_path(self) -> str:
        return str(self._ex.req.path)

    def get_raw_query(self) -> str:
        return str(self._ex.req.query)

    def get_query(self) -> dict[str, list[str]]:
        return parse_qs(self._ex.req.query, keep_blank_values=True)

    def get_query_arg(self, name: str) -> str | None:
        values = self.get_query().get(name)
        return values[0] if values else None

    def get_header(self, name: str) -> str | None:
        return self._ex.req.hmap.get(name.lower())  # type: ignore[no-any-return]

    def get_headers(self) -> dict[str, str]:
        return dict(self._ex.req.hmap)


class _ServiceRequest:
    def __init__(self, ex: Exchange) -> None:
        self._ex = ex

    def set_header(self, name: str, value: str) -> None:
        self._ex.up_headers[name.lower()] = (name, str(value))

    def clear_header(self, name: str) -> None:
        self._ex.up_headers[name.lower()] = (name, None)

    def set_raw_query(self, query: str) -> None:
        self._ex.up_query = query


class _ServiceResponse:
    def __init__(self, ex: Exchange) -> None:
        self._ex = ex

    def get_status(self) -> int:
        return self._ex.resp_status

    def get_header(self, name: str) -> str | None:
        wanted = name.lower().encode("latin-1")
        for k, v in self._ex.resp_headers:
            if k.lower() == wanted:
                return v.decode("latin-1")
        return None


class _Service:
    def __init__(self, ex: Exchange) -> None:
        self.request = _ServiceRequest(ex)
        self.response = _ServiceResponse(ex)
        self._ex = ex

    def get(self) -> dict[str, Any] | None:
        return self._ex.service


class _Response:
    def __init__(self, ex: Exchange) -> None:
        self._ex = ex

    def get_status(self) -> int:
        return self._ex.resp_status

    def set_header(self, name: str, value: Any) -> None:
        self._ex.resp_set[name.lower()] = (name, [str(value)])

    def add_header(self, name: str, value: Any) -> None:
        _, values = self._ex.resp_set.get(name.lower(), (name, None))
        self._ex.resp_set[name.lower()] = (name, [*(values or []), str(value)])

    def clear_header(self, name: str) -> None:
        self._ex.resp_set[name.lower()] = (name, None)

    def exit(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        raise PluginExit(status, body, headers)

    def error(self, status: int, message: str | None = None,
              headers: dict[str, str] | None = None) -> None:
        raise PluginExit(status, None, headers, message)


class _Client:
    def __init__(self, ex: Exchange) -> None:
        self._ex = ex

    def get_ip(self) -> str:
        return self._ex.client_ip

    def get_forwarded_ip(self) -> str:
        return self._ex.client_ip

    def get_port(self) -> int:
        return self._ex.client_port

    def get_consumer(self) -> dict[str, Any] | None:
        return self._ex.consumer

    def get_credential(self) -> dict[str, Any] | None:
        return self._ex.credential

    def authenticate(self, consumer: dict[str, Any] | None,
                     credential: dict[str, Any] | None) -> None:
        self._ex.consumer, self._ex.credential = consumer, credential


class _Ctx:
    def __init__(self, ex: Exchange, plugin: str) -> None:
        self.shared = ex.shared
        self.plugin = ex.plugin_ctx.setdefault(plugin, {})


class _Log:
    def __init__(self, plugin: str) -> None:
        self._log = logging.getLogger(f"tidegate.plugin.{plugin}")

    def __call__(self, *parts: Any) -> None:
        self._log.info(" ".join(str(p) for p in parts))

    def debug(self, *parts: Any) -> None:
        self._log.debug(" ".join(str(p) for p in parts))

    def info(self, *parts: Any) -> None:
        self._log.info(" ".join(str(p) for p in parts))

    def warn(self, *parts: Any) -> None:
        self._log.warning(" ".join(str(p) for p in parts))

    def err(self, *parts: Any) -> None:
        self._log.error(" ".join(str(p) for p in parts))


class Kong:
    """The `kong` object handed to one plugin for one request."""

    __slots__ = ("client", "ctx", "http", "log", "request", "response", "service")

    def __init__(self, ex: Exchange, plugin: str) -> None:
        self.request = _Request(ex)
        self.response = _Response(ex)
        self.service = _Service(ex)
        self.client = _Client(ex)
        self.ctx = _Ctx(ex, plugin)
        self.log = _Log(plugin)
        self.http = http_client
