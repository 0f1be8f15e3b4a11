"""Outbound HTTP for webhooks: timeouts, TLS verification per hook, no redirects, and optional
allow/deny lists for destination hosts and networks.

Names are checked before the request and addresses after resolution (a resolver wrapper drops
refused addresses), so a name that resolves to a denied network is refused too.
"""

from __future__ import annotations

import email.utils
import ipaddress
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from cp.hooks.outcome import Outcome, failed

MAX_BODY = 64 * 1024
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class DestinationDenied(OSError):
    """A destination the allow/deny lists refuse: a permanent failure, never retried."""


class Destinations:
    """`allow`/`deny`: comma-separated host names (`*.example.com` for subdomains) and CIDRs."""

    def __init__(self, allow: str = "", deny: str = "") -> None:
        self.allow_hosts, self.allow_nets = self._parse(allow)
        self.deny_hosts, self.deny_nets = self._parse(deny)
        self.open = not (self.allow_hosts or self.allow_nets)

    @staticmethod
    def _parse(spec: str) -> tuple[list[str], list[Network]]:
        hosts, nets = [], []
        for item in (i.strip().lower() for i in spec.split(",")):
            if not item:
                continue
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.append(item)
        return hosts, nets

    @staticmethod
    def _host_in(host: str, patterns: list[str]) -> bool:
        return any(host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in patterns)

    def host_error(self, host: str) -> str | None:
        host = host.lower().strip("[]")
        if self._host_in(host, self.deny_hosts):
            return f"destination host '{host}' is denied"
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if self.open or self._host_in(host, self.allow_hosts) or self.allow_nets:
                return None  # addresses are checked once resolved
            return f"destination host '{host}' is not allowed"
        return None if self.ip_allowed(host) else f"destination address {host} is not allowed"

    def ip_allowed(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
        if any(addr in n for n in self.deny_nets):
            return False
        return self.open or bool(self.allow_hosts) or any(addr in n for n in self.allow_nets)


class GuardedResolver(AbstractResolver):
    """Resolves names, keeping only the addresses the lists allow."""

    def __init__(self, destinations: Destinations) -> None:
        self.destinations = destinations
        self.inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        kept = [r for r in found if self.destinations.ip_allowed(r["host"])]
        if not kept:
            raise DestinationDenied(f"every address of '{host}' is denied")
        return kept

    async def close(self) -> None:
        await self.inner.close()


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    if value.strip().isdecimal():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Outbound:
    """One client session per engine; keep-alive connections to receivers are reused."""

    def __init__(self, allow: str = "", deny: str = "") -> None:
        self.destinations = Destinations(allow, deny)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.destinations),
                                             limit=256)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        return self._session

    async def send(self, method: str, url: str, headers: Any, body: bytes | None, *,
                   ssl_verify: bool, timeout: float) -> Outcome:
        host = urlsplit(url).hostname or ""
        denied = self.destinations.host_error(host)
        if denied:
            return failed(denied)
        started = time.perf_counter()
        try:
            async with self._client().request(
                method, url, headers=headers, data=body, ssl=bool(ssl_verify),
                allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                raw = await resp.content.read(MAX_BODY)
                outcome = _from_response(resp, raw)
        except TimeoutError:
            outcome = failed(f"timed out after {timeout:g} s", retry=True)
        except aiohttp.ClientConnectorCertificateError as exc:  # ssl_verify: retried, the
            outcome = failed(_certificate_error(exc), retry=True)  # receiver may fix it
        except aiohttp.ClientConnectorError as exc:
            denied_here = isinstance(exc.os_error, DestinationDenied)
            outcome = failed(f"connect error: {exc.os_error or exc}", retry=not denied_here)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            outcome = failed(f"{type(exc).__name__}: {exc}", retry=True)
        outcome.latency_ms = (time.perf_counter() - started) * 1000
        return outcome

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _certificate_error(exc: aiohttp.ClientConnectorCertificateError) -> str:
    """`TLS certificate verify failed for host:port: <the reason>` (e.g. self-signed
    certificate, hostname mismatch)."""
    cause = exc.certificate_error
    reason = getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or cause
    return f"TLS certificate verify failed for {exc.host}:{exc.port}: {reason}"


def _from_response(resp: aiohttp.ClientResponse, raw: bytes) -> Outcome:
    status = resp.status
    outcome = Outcome(ok=200 <= status < 300, status=status, headers=dict(resp.headers),
                      body=raw.decode("utf-8", "replace"))
    if not outcome.ok:
        outcome.error = f"receiver answered {status}"
        outcome.gone = status == 410
        outcome.retry = status != 410
        outcome.retry_after = retry_after(resp.headers.get("Retry-After"))
    return outcome


