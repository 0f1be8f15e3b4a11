"""The lambda sandbox: escape attempts are contained and reported, and the CP keeps serving."""

from __future__ import annotations

import logging

import pytest

from cp.hooks.handlers.lambda_ import LuaWorker
from tests.polling import eventually as until

pytest_plugins = ["tests.hook_fixtures"]  # hooked, receiver


def fn(body: str) -> str:
    return f"return function (data, event, source, pid) {body} end"


ESCAPES = {
    "os.execute": fn('os.execute("touch /tmp/pwned")'),
    "io.open": fn('io.open("/etc/passwd"):read("*a")'),
    "require": fn('require("os")'),
    "load": fn('load("return 1")'),
    "loadstring": fn('loadstring("return 1")'),
    "dofile": fn('dofile("/etc/passwd")'),
    "debug": fn("debug.getregistry()"),
    "getmetatable trick": fn('getmetatable("").__index.dump(print)'),
    "string.dump via metatable": fn('local d = ("").dump error(tostring(d(print)))'),
    "string.dump": fn("string.dump(print)"),
    "setmetatable": fn("setmetatable({}, {})"),
    "collectgarbage": fn('collectgarbage("count")'),
    "rawset": fn("rawset(_G, 'x', 1)"),
    "python": fn("python.eval('1')"),
    "package": fn("package.loadlib('x', 'y')"),
    "bytecode chunk": "\x1bLJ\x02\x00",
}


@pytest.fixture
async def worker():
    w = LuaWorker(timeout=1.0, memory_mb=32)
    yield w
    await w.close()


async def test_escape_attempts_fail(worker):
    for name, code in ESCAPES.items():
        answer = await worker.run([code], {"entity": {}}, "consumers", "crud")
        assert answer["ok"] is False, name
        assert answer["error"], name


async def test_seed_body_and_chain_stops_at_first_error(worker):
    seed = ('return function (data, event, source, pid)\n  local user = data.entity.username\n'
            '  error("Event hook on consumer " .. user .. "")\nend\n')
    answer = await worker.run([seed], {"entity": {"username": "Lois Lane"}}, "consumers",
                              "crud")
    assert answer["error"] == ('[string "return function (data, event, source, pid)..."]:3: '
                               "Event hook on consumer Lois Lane")
    chain = [fn('print("one", event, source, type(pid))'), fn('error("two")'),
             fn('print("three")')]
    answer = await worker.run(chain, {}, "consumers", "crud")
    assert answer["output"] == ["one\tconsumers\tcrud\tnumber"]
    assert answer["error"].endswith("two")
    answer = await worker.run([fn('print(#data.list, data.list[2], string.upper("ok"))')],
                              {"list": [1, 2, 3]}, "e", "s")
    assert answer == {"ok": True, "error": None, "output": ["3\t2\tOK"]}


async def test_infinite_loops_and_memory_bombs_are_contained(worker):
    answer = await worker.run([fn("while true do end")], {}, "e", "s")
    assert answer["ok"] is False and "wall-clock" in answer["error"]
    answer = await worker.run([fn('local s = ("x"):rep(2^30)')], {}, "e", "s")
    assert answer["ok"] is False and "memory" in answer["error"]
    answer = await worker.run([fn("local t = {} for i = 1, 1e9 do t[i] = {i} end")], {},
                              "e", "s")
    assert answer["ok"] is False and "memory" in answer["error"]
    answer = await worker.run([fn('string.find(("a"):rep(5000), ("a*"):rep(300) .. "b")')],
                              {}, "e", "s")
    assert answer["ok"] is False
    answer = await worker.run([fn('print("still alive")')], {}, "e", "s")
    assert answer == {"ok": True, "error": None, "output": ["still alive"]}


async def test_runaway_lambda_hook_is_logged_and_the_cp_keeps_serving(hooked, caplog):
    caplog.set_level(logging.INFO, logger="tidegate.hooks")
    status, hook = await hooked.post("/event-hooks", {
        "source": "crud", "event": "consumers", "handler": "lambda",
        "config": {"functions": [fn("while true do end"), fn('print("never")')]}})
    assert status == 201
    await hooked.post("/consumers", {"username": "spinner"})
    status, _ = await hooked.get("/status")
    assert status == 200

    def logged():
        return [r for r in caplog.records if r.levelno == logging.ERROR
                and r.name == "tidegate.hooks" and "wall-clock" in r.getMessage()]

    await until(logged, what="timeout logged")
    status, body = await hooked.post(f"/event-hooks/{hook['id']}/test", {"entity": {}})
    assert status == 200 and "wall-clock" in body["result"]["body"]
    status, _ = await hooked.post("/consumers", {"username": "after"})
    assert status == 201
