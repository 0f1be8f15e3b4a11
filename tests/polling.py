"""Waiting in tests: poll for the condition a user would observe, with a deadline — never a
fixed sleep as synchronisation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(check: Callable[[], Awaitable[Any] | Any], timeout: float = 10,
                     what: str = "condition") -> Any:
    """Poll `check` (sync or async, without blocking the loop) until it returns something
    truthy; fail after `timeout` seconds, showing the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
