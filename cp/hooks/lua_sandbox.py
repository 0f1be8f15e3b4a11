"""The lambda worker process: runs users' Lua chains in a fresh allow-listed environment.

Run as `python -m cp.hooks.lua_sandbox MEMORY_MB`; reads one JSON request per line on stdin and
answers one JSON line on stdout. Defences, innermost first:

- user code is loaded as text only (`load(code, name, "t", env)`; bytecode is refused) into a new
  table holding only pure functions: no os, io, package/require, load/loadstring/dofile, debug,
  getmetatable/setmetatable, rawget/rawset, collectgarbage, coroutine, and no `string.dump` even
  through the shared string metatable (it is removed from the runtime's own `string` table);
- a fresh LuaJIT runtime per request (nothing survives between lambdas), created without Python
  builtins or eval, with data passed as Lua tables, never as Python objects;
- the Lua allocator is capped (`max_memory`) and the process itself has an address-space limit;
- the parent kills this process on a wall-clock deadline (a Lua pattern running in C cannot be
  interrupted from inside), and restarts it for the next lambda.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any

RUNNER = r"""
string.dump = nil
return function(functions, data, event, source, pid)
  local out = {}
  local function print_(...)
    local parts = {}
    for i = 1, select('#', ...) do parts[#parts + 1] = tostring((select(i, ...))) end
    if #out < 100 then out[#out + 1] = table.concat(parts, "\t") end
  end
  local function copy(t) local c = {} for k, v in pairs(t) do c[k] = v end return c end
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    pcall = pcall, select = select, tonumber = tonumber, tostring = tostring, type = type,
    unpack = unpack, xpcall = xpcall, print = print_,
    string = copy(string), table = copy(table), math = copy(math),
  }
  env._G = env
  for i, code in ipairs(functions) do
    if string.byte(code, 1) == 27 then
      return false, "lambda #" .. i .. ": binary chunks are not allowed", out
    end
    local chunk, err = load(code, code, "t", env)
    if not chunk then return false, err, out end
    local ok, fn = pcall(chunk)
    if not ok then return false, tostring(fn), out end
    if type(fn) ~= "function" then
      return false, "lambda #" .. i .. " must return a function", out
    end
    local ran, failure = pcall(fn, data, event, source, pid)
    if not ran then return false, tostring(failure), out end
  end
  return true, nil, out
end
"""


def _limit_address_space(memory_mb: int) -> None:
    """Cap the process's address space above what it uses now (the interpreter, lupa)."""
    with open("/proc/self/status") as status:
        vm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    limit = vm_kb * 1024 + memory_mb * 4 * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_chain(lupa: Any, request: dict[str, Any], memory_mb: int) -> dict[str, Any]:
    """One chain in a fresh runtime: {ok, error, output}."""
    lua = lupa.LuaRuntime(register_eval=False, register_builtins=False,
                          unpack_returned_tuples=True, max_memory=memory_mb * 1024 * 1024)
    try:
        runner = lua.execute(RUNNER)
        functions = lua.table_from([str(f) for f in request.get("functions") or []])
        data = lua.table_from(request.get("data") or {}, recursive=True)
        ok, error, out = runner(functions, data, str(request.get("event") or ""),
                                str(request.get("source") or ""), os.getpid())
        output = [str(v) for v in out.values()] if out is not None else []
        return {"ok": bool(ok), "error": None if ok else str(error), "output": output}
    except lupa.LuaMemoryError:
        return {"ok": False, "error": "lambda ran out of memory", "output": []}
    except (lupa.LuaError, MemoryError, RecursionError) as exc:
        return {"ok": False, "error": f"lambda failed: {exc}", "output": []}


def main() -> None:
    memory_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    import lupa.luajit21 as lupa  # before the limit: the import maps the library

    _limit_address_space(memory_mb)
    for line in sys.stdin:
        try:
            request = json.loads(line)
            answer = run_chain(lupa, request, memory_mb)
        except (ValueError, TypeError) as exc:
            answer = {"ok": False, "error": f"bad request: {exc}", "output": []}
        except MemoryError:
            answer = {"ok": False, "error": "lambda ran out of memory", "output": []}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
