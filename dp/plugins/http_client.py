"""The async HTTP client plugins use to call external services: one pooled aiohttp session per
process (keep-alive connections reused across requests), a timeout on every call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

_session: aiohttp.ClientSession | None = None


@dataclass(frozen=True)
class HTTPResult:
    status: int
    headers: dict[str, str]
    body: bytes


def session() -> aiohttp.ClientSession:
    global _session
    if _session is None or _session.closed:
        connector = aiohttp.TCPConnector(limit=256, limit_per_host=64, keepalive_timeout=30)
        _session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
    return _session


async def request(method: str, url: str, *, timeout: float = 5.0, headers: dict[str, str]
                  | None = None, body: bytes | None = None, **kwargs: Any) -> HTTPResult:
    """One HTTP call. Raises OSError/aiohttp.ClientError on transport failure, TimeoutError on
    timeout (the whole call, connect to last byte, is bounded by `timeout` seconds)."""
    async with session().request(method, url, headers=headers, data=body,
                                 timeout=aiohttp.ClientTimeout(total=timeout), **kwargs) as resp:
        data = await resp.read()
        return HTTPResult(resp.status, dict(resp.headers), data)


async def close() -> None:
    global _session
    if _session is not None:
        await _session.close()
        _session = None
