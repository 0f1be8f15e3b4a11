"""A proxy worker process: `python -m dp.worker --channel-fd FD --index I` (started by
dp/workers.py, never by hand).

It runs the proxy listeners (SO_REUSEPORT on the same ports as its siblings, so the kernel
spreads new connections) under uvloop, and nothing else: the main process keeps the cluster
link, the cache, the status listener and the running config. Over its channel the worker gets
each new config snapshot (and rebuilds its router, plugins and balancers from it), target health
decided by the main process, stats requests and the order to stop; it sends up the events its
balancers produce. When the channel closes (the main process died) the worker stops too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

from dp import ipc, metrics
from dp.events import EventQueue
from dp.health_sync import adopt
from dp.proxy.server import ProxyServer
from shared.logs import setup_logging
from shared.settings import split_listen

log = logging.getLogger("tidegate.dp.worker")
ORPHAN_DRAIN = 5.0  # seconds to finish requests when the main process is gone


class ForwardingQueue(EventQueue):
    """A worker's event queue: every event goes up to the main process's queue."""

    def __init__(self, channel: ipc.Channel) -> None:
        super().__init__(maxlen=1)
        self.channel = channel

    def put(self, source: str, event: str, data: dict[str, Any], at: float | None = None) -> None:
        self.total += 1
        self.channel.send_json(ipc.EVENT, {"source": source, "event": event, "data": data,
                                           "at": time.time() if at is None else at})


class Worker:
    def __init__(self, channel: ipc.Channel, index: int) -> None:
        self.channel = channel
        self.index = index
        self.hello: dict[str, Any] = {}
        self.proxy: ProxyServer | None = None
        self.stopping = asyncio.Event()
        self.drain_for = ORPHAN_DRAIN
        self.failed = False

    async def run(self) -> None:
        kind, payload = await self.channel.receive()
        if kind != ipc.HELLO:
            raise RuntimeError(f"worker {self.index}: expected hello, got message {kind}")
        self.hello = json.loads(payload)
        setup_logging("dp", self.hello["node_id"], self.hello.get("log_format", "text"))
        self.proxy = ProxyServer(ForwardingQueue(self.channel), self.hello["plugins"],
                                 active_checks=False)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        reader = loop.create_task(self._read(), name="worker-channel")
        await self.stopping.wait()
        reader.cancel()
        await self.proxy.drain(self.drain_for)
        await self.proxy.close()
        await self.channel.flush()
        log.info("worker %d stopped", self.index)

    async def _read(self) -> None:
        try:
            while True:
                kind, payload = await self.channel.receive()
                await self._handle(kind, payload)
        except (asyncio.IncompleteReadError, ConnectionError):
            log.warning("worker %d: main process gone, stopping", self.index)
            self.stopping.set()

    async def _handle(self, kind: int, payload: bytes) -> None:
        proxy = self.proxy
        assert proxy is not None
        if kind == ipc.CONFIG:
            try:
                snapshot = ipc.decode_snapshot_frame(payload)
                proxy.apply(snapshot)
            except Exception:  # keep serving the previous config
                log.exception("worker %d could not apply a config", self.index)
                return
            self.channel.send_json(ipc.APPLIED, {"version": snapshot.version})
        elif kind == ipc.HEALTH:
            adopt(proxy.balancers, json.loads(payload)["targets"])
        elif kind == ipc.START:
            try:
                await self._listen()
            except OSError as exc:  # e.g. the address is taken without SO_REUSEPORT
                log.error("worker %d cannot listen: %s", self.index, exc)
                self.failed = True
                self.stopping.set()
        elif kind == ipc.STATS:
            self.channel.send_json(ipc.STATS, {
                "connections": proxy.connections, "requests": proxy.requests,
                "version": proxy.state.version if proxy.state else None})
        elif kind == ipc.METRICS:
            self.channel.send_json(ipc.METRICS, metrics.COUNTS.snapshot())
        elif kind == ipc.STOP:
            self.drain_for = float(json.loads(payload).get("drain", ORPHAN_DRAIN))
            self.stopping.set()

    async def _listen(self) -> None:
        proxy = self.proxy
        assert proxy is not None
        for key, scheme in (("proxy_listen", "http"), ("proxy_ssl_listen", "https")):
            listen = self.hello.get(key)
            if not listen or listen == "off":
                continue
            host, port = split_listen(listen)
            await proxy.listen(host, port, scheme, reuse_port=True)
        self.channel.send_json(ipc.READY, {"listeners": proxy.ports, "pid": os.getpid()})


def main(argv: list[str] | None = None) -> int:
    import uvloop

    parser = argparse.ArgumentParser(prog="python -m dp.worker")
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--index", type=int, required=True)
    args = parser.parse_args(argv)
    # Ctrl-C reaches the whole process group: the main process decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    async def serve() -> int:
        sock = socket.socket(fileno=args.channel_fd)
        channel = await ipc.Channel.from_socket(sock)
        worker = Worker(channel, args.index)
        try:
            await worker.run()
        except (asyncio.IncompleteReadError, ConnectionError):
            return 1  # the main process went away before saying hello
        finally:
            channel.close()
        return 1 if worker.failed else 0

    return uvloop.run(serve())


if __name__ == "__main__":
    sys.exit(main())
