"""`tidegate dp start`: a stateless, DB-less data plane.

Hybrid mode: serve the cached config at once (if any), connect to the control plane over mTLS,
and apply what it streams. Standalone mode: serve a declarative kong.yml; SIGHUP (or POST /config
on the status port) reloads it. Either way the status listener reports what is served.

`--workers 1` proxies in this process. With `--workers N` (N > 1, or `auto`: one per core) this
process keeps the cluster link, the cache, the status listener, the running config and the active
health checks, and N worker processes run the proxy listeners on the same ports with SO_REUSEPORT
(dp/workers.py); SIGTERM drains them before exiting.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

from aiohttp import web

from dp.balancer import Balancers
from dp.cache import ConfigCache
from dp.cluster_client import ClusterClient
from dp.events import EventQueue
from dp.health_sync import BroadcastingQueue
from dp.hook_log import HookLog
from dp.proxy.server import ProxyServer
from dp.running import ApplyError, RunningConfig
from dp.settings import DPSettings
from dp.status import status_app
from dp.workers import WorkerPool
from shared import declarative
from shared.config_set import ConfigSet
from shared.errors import DeclarativeConfigError
from shared.settings import split_listen
from shared.tls import ClusterTLS

log = logging.getLogger("tidegate.dp")
DRAIN_SECONDS = 10.0  # how long SIGTERM lets workers finish requests in flight


def node_id_for(prefix: Path) -> str:
    """A node id kept under the prefix, so the control plane knows us across restarts."""
    path = prefix / "node_id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        node_id = str(uuid.uuid4())
        path.write_text(node_id + "\n")
        return node_id


class DataPlaneNode:
    def __init__(self, settings: DPSettings) -> None:
        self.settings = settings
        settings.prefix.mkdir(parents=True, exist_ok=True)
        self.node_id = node_id_for(settings.prefix)
        self.running = RunningConfig()
        self.proxy: ProxyServer | None = None
        self.pool: WorkerPool | None = None
        workers = settings.worker_processes()
        if workers == 1:
            self.events = EventQueue(settings.event_queue_size)
            self.proxy = ProxyServer(self.events, settings.enabled_plugins())
            self.balancers = self.proxy.balancers
            self.running.listeners.append(self.proxy.apply)  # new router/balancers per snapshot
        else:
            # Our balancers run the active checks and are what /upstreams/{u}/health shows;
            # health transitions are queued here once and broadcast to the workers.
            self.events = queue = BroadcastingQueue(settings.event_queue_size)
            self.balancers = Balancers(queue)
            self.pool = WorkerPool(workers, self._worker_hello(), self.balancers, queue)
            queue.broadcast = self.pool.broadcast_health
            self.running.listeners.append(lambda snap: self.balancers.rebuild(snap.config))
            self.running.listeners.append(self.pool.publish)
        self.hook_log = HookLog()  # `log` hooks on balancer / rate-limiting-advanced events
        self.running.listeners.append(self.hook_log.apply)
        self.events.listeners.append(self.hook_log)
        self.standalone = settings.declarative_config is not None
        self.cache = ConfigCache(settings.prefix / "config.cache")
        self.client: ClusterClient | None = None
        self.status_port: int | None = None

    def _worker_hello(self) -> dict[str, object]:
        s = self.settings
        return {"node_id": self.node_id, "proxy_listen": s.proxy_listen,
                "proxy_ssl_listen": s.proxy_ssl_listen, "plugins": s.enabled_plugins(),
                "log_format": s.log_format}

    @property
    def ready(self) -> bool:
        """A config is loaded (and, with workers, every worker has served with one)."""
        return self.running.current is not None and (self.pool is None or self.pool.ready)

    async def proxy_status(self) -> dict[str, object]:
        """The proxy part of /status: listeners and counters (summed over the workers)."""
        if self.proxy is not None:
            return {"listeners": self.proxy.ports, "connections": self.proxy.connections,
                    "requests": self.proxy.requests}
        assert self.pool is not None
        await self.pool.refresh_stats()
        workers = self.pool.status()
        return {"listeners": self.pool.ports,
                "connections": sum(w["connections"] for w in workers),
                "requests": sum(w["requests"] for w in workers), "workers": workers}

    def load_declarative(self, text: bytes) -> None:
        """Validate and serve a declarative config (raises DeclarativeConfigError)."""
        config = ConfigSet.from_lists(declarative.load_text(text))
        version = "file:" + hashlib.sha256(text).hexdigest()[:16]
        try:
            self.running.load(version, config, "file")
        except ApplyError as exc:
            raise DeclarativeConfigError(str(exc)) from None
        log.info("serving declarative config %s (%d entities)", version, len(config))

    def _reload_file(self) -> None:
        path = self.settings.declarative_config
        assert path is not None
        try:
            self.load_declarative(path.read_bytes())
        except (OSError, DeclarativeConfigError) as exc:
            log.error("declarative config %s not loaded, still serving %s: %s", path,
                      self.running.version or "nothing", getattr(exc, "message", exc))

    def _load_cache(self) -> None:
        cached = self.cache.load()
        if cached is None:
            return
        version = cached.version
        try:
            self.running.load(version, cached.config, "cache", validated=cached.trusted)
            log.info("serving cached config %s until the control plane answers", version)
        except ApplyError:
            log.warning("cached config %s failed validation and was ignored", version)

    def _cluster_client(self) -> ClusterClient:
        s = self.settings
        if not (s.cp and s.cluster_cert and s.cluster_key):
            raise ValueError("hybrid mode needs --cp, --cluster-cert and --cluster-key "
                             "(or --declarative-config for standalone mode)")
        tls = ClusterTLS.from_files(s.cluster_mtls, s.cluster_cert, s.cluster_key,  # type: ignore[arg-type]
                                    ca=s.cluster_ca_cert, server_name=s.cluster_server_name)
        return ClusterClient(s.cp, tls, self.running, self.node_id, s.labels,
                             cache=self.cache, plugins=s.enabled_plugins(), events=self.events)

    async def _start_proxy(self) -> None:
        """Open the proxy listeners (a listener set to "off" is skipped)."""
        s = self.settings
        _check_apart(s.proxy_listen, s.proxy_ssl_listen)
        if self.pool is not None:
            for listen in (s.proxy_listen, s.proxy_ssl_listen):
                if listen and listen != "off" and split_listen(listen)[1] == 0:
                    raise ValueError(f"--workers: proxy listener {listen} needs a fixed port "
                                     "(with port 0 each worker would pick its own)")
            self.pool.start()
            log.info("proxying in %d worker processes", len(self.pool.workers))
            return
        assert self.proxy is not None
        for listen, scheme in ((s.proxy_listen, "http"), (s.proxy_ssl_listen, "https")):
            if not listen or listen == "off":
                continue
            host, port = split_listen(listen)
            bound = await self.proxy.listen(host, port, scheme)
            log.info("proxy listener on %s://%s:%d", scheme, host, bound)

    async def serve(self, stop: asyncio.Event) -> None:
        async with AsyncExitStack() as stack:
            loop = asyncio.get_running_loop()
            if self.standalone:
                self._reload_file()
                loop.add_signal_handler(signal.SIGHUP, self._reload_file)
            else:
                self.client = self._cluster_client()
                self._load_cache()
            runner = web.AppRunner(status_app(self), access_log=None, handle_signals=False)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            host, port = split_listen(self.settings.status_listen)
            site = web.TCPSite(runner, host, port, reuse_address=True)
            await site.start()
            self.status_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            log.info("status listener on http://%s:%d", host, self.status_port)
            if self.proxy is not None:
                stack.push_async_callback(self.proxy.close)
                # First (the stack unwinds in reverse): stop accepting, close WebSockets with
                # 1001, let requests in flight finish.
                stack.push_async_callback(self.proxy.drain, DRAIN_SECONDS)
            else:
                stack.callback(self.balancers.stop)
                stack.push_async_callback(self._stop_workers)
            await self._start_proxy()
            if self.client is not None:
                task = asyncio.create_task(self.client.run(), name="cluster-client")
                stack.callback(task.cancel)
            await stop.wait()
            log.info("data plane stopping")

    async def _stop_workers(self) -> None:
        assert self.pool is not None
        await self.pool.stop(DRAIN_SECONDS)


def _check_apart(http: str, https: str) -> None:
    """The http and https listeners may not share a port: with `--workers` (SO_REUSEPORT)
    both would bind, and the kernel would hand each listener a share of the connections, so
    plain HTTP clients would meet the TLS listener half the time (and the reverse)."""
    if not http or http == "off" or not https or https == "off":
        return
    (host, port), (ssl_host, ssl_port) = split_listen(http), split_listen(https)
    wildcards = ("0.0.0.0", "::")
    if port == ssl_port != 0 and (host == ssl_host or host in wildcards
                                  or ssl_host in wildcards):
        raise ValueError(f"--proxy-listen {http} and --proxy-ssl-listen {https} share a port")


def run(settings: DPSettings) -> int:
    import uvloop

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            node = DataPlaneNode(settings)
            await node.serve(stop)
        except (ValueError, OSError) as exc:
            log.error("%s", exc)
            return 1
        return 0

    return uvloop.run(main())
