"""The `lambda` handler: the hook's Lua functions, run in the sandbox worker process.

The worker (`cp.hooks.lua_sandbox`) is started on first use and reused; a chain that overruns
the wall-clock limit gets the worker killed (and a new one next time), and a worker that dies
(memory limit, interpreter panic) is reported as that chain's failure. Errors are logged the way
Kong logs them (the Lua message, e.g. `[string "return function ..."]:3: Event hook on consumer
Lois Lane`) and are not retried: the same code would fail the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from typing import Any

from cp.hooks.outcome import Outcome, failed

log = logging.getLogger("tidegate.hooks")
MAX_LINE = 1 << 20


class LuaWorker:
    """One sandbox process, used by one chain at a time."""

    def __init__(self, timeout: float = 2.0, memory_mb: int = 64) -> None:
        self.timeout, self.memory_mb = timeout, memory_mb
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def _process(self) -> asyncio.subprocess.Process:
        if self._proc is None or self._proc.returncode is not None:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cp.hooks.lua_sandbox", str(self.memory_mb),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL, limit=MAX_LINE)
        return self._proc

    async def run(self, functions: list[str], data: dict[str, Any], event: str,
                  source: str) -> dict[str, Any]:
        """{ok, error, output} for one chain; never raises for anything the Lua code does."""
        request = json.dumps({"functions": functions, "data": data, "event": event,
                              "source": source}).encode() + b"\n"
        async with self._lock:
            proc = await self._process()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(request)
                await proc.stdin.drain()
                async with asyncio.timeout(self.timeout):
                    line = await proc.stdout.readline()
            except TimeoutError:
                await self._kill()
                return {"ok": False, "output": [],
                        "error": f"lambda killed after {self.timeout:g} s (wall-clock limit)"}
            except (OSError, ValueError) as exc:
                await self._kill()
                return {"ok": False, "output": [], "error": f"lambda worker failed: {exc}"}
            if not line:
                code = await proc.wait()
                return {"ok": False, "output": [],
                        "error": f"lambda worker died (exit status {code}): memory or "
                                 "interpreter limit"}
            return json.loads(line)

    async def _kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()
        self._proc = None

    async def close(self) -> None:
        await self._kill()


async def run(hook: dict[str, Any], payload: dict[str, Any], worker: LuaWorker) -> Outcome:
    functions = list((hook.get("config") or {}).get("functions") or [])
    answer = await worker.run(functions, payload, str(payload.get("event") or ""),
                              str(payload.get("source") or ""))
    fields = {"hook_id": hook.get("id"), "handler": "lambda",
              "source": payload.get("source"), "event": payload.get("event")}
    for line in answer.get("output") or []:
        log.info("lambda output: %s", line, extra={"fields": {**fields, "output": line}})
    if answer.get("ok"):
        return Outcome(ok=True, status=200, body="\n".join(answer.get("output") or []))
    error = str(answer.get("error"))
    log.error("%s", error, extra={"fields": {**fields, "error": error}})
    return failed(error)
