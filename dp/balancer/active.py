"""Active health checks: probe each target on a timer, as the upstream's `healthchecks.active`
says. A probe is a plain HTTP(S) `GET http_path` (or, for type tcp, a bare connect) — nothing
protocol-specific, so a WebSocket backend answers it on its health path like any web server.

Healthy targets are probed every `healthy.interval` seconds, unhealthy ones every
`unhealthy.interval`; an interval of 0 stops probing targets in that state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any

from dp.balancer.targets import HTTP_FAILURE, SUCCESS, TCP_FAILURE, TIMEOUT, Target

log = logging.getLogger("tidegate.dp.health")


async def probe(target: Target, conf: dict[str, Any]) -> str:
    """One probe of one target: SUCCESS, HTTP_FAILURE, TCP_FAILURE or TIMEOUT (or "neutral"
    for an HTTP status in neither list)."""
    kind = conf.get("type") or "http"
    timeout = float(conf.get("timeout") or 1)
    tls: ssl.SSLContext | None = None
    if kind == "https":
        tls = ssl.create_default_context()
        if not conf.get("https_verify_certificate", True):
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                target.address, target.port, ssl=tls,
                server_hostname=(conf.get("https_sni") or target.host) if tls else None)
            if kind == "tcp":
                return SUCCESS
            writer.write(_probe_request(target, conf))
            status_line = await reader.readline()
    except TimeoutError:
        return TIMEOUT
    except (OSError, ssl.SSLError):
        return TCP_FAILURE
    finally:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return TCP_FAILURE
    status = int(parts[1])
    if status in (conf.get("healthy") or {}).get("http_statuses", (200, 302)):
        return SUCCESS
    if status in (conf.get("unhealthy") or {}).get("http_statuses", ()):
        return HTTP_FAILURE
    return "neutral"


def _probe_request(target: Target, conf: dict[str, Any]) -> bytes:
    host = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
    lines = [f"GET {conf.get('http_path') or '/'} HTTP/1.1", f"Host: {host}",
             "Connection: close", "User-Agent: tidegate-health-check"]
    for name, values in (conf.get("headers") or {}).items():
        lines.extend(f"{name}: {v}" for v in values)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def active_enabled(conf: dict[str, Any]) -> bool:
    return bool((conf.get("healthy") or {}).get("interval") or
                (conf.get("unhealthy") or {}).get("interval"))


class ActiveChecker:
    """The probing loop of one upstream; `report(target, outcome)` applies each result."""

    def __init__(self, targets: list[Target], conf: dict[str, Any],
                 report: Callable[[Target, str], None]) -> None:
        self.targets = targets
        self.conf = conf
        self.report = report
        self.task: asyncio.Task[None] | None = None
        self.due: dict[int, float] = {}

    def start(self) -> None:
        if self.task is None and active_enabled(self.conf):
            self.task = asyncio.get_running_loop().create_task(self._run(), name="healthcheck")

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

    def _interval(self, target: Target) -> float:
        state = "healthy" if target.healthy else "unhealthy"
        return float((self.conf.get(state) or {}).get("interval") or 0)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        limit = asyncio.Semaphore(int(self.conf.get("concurrency") or 10))

        async def one(target: Target) -> None:
            async with limit:
                outcome = await probe(target, self.conf)
            if outcome != "neutral":
                self.report(target, outcome)

        while True:
            now = loop.time()
            batch = []
            for t in self.targets:
                interval = self._interval(t)
                if interval and self.due.get(id(t), 0) <= now:
                    self.due[id(t)] = now + interval
                    batch.append(one(t))
            if batch:
                try:
                    await asyncio.gather(*batch)
                except Exception:  # a probe bug must not stop the checks
                    log.exception("health check failed")
            upcoming = [self.due.get(id(t), now) for t in self.targets if self._interval(t)]
            wait = max(0.01, min(upcoming) - loop.time()) if upcoming else 0.5
            await asyncio.sleep(wait)
