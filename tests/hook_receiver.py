"""A real HTTP receiver for event-hook tests: records every request, answers as scripted.

It runs its own event loop in a thread, so both async tests and tests that block (waiting on
real processes) can use it. `script(...)` queues answers for the next requests (then 200);
`hold()` keeps requests waiting until `release()`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._answers: deque[tuple[int, dict[str, str]]] = deque()
        self._lock = threading.Lock()
        self._held = threading.Event()
        self._held.set()
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        while not self._held.is_set():
            await asyncio.sleep(0.01)
        with self._lock:
            self.requests.append(Received(request.method, request.path_qs,
                                          {k.lower(): v for k, v in request.headers.items()},
                                          body))
            status, headers = self._answers.popleft() if self._answers else (200, {})
        return web.Response(status=status, headers=headers, text="ok")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def script(self, *answers: int | tuple[int, dict[str, str]]) -> None:
        with self._lock:
            for a in answers:
                self._answers.append(a if isinstance(a, tuple) else (a, {}))

    def hold(self) -> None:
        self._held.clear()

    def release(self) -> None:
        self._held.set()

    def got(self, match: Callable[[Received], bool] = lambda r: True) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if match(r)]

    def events(self) -> list[Received]:
        """Requests that are not pings."""
        return self.got(lambda r: not _is_ping(r))

    def pings(self) -> list[Received]:
        return self.got(_is_ping)

    def close(self) -> None:
        self._held.set()
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _is_ping(r: Received) -> bool:
    try:
        return r.json().get("event") == "ping"
    except ValueError:
        return False
