"""rate-limiting-advanced: limit requests per identifier over one or more windows, as Kong does.

- `access` (HTTP) and `ws_handshake` (WebSocket upgrades, the same logic): count the request
  for its identifier on every window (dp/ratelimit/limiter.py); over a limit → `error_code`
  (429) with `{"message": error_message}`, the rate-limit headers and `Retry-After`; otherwise
  the headers go on the proxied response. `hide_client_headers` drops all of them.
- `ws_client_frame`, with `websocket.limit_messages`: each text or binary message the client
  starts counts against the message windows of the same identifier; over the limit the client
  gets `websocket.close_code` (1008) and the upstream 1001.
- Exceeding a limit puts a `rate-limit-exceeded` event on the data plane's event queue (given
  by the proxy through `bind_events`), once per (consumer, ip, service) and window.

The identifier falls back to the client IP when it has no value (no consumer yet, header
absent, other path), as in Kong. Counters outlive this object (dp/ratelimit/registry.py):
the runtime builds a new plugin instance per config snapshot. They are per process: with
`--workers N` the `local` strategy limits each worker on its own (Kong's workers share a shared
dict); `redis` gives one limit across workers and data planes.

Every request of a limited route runs `access`, so what a config implies (its `Policy`, the
identifier, the error answer) is worked out once per config (`_Limits`), the headers' names
and limits once per window (dp/ratelimit/limiter.py); `access` is a coroutine only when it
waits for Redis (dp/plugins/base.py), and an allowed request of a one-window config makes no
Verdict and reads and sets the request's `kong.exchange` directly (no PDK part made for it).
"""

from __future__ import annotations

from typing import Any

from dp.events import EventQueue
from dp.plugins.base import Done, Plugin
from dp.plugins.pdk import take_header_lines
from dp.ratelimit import clock, exceeded
from dp.ratelimit.headers import OneWindowHeaders, client_headers, retry_after
from dp.ratelimit.limiter import Policy, Verdict, WindowState
from dp.ratelimit.registry import message_policy_for, policy_for

_ONCE = exceeded.OncePerWindow()
MESSAGE_TYPES = ("text", "binary")  # a message's first frame; continuations are the same one
PEER_GOING_AWAY = 1001
MAX_REASON = 123  # bytes of a close reason


def identify(kong: Any, conf: dict[str, Any]) -> str:
    """The counter key of this request: `<identifier>:<value>`, else `ip:<client ip>`."""
    return _identify(kong, conf.get("identifier") or "consumer", conf.get("header_name") or "",
                     conf.get("path"))


def _identify(kong: Any, kind: str, header_name: str, path: str | None) -> str:
    value: Any = None
    if kind == "consumer" or kind == "credential":
        consumer = kong.client.get_consumer() if kind == "consumer" else None
        credential = kong.client.get_credential()
        value = (consumer or {}).get("id") or (credential or {}).get("id")
    elif kind == "service":
        value = (kong.service.get() or {}).get("id")
    elif kind == "header":
        value = kong.request.get_header(header_name)
    elif kind == "path":
        value = path if kong.request.get_path() == path else None
    if not value:
        return "ip:" + kong.client.get_forwarded_ip()
    return f"{kind}:{value}"


class _Limits:
    """What one config means for each request, worked out once per config (configs, like
    this plugin instance, live for one snapshot) rather than looked up per request."""

    __slots__ = ("by_ip", "error_code", "error_message", "header_name", "hide", "jitter", "kind",
                 "lines", "namespace", "path", "policy", "window_type")

    def __init__(self, conf: dict[str, Any]) -> None:
        self.policy = policy_for(conf)
        self.kind: str = conf.get("identifier") or "consumer"
        self.by_ip = self.kind == "ip"
        self.header_name: str = conf.get("header_name") or ""
        self.path: str | None = conf.get("path")
        self.hide = bool(conf.get("hide_client_headers"))
        self.window_type: str = conf["window_type"]
        self.error_code: int = conf["error_code"]
        self.error_message: str = conf["error_message"]
        self.namespace: str = conf["namespace"]
        self.jitter: float = conf.get("retry_after_jitter_max") or 0
        # An allowed request's headers, mostly rendered ahead (one window, not hidden).
        self.lines = OneWindowHeaders(self.policy.windows[0], self.window_type) \
            if len(self.policy.windows) == 1 and not self.hide else None


class RateLimitingAdvanced(Plugin):
    name = "rate-limiting-advanced"
    priority = 910
    version = "0.1.0"

    def __init__(self) -> None:
        self.events: EventQueue | None = None
        self._limits: dict[int, _Limits] = {}  # by id(conf): configs live with this instance
        self._message_policies: dict[int, Policy] = {}

    def bind_events(self, queue: EventQueue) -> None:
        """Where rate-limit-exceeded events go (the proxy's event queue)."""
        self.events = queue

    def access(self, kong: Any, conf: dict[str, Any]) -> Done:
        """Done here, without a coroutine (dp/plugins/base.py), unless Redis has to answer
        first (`sync_rate` 0, or a key's first hit in a window): then the coroutine that
        waits for it."""
        limits = self._limits.get(id(conf))
        if limits is None:
            limits = self._limits[id(conf)] = _Limits(conf)
        now = clock.now()
        ex = kong.exchange
        if limits.by_ip:  # kong.client.get_forwarded_ip(), without the PDK's objects
            key = "ip:" + ex.client_ip
        else:
            key = _identify(kong, limits.kind, limits.header_name, limits.path)
        policy = limits.policy
        lines = limits.lines
        if lines is not None:  # one window, headers shown: the usual config
            value = policy.hit_one(key, now) if policy.local else policy.hit_one_ready(key, now)
            if value is None:  # Redis has to answer first
                return self._access_redis(kong, limits, key, now)
            if value <= lines.limit:
                take_header_lines(ex, lines.allowed(value, now))
                return None
            self._judged(kong, limits, policy.judge_one(key, value, now), now)
            return None
        if policy.local:
            self._judged(kong, limits, policy.hit_nowait(key, now), now)
            return None
        verdict = policy.hit_ready(key, now)
        if verdict is None:  # Redis has to answer first
            return self._access_redis(kong, limits, key, now)
        self._judged(kong, limits, verdict, now)
        return None

    async def _access_redis(self, kong: Any, limits: _Limits, key: str, now: float) -> None:
        self._judged(kong, limits, await limits.policy.hit(key, now), now)

    def _judged(self, kong: Any, limits: _Limits, verdict: Verdict, now: float) -> None:
        """Act on a verdict: the headers of an allowed request, or the refusal."""
        if verdict.exceeded is None:
            if limits.lines is not None:
                take_header_lines(kong.exchange, limits.lines.allowed(verdict.states[0].value,
                                                                      now))
            elif not limits.hide:
                kong.response.set_headers(client_headers(verdict, now, limits.window_type))
            return
        headers = {} if limits.hide else client_headers(verdict, now, limits.window_type)
        self._emit(kong, verdict.exceeded, now, limits.namespace)
        if headers:
            headers["Retry-After"] = str(retry_after(int(headers["RateLimit-Reset"]),
                                                     limits.jitter))
        kong.response.exit(limits.error_code, {"message": limits.error_message}, headers)

    def ws_handshake(self, kong: Any, conf: dict[str, Any]) -> Done:
        kong.ctx.plugin["key"] = identify(kong, conf)  # the connection's identity, for frames
        return self.access(kong, conf)

    def ws_client_frame(self, kong: Any, conf: dict[str, Any]) -> None:
        ws = conf.get("websocket") or {}
        if not ws.get("limit_messages"):
            return
        client = kong.websocket.client
        if client.get_frame()[1] not in MESSAGE_TYPES:
            return
        now = clock.now()
        verdict = self._message_policy(conf).hit_nowait(
            kong.ctx.plugin.get("key") or identify(kong, conf), now)
        if verdict.exceeded is None:
            return
        self._emit(kong, verdict.exceeded, now, f"{conf['namespace']}:messages")
        reason = (ws.get("close_message") or conf["error_message"]).encode()[:MAX_REASON]
        client.close(ws.get("close_code") or 1008, reason.decode(errors="ignore"),
                     upstream_status=PEER_GOING_AWAY)

    def _message_policy(self, conf: dict[str, Any]) -> Policy:
        policy = self._message_policies.get(id(conf))
        if policy is None:
            policy = self._message_policies[id(conf)] = message_policy_for(conf)
        return policy

    def _emit(self, kong: Any, state: WindowState, now: float, namespace: str) -> None:
        """The rate-limit-exceeded event, unless this key already had one in this window."""
        if self.events is None:
            return
        consumer = kong.client.get_consumer()
        service = kong.service.get()
        ip = kong.client.get_forwarded_ip()
        key = (namespace, (consumer or {}).get("id"), ip, (service or {}).get("id"))
        if not _ONCE.first(key, state.window.size, now):
            return
        self.events.put(exceeded.SOURCE, exceeded.EVENT, exceeded.payload(
            consumer, ip, service, state.value, state.window.limit, state.window.name))


__all__ = ["RateLimitingAdvanced", "identify"]
