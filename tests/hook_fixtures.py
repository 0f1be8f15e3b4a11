"""Fixtures for event-hook tests: a recording receiver, and an Admin API with a running engine.

Import them into a test module with `from tests.hook_fixtures import hooked, receiver`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientSession, web

from cp.admin.app import create_app
from cp.admin.event_hooks import HOOKS
from cp.hooks.config import HooksConfig
from cp.hooks.engine import HookEngine
from cp.store import Store
from tests.hook_receiver import Receiver
from tests.polling import eventually

FAST = HooksConfig(retry_base=0.05, poll=0.2, timeout=2.0, lambda_timeout=1.0, workers=2)


@dataclass
class Hooked:
    admin: ClientSession
    engine: HookEngine
    store: Store

    async def post(self, path: str, body: dict | None = None, **kw) -> tuple[int, dict]:
        r = await self.admin.post(path, json=body, **kw)
        return r.status, await r.json()

    async def get(self, path: str) -> tuple[int, dict]:
        r = await self.admin.get(path)
        return r.status, await r.json()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


async def start_admin(store: Store, engine: HookEngine) -> tuple[web.AppRunner, str]:
    app = create_app(store)
    app[HOOKS].attach(engine.config, engine.ctx)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def running_engine(store: Store, dsn: str, *, down: bool = False,
                         **config: Any) -> AsyncIterator[Hooked]:
    """A real Admin API and a hook engine running with FAST changed by `config`; with `down`
    the engine is not started (the CP's engine is down until the test starts it)."""
    engine = HookEngine(dsn, dataclasses.replace(FAST, **config))
    if not down:
        await engine.start()
    runner, url = await start_admin(store, engine)
    try:
        async with ClientSession(base_url=url) as session:
            yield Hooked(session, engine, store)
    finally:
        await runner.cleanup()
        await engine.stop()


@pytest.fixture
async def hooked(store: Store, dsn: str) -> AsyncIterator[Hooked]:
    """A real Admin API and a running hook engine on a fresh database."""
    async with running_engine(store, dsn) as h:
        yield h


async def webhook(hooked: Hooked, receiver: Receiver, **extra: Any) -> dict:
    """A webhook hook on consumer changes to `receiver`, once its creation ping arrived."""
    status, hook = await hooked.post("/event-hooks", {
        "source": "crud", "event": "consumers", "handler": "webhook",
        "config": {"url": receiver.url}, **extra})
    assert status == 201, hook
    await eventually(receiver.pings, what="ping")
    return hook
