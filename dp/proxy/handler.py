"""What happens to one request: route it, run the access plugins, pick a target, forward it,
run the response plugins, stream the answer back, run the log plugins.

Errors are answered as Kong words them: no route 404, no healthy target 503, connect failure
502, timeout 504, a plugin that raised 500 ("An unexpected error occurred"). Connect failures
(and timeouts) are retried on the next target up to the service's `retries`; a reused
keep-alive connection that turns out closed is retried once on a fresh one. Nothing is logged
per request unless something fails.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable
from time import monotonic
from typing import TYPE_CHECKING, Any

from dp.balancer.hashing import hash_key
from dp.balancer.targets import TCP_FAILURE, TIMEOUT
from dp.metrics import count_request, observe_upstream
from dp.plugins.pdk import Exchange, PluginExit, kong_for
from dp.plugins.runtime import NONE, Step
from dp.proxy import heads, upgrade
from dp.proxy.http import (
    BAD_UPSTREAM,
    LAST_CHUNK,
    NO_PEER,
    NO_ROUTE,
    NO_SERVICE,
    TIMED_OUT,
    UNEXPECTED,
    USE_HTTPS,
    chunk,
)
from dp.proxy.upstream import UpstreamClosed, UpstreamConnection, UpstreamTimeout
from dp.router import Match

if TYPE_CHECKING:
    from dp.proxy.connection import ClientConnection
    from dp.proxy.request import Request

log = logging.getLogger("tidegate.dp.proxy")
_INSECURE = ssl.create_default_context()
_INSECURE.check_hostname = False
_INSECURE.verify_mode = ssl.CERT_NONE
_VERIFIED = ssl.create_default_context()


async def handle(conn: ClientConnection, req: Request) -> bool:
    """Answer one request; returns whether the client connection may be kept."""
    server = conn.server
    state = server.state
    server.requests += 1
    m = state.router.match(req.method, req.host, req.path, req.hmap, conn.sni, conn.scheme,
                           req.upgrade, req.query) if state is not None else None
    if m is None:
        count_request(None, None, 404)
        return conn.answer(req, 404, NO_ROUTE)
    if m.protocol_error is not None:
        count_request(m.route, m.service, m.protocol_error)
        return _protocol_error(conn, req, m.protocol_error)
    service = m.service
    if service is None:
        count_request(m.route, None, 503)
        return conn.answer(req, 503, NO_SERVICE)
    assert state is not None  # there was a match
    entries = state.plugins.for_route(m.route["id"], service["id"]) if state.plugins else NONE
    if req.upgrade:  # its own plugin phases (ws_handshake) and relay
        return await upgrade.handle_upgrade(conn, req, m, entries)
    ex = None
    if entries:
        ex = Exchange(req, conn.scheme, conn.client, conn.listen_port, m.route, service)
        try:
            waiting = run_phase(entries, "access", ex, conn.scheme)
            if waiting is not None:
                await waiting
        except PluginExit as stop:
            return await answer_exit(conn, req, m, entries, ex, stop)
        except Exception:
            return await answer_exit(conn, req, m, entries, ex, failed("access"))
    status, keep = await forward(conn, req, m, service, ex, entries)
    count_request(m.route, service, status)
    if ex is not None and "log" in entries.by_phase:
        await run_log(entries, ex, conn.scheme, status)
    return keep


async def answer_exit(conn: ClientConnection, req: Request, m: Match, entries: Any,
                      ex: Exchange, stop: PluginExit) -> bool:
    """A plugin ended the request (`kong.response.exit`): answer it, count it, run `log`."""
    count_request(m.route, m.service, stop.status)
    keep = conn.answer(req, stop.status, stop.message, body=stop.body, headers=stop.headers)
    await run_log(entries, ex, conn.scheme, stop.status)
    return keep


def failed(phase: str) -> PluginExit:
    """The answer to a plugin that raised in `phase` (call it in the `except` block: the
    traceback is logged): 500 with Kong's message, and the request goes no further."""
    log.exception("a plugin failed in the %s phase", phase)
    return PluginExit(500, message=UNEXPECTED)


def _protocol_error(conn: ClientConnection, req: Request, code: int) -> bool:
    if code == 426:
        return conn.answer(req, 426, USE_HTTPS,
                           headers={"Connection": "Upgrade", "Upgrade": "TLS/1.2, HTTP/1.1"})
    host = req.host.partition(":")[0]
    location = f"https://{host}{req.path}" + (f"?{req.query}" if req.query else "")
    return conn.answer(req, code, body="", headers={"Location": location})


def run_phase(entries: Any, phase: str, ex: Exchange, scheme: str) -> Awaitable[None] | None:
    """Run one phase's handlers by priority; each gets its config (looked up with the
    consumer identified so far when consumer-scoped ones exist, so they apply after key-auth
    ran) and its own `kong` (cheap: its parts are made on first use).

    Synchronous until a handler returns an awaitable (it has to wait): then what is left of
    the phase comes back as one awaitable for the caller to await, else None. A phase of
    handlers that do not wait (the usual access phase) costs no coroutine."""
    try:
        steps = entries.steps[scheme][phase]
    except KeyError:  # the first request of this phase and scheme on this route
        steps = entries.steps_for(phase, scheme)
    return _run_steps(steps, ex, scheme)


def _run_steps(steps: list[Step], ex: Exchange, scheme: str) -> Awaitable[None] | None:
    """Run `steps` until a handler returns an awaitable; then the rest, as an awaitable."""
    for step in steps:
        entry, handler, name, conf = step
        if conf is None:  # a consumer-scoped config may apply
            conf = _config(entry, ex, scheme)
            if conf is None:
                continue
        waiting = handler(kong_for(ex, name), conf)
        if waiting is not None:  # (the index only now: it is rarely needed)
            return _rest_of_phase(waiting, steps[steps.index(step) + 1:], ex, scheme)
    return None


async def _rest_of_phase(waiting: Awaitable[None], rest: list[Step], ex: Exchange,
                         scheme: str) -> None:
    await waiting
    more = _run_steps(rest, ex, scheme)
    if more is not None:
        await more


def _config(entry: Any, ex: Exchange, scheme: str) -> dict[str, Any] | None:
    """The config of an entry with consumer-scoped ones, for the consumer identified so far;
    None when none applies to this request."""
    conf = entry.config_for(ex.consumer["id"] if ex.consumer else None)
    if conf is None or scheme not in conf.protocols:
        return None
    return conf.config


async def run_log(entries: Any, ex: Exchange, scheme: str, status: int) -> None:
    ex.resp_status = ex.resp_status or status
    try:
        waiting = run_phase(entries, "log", ex, scheme)
        if waiting is not None:
            await waiting
    except Exception:  # a log handler never changes the outcome
        log.exception("log phase failed")


def _target_for(service: dict[str, Any], balancer: Any, req: Request, conn: ClientConnection,
                ex: Exchange | None, m: Match, avoid: tuple) -> Any:
    key = None
    if balancer.upstream.get("algorithm") == "consistent-hashing":
        consumer = ex.consumer["id"] if ex is not None and ex.consumer else None
        key, req.set_cookie = hash_key(balancer.upstream, req, conn.client[0], consumer,
                                       m.captures)
    return balancer.pick(key, avoid)


async def connect(conn: ClientConnection, req: Request, m: Match, service: dict[str, Any],
                  ex: Exchange | None, fresh: bool = False
                  ) -> tuple[UpstreamConnection | None, Any, Any, bool, int]:
    """A connection to a target, retrying connect failures on the next target.

    Returns (connection, balancer, target, reused, error status); the connection is None when
    every attempt failed (error status 502/503/504)."""
    server = conn.server
    balancer = server.balancers.get(service["host"])
    tls = service.get("protocol") in ("https", "wss")
    context = (_VERIFIED if service.get("tls_verify") else _INSECURE) if tls else None
    timeout = (service.get("connect_timeout") or 60000) / 1000
    tries = 0
    avoid: tuple = ()
    while True:
        target = None
        if balancer is not None:
            target = _target_for(service, balancer, req, conn, ex, m, avoid)
            if target is None:
                return None, balancer, None, False, 503
            host, port = target.address, target.port
        else:
            host, port = service["host"], service["port"]
        try:
            upc, reused = await server.pool.acquire(host, port, context, service["host"],
                                                    timeout, reuse=not fresh)
            return upc, balancer, target, reused, 0
        except TimeoutError:
            failure, status = TIMEOUT, 504
        except OSError:
            failure, status = TCP_FAILURE, 502
        if target is not None and balancer is not None:
            balancer.report_failure(target, failure)
            avoid = (*avoid, target)
        tries += 1
        if tries > int(service.get("retries", 5)):
            return None, balancer, target, False, status


async def forward(conn: ClientConnection, req: Request, m: Match, service: dict[str, Any],
                  ex: Exchange | None, entries: Any) -> tuple[int, bool]:
    """Send the request upstream and stream the answer back; (status, keep client)."""
    fresh = False
    while True:
        upc, balancer, target, reused, error = await connect(conn, req, m, service, ex, fresh)
        if upc is None:
            message = {502: BAD_UPSTREAM, 503: NO_PEER, 504: TIMED_OUT}[error]
            return error, conn.answer(req, error, message)
        if target is not None:
            target.active += 1
        try:
            outcome = await _exchange(conn, req, m, service, ex, entries, upc, balancer, target)
        finally:
            if target is not None:
                target.active -= 1
        if outcome is not None:
            return outcome
        if not reused:
            if target is not None:
                balancer.report_failure(target, TCP_FAILURE)
            return 502, conn.answer(req, 502, BAD_UPSTREAM)
        fresh = True  # a stale keep-alive connection: once more on a new one


async def _send_body(req: Request, upc: UpstreamConnection, chunked: bool,
                     write_timeout: float) -> None:
    body = req.body
    assert body is not None
    while data := await body.read():
        upc.write(chunk(data) if chunked else data)
        await upc.drain(write_timeout)
    if chunked:
        upc.write(LAST_CHUNK)


async def _exchange(conn: ClientConnection, req: Request, m: Match, service: dict[str, Any],
                    ex: Exchange | None, entries: Any, upc: UpstreamConnection,
                    balancer: Any, target: Any) -> tuple[int, bool] | None:
    """One request/response over `upc`. None means "the reused connection was dead before
    answering anything": the caller may retry."""
    server = conn.server
    if m.preserve_host and req.host:
        host = req.host
    else:
        host = heads.upstream_host(service, balancer.upstream if balancer else None)
    path = m.upstream_path
    overrides = None
    if ex is not None:
        overrides = ex.up_headers or None
        if ex.up_query is not None:
            path = path.partition("?")[0] + (f"?{ex.up_query}" if ex.up_query else "")
    chunked_body = req.body is not None and "content-length" not in req.hmap
    upc.begin((service.get("read_timeout") or 60000) / 1000, head_only=req.method == "HEAD")
    sent = monotonic()
    upc.write(heads.request_head(req, path, host, conn.client[0], conn.scheme,
                                 conn.listen_port, overrides, chunked_body))
    try:
        if req.body is not None:
            await _send_body(req, upc, chunked_body,
                             (service.get("write_timeout") or 60000) / 1000)
        await upc.head  # type: ignore[misc]
    except UpstreamTimeout:
        upc.close()
        if target is not None:
            balancer.report_failure(target, TIMEOUT)
        return 504, conn.answer(req, 504, TIMED_OUT)
    except UpstreamClosed:
        upc.close()
        if not upc.got_bytes and req.body is None:
            return None  # maybe a stale keep-alive connection; the caller decides
        if target is not None:
            balancer.report_failure(target, TCP_FAILURE)
        return 502, conn.answer(req, 502, BAD_UPSTREAM)
    status = upc.status
    observe_upstream(service, monotonic() - sent)
    if target is not None:
        balancer.report_status(target, status)
    changes = None
    if ex is not None:
        ex.resp_status, ex.resp_headers = status, upc.headers
        if "response" in entries.by_phase:
            try:
                waiting = run_phase(entries, "response", ex, conn.scheme)
                if waiting is not None:
                    await waiting
            except Exception as exc:  # nothing was sent yet: the client gets the plugin's answer
                stop = exc if isinstance(exc, PluginExit) else failed("response")
                upc.close()
                return stop.status, conn.answer(req, stop.status, stop.message,
                                                body=stop.body, headers=stop.headers)
        changes = ex.resp_set or None
    if req.set_cookie is not None:
        changes = _add_set_cookie(changes, upc.headers, req.set_cookie)
    return await _stream_back(conn, req, upc, status, changes, server)


def _add_set_cookie(changes: dict[bytes, bytes] | None,
                    upstream_headers: list[tuple[bytes, bytes]], cookie: str
                    ) -> dict[bytes, bytes]:
    """Add our Set-Cookie after the ones the upstream (or a plugin) already set."""
    out = dict(changes or {})
    lines = out.get(b"set-cookie")
    if lines is None:
        lines = b"".join(b"Set-Cookie: %b\r\n" % v for n, v in upstream_headers
                         if n.lower() == b"set-cookie")
    out[b"set-cookie"] = lines + f"Set-Cookie: {cookie}\r\n".encode("latin-1")
    return out


async def _stream_back(conn: ClientConnection, req: Request, upc: UpstreamConnection,
                       status: int, changes: Any, server: Any) -> tuple[int, bool]:
    http10 = req.version == "1.0"
    bodyless = req.method == "HEAD" or status in (204, 304)
    rechunk = not bodyless and (upc.chunked or not upc.framed) and not http10
    keep = req.keep_alive and not (http10 and not upc.framed and not bodyless)
    head = heads.response_head(status, upc.reason, upc.headers, changes, chunked=rechunk,
                               close=not keep)
    if bodyless:
        conn.write(head)
        server.pool.release(upc) if upc.complete else upc.close()
        return status, keep
    conn.upstream = upc
    conn.cork()  # the head and the body that came with it: one system call
    conn.write(head)
    if rechunk:
        write = conn.write
        upc.attach(lambda data: write(chunk(data)))
    else:
        upc.attach(conn.write)
    conn.uncork()
    try:
        await upc.done  # type: ignore[misc]
    except (UpstreamTimeout, UpstreamClosed):
        conn.upstream = None
        upc.close()
        return status, False  # the head is out: all we can do is cut the connection
    finally:
        conn.upstream = None
    if rechunk:
        conn.write(LAST_CHUNK)
    server.pool.release(upc)
    return status, keep

