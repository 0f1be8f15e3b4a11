"""The plugin development kit: what a plugin handler sees as `kong`.

In the spirit of Kong's PDK, in Python: `kong.request` reads the client request,
`kong.service.request` changes what goes upstream, `kong.response` sets headers on the client
response (`set_header`, `set_headers`, `add_header`, `clear_header`; for lines rendered ahead
with `header_key`/`header_line`, `take_header_lines(kong.exchange, lines)`) or ends the request
(`exit`, `error`),
`kong.client` tells who is calling (and lets auth plugins name the consumer),
`kong.ctx.shared` / `kong.ctx.plugin` carry data between phases, `kong.log` logs with the
plugin's name, `kong.http` is the pooled async HTTP client for plugins
that call external services.

`kong.response.exit()` and `error()` raise `PluginExit`, so `return` after them is optional; the
runtime turns it into the client's response and skips the rest of the phase.

This runs on every request of a route with plugins, so it is built to cost little: a `kong`
per plugin and phase whose parts are made on first use, loggers made once per plugin, no
reference cycles (the request is freed by reference counting, not by the cyclic GC), and
client headers rendered when set, under cached keys.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

from dp.plugins import http_client
from dp.proxy.http import header_bytes


class PluginExit(Exception):
    """A plugin ended the request with its own response."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None,
                 message: str | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers, self.message = status, body, headers, message


class Exchange:
    """Per-request state the proxy and the PDK share (created only when plugins run).

    Made for every request on a route with plugins, so it is cheap, and it holds no reference
    to the `kong` objects that point at it: without a cycle the whole request is freed by
    reference counting the moment it is answered, instead of waiting for (and paying for) the
    cyclic garbage collector. What most requests never touch is made on first use, the PDK's
    parts that do not depend on the plugin among it (`pdk_parts`)."""

    __slots__ = ("client_ip", "client_port", "consumer", "credential", "listen_port",
                 "pdk_parts", "plugin_ctx", "req", "resp_headers", "resp_set", "resp_status",
                 "route", "scheme", "service", "shared", "up_headers", "up_query", "websocket")

    def __init__(self, req: Any, scheme: str, client: tuple[str, int], listen_port: int,
                 route: dict[str, Any], service: dict[str, Any] | None) -> None:
        self.req = req
        self.scheme = scheme
        self.client_ip, self.client_port = client
        self.listen_port = listen_port
        self.route, self.service = route, service
        self.consumer: dict[str, Any] | None = None
        self.credential: dict[str, Any] | None = None
        self.shared: dict[str, Any] | None = None  # kong.ctx.shared, on first use
        self.plugin_ctx: dict[str, dict[str, Any]] | None = None  # kong.ctx.plugin by plugin
        # lower → (name, value|None), on first use (most requests change no upstream header)
        self.up_headers: dict[str, tuple[str, str | None]] | None = None
        self.up_query: str | None = None
        self.resp_status = 0
        self.resp_headers: Sequence[tuple[bytes, bytes]] = ()  # the upstream's, once known
        # Client response headers set by plugins, on first use: `header_key(name)` (lower-case
        # bytes, compared as is with the upstream's names) → the header lines as sent
        # (b"Name: value\r\n" each, `header_bytes`; b"" = cleared). Rendered when set, so
        # sending them is a list extend, and they allocate nothing the cyclic GC has to track.
        self.resp_set: dict[bytes, bytes] | None = None
        # kong.request, .response, .service, .client: the same for every plugin, on first use
        self.pdk_parts: _Parts | None = None
        self.websocket: Any = None  # `kong.websocket` on a WebSocket handshake (dp/ws/pdk.py)


def take_header_lines(ex: Exchange, lines: dict[bytes, bytes]) -> None:
    """Client response headers rendered ahead (`header_key(name)` → `header_line(name,
    value)`), for a plugin that sets the same names on every request: one dict update. `lines`
    must be made for this request: the exchange may keep it as its own (no copy)."""
    changes = ex.resp_set
    if changes is None:
        ex.resp_set = lines
    else:
        changes.update(lines)


class _Request:
    __slots__ = ("_ex",)

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
    __slots__ = ("_ex",)

    def __init__(self, ex: Exchange) -> None:
        self._ex = ex

    def set_header(self, name: str, value: str) -> None:
        self._changes()[name.lower()] = (name, str(value))

    def clear_header(self, name: str) -> None:
        self._changes()[name.lower()] = (name, None)

    def _changes(self) -> dict[str, tuple[str, str | None]]:
        found = self._ex.up_headers
        if found is None:
            found = self._ex.up_headers = {}
        return found

    def set_raw_query(self, query: str) -> None:
        self._ex.up_query = query


class _ServiceResponse:
    __slots__ = ("_ex",)

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
    __slots__ = ("_ex", "request", "response")

    def __init__(self, ex: Exchange) -> None:
        self.request = _ServiceRequest(ex)
        self.response = _ServiceResponse(ex)
        self._ex = ex

    def get(self) -> dict[str, Any] | None:
        return self._ex.service


_HEADER_KEYS: dict[str, bytes] = {}  # header name as plugins write it → its key, see below
_HEADER_KEYS_MAX = 4096  # names come from plugin code and configs; a bound all the same


def header_key(name: str) -> bytes:
    """A client response header's key in `Exchange.resp_set`: its lower-case latin-1 bytes,
    as the response head meets the upstream's names. Cached, because plugins set the same few
    names on every request: no lower() and no encode() per header then."""
    found = _HEADER_KEYS.get(name)
    if found is None:
        found = name.lower().encode("latin-1")
        if len(_HEADER_KEYS) < _HEADER_KEYS_MAX:
            _HEADER_KEYS[name] = found
    return found


def header_line(name: str, value: Any) -> bytes:
    """A client response header as `Exchange.resp_set` holds it: the line as sent (see
    `header_bytes`: latin-1, else UTF-8)."""
    return header_bytes(f"{name}: {value}\r\n")


class _Response:
    __slots__ = ("_ex",)

    def __init__(self, ex: Exchange) -> None:
        self._ex = ex

    def get_status(self) -> int:
        return self._ex.resp_status

    def _changes(self) -> dict[bytes, bytes]:
        found = self._ex.resp_set
        if found is None:
            found = self._ex.resp_set = {}
        return found

    def set_header(self, name: str, value: Any) -> None:
        self._changes()[header_key(name)] = header_line(name, value)

    def set_headers(self, headers: dict[str, Any]) -> None:
        """`set_header` for each of `headers` (rate-limiting-advanced sets five on every
        request: one call, the keys from the cache without a call each)."""
        changes = self._ex.resp_set
        if changes is None:
            changes = self._ex.resp_set = {}
        keys = _HEADER_KEYS
        for name, value in headers.items():
            key = keys.get(name)
            if key is None:
                key = header_key(name)
            changes[key] = header_bytes(f"{name}: {value}\r\n")  # header_line, inlined

    def add_header(self, name: str, value: Any) -> None:
        changes = self._changes()
        key = header_key(name)
        changes[key] = changes.get(key, b"") + header_line(name, value)

    def clear_header(self, name: str) -> None:
        self._changes()[header_key(name)] = b""

    def exit(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        raise PluginExit(status, body, headers)

    def error(self, status: int, message: str | None = None,
              headers: dict[str, str] | None = None) -> None:
        raise PluginExit(status, None, headers, message)


class _Client:
    __slots__ = ("_ex",)

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
    """`kong.ctx`: `shared` by every plugin of the request, `plugin` for this plugin only
    (the same table in every phase); each made when first used."""

    __slots__ = ("_ex", "_plugin")

    def __init__(self, ex: Exchange, plugin: str) -> None:
        self._ex, self._plugin = ex, plugin

    @property
    def shared(self) -> dict[str, Any]:
        found = self._ex.shared
        if found is None:
            found = self._ex.shared = {}
        return found

    @shared.setter
    def shared(self, value: dict[str, Any]) -> None:
        self._ex.shared = value

    @property
    def plugin(self) -> dict[str, Any]:
        tables = self._ex.plugin_ctx
        if tables is None:
            tables = self._ex.plugin_ctx = {}
        found = tables.get(self._plugin)
        if found is None:
            found = tables[self._plugin] = {}
        return found

    @plugin.setter
    def plugin(self, value: dict[str, Any]) -> None:
        if self._ex.plugin_ctx is None:
            self._ex.plugin_ctx = {}
        self._ex.plugin_ctx[self._plugin] = value


class _Log:
    __slots__ = ("_log",)

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


_LOGS: dict[str, _Log] = {}  # by plugin name: getLogger takes a lock, so once per process


def _log_for(plugin: str) -> _Log:
    found = _LOGS.get(plugin)
    if found is None:
        found = _LOGS[plugin] = _Log(plugin)
    return found


class _Parts:
    """The PDK's parts that are the same for every plugin of a request, made on first use."""

    __slots__ = ("client", "request", "response", "service")

    def __init__(self, ex: Exchange) -> None:
        self.request = _Request(ex)
        self.response = _Response(ex)
        self.service = _Service(ex)
        self.client = _Client(ex)


def _parts(ex: Exchange) -> _Parts:
    found = ex.pdk_parts
    if found is None:
        found = ex.pdk_parts = _Parts(ex)
    return found


class Kong:
    """The `kong` object handed to one plugin for one phase of one request (`kong_for`; a
    WebSocket connection keeps one per plugin for its frame handlers, dp/proxy/upgrade.py).

    It is made for every plugin in every phase, so making it is three slot stores: its parts
    are made when a handler first uses one, once per request (`kong.ctx`, which names the
    plugin, once per `kong`). What lives across phases lives in the `Exchange`
    (`kong.ctx.plugin` is the same table in each). `kong.exchange` is that `Exchange`:
    bundled plugins that run on every request read and set it directly where the PDK's parts
    would cost a call and an object each."""

    __slots__ = ("_ctx", "_plugin", "exchange")
    http = http_client  # the same pooled client for every plugin

    exchange: Exchange
    _plugin: str
    _ctx: _Ctx | None

    @property
    def request(self) -> _Request:
        return _parts(self.exchange).request

    @property
    def response(self) -> _Response:
        return _parts(self.exchange).response

    @property
    def service(self) -> _Service:
        return _parts(self.exchange).service

    @property
    def client(self) -> _Client:
        return _parts(self.exchange).client

    @property
    def ctx(self) -> _Ctx:
        found = self._ctx
        if found is None:
            found = self._ctx = _Ctx(self.exchange, self._plugin)
        return found

    @property
    def log(self) -> _Log:
        return _log_for(self._plugin)

    @property
    def websocket(self) -> Any:
        """`kong.websocket` (dp/ws/pdk.py) on a WebSocket connection, else None."""
        return self.exchange.websocket


def kong_for(ex: Exchange, plugin: str) -> Kong:
    """`plugin`'s `kong` on the request of `ex`. (A function rather than `__init__`: on
    Python 3.11, calling a class whose `__init__` is Python code costs about twice what
    calling one without does, and this runs for every plugin in every phase.)"""
    kong = Kong()
    kong.exchange, kong._plugin, kong._ctx = ex, plugin, None
    return kong
