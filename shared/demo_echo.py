"""The quickstart's demo upstream: an HTTP and WebSocket echo service with a health endpoint.

`GET /health` answers a plain `200 OK` (what probes expect, as the seed on WebSocket backends
describes); `/ws` echoes WebSocket messages; any other request is answered with a JSON echo of
what arrived (method, path, query, headers, body), so you can see what the gateway forwarded.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import WSMsgType, web


async def health(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def ws_echo(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(autoping=True)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({
        "method": request.method,
        "path": request.path,
        "query": request.query_string,
        "headers": dict(request.headers),
        "body": body.decode("utf-8", "replace"),
    })


def app() -> web.Application:
    application = web.Application()
    application.router.add_get("/health", health)
    application.router.add_get("/ws", ws_echo)
    application.router.add_route("*", "/{tail:.*}", echo)
    return application


async def serve(host: str, port: int) -> None:
    runner = web.AppRunner(app(), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:9000")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    asyncio.run(serve(host, int(port)))


if __name__ == "__main__":
    main()
