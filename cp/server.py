"""`tidegate cp start`: PostgreSQL (embedded or given), migrations, then the Admin API."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from contextlib import AsyncExitStack
from typing import Any

import psycopg
from aiohttp import web

from cp import migrate
from cp.admin.app import create_app
from cp.admin.event_hooks import HOOKS
from cp.admin.keys import CLUSTER
from cp.cluster.dp_events import DataPlaneEvents
from cp.cluster.server import Cluster, start_cluster
from cp.hooks.config import HooksConfig
from cp.hooks.engine import HookEngine
from cp.hooks.handlers import HandlerContext
from cp.hooks.supervisor import WorkerSupervisor
from cp.hooks.worker_spec import WorkerSpec
from cp.pg_embedded import EmbeddedPostgres
from cp.settings import CPSettings, split_listen
from cp.store import Store, token_digest
from shared.certs import CertError
from shared.tls import ClusterTLS, HandshakeFailureLog

log = logging.getLogger("tidegate.cp")


class DatabaseNotReady(RuntimeError):
    pass


class BadSetting(RuntimeError):
    """A setting with a value the control plane cannot run with."""


def database_dsn(settings: CPSettings, stack: contextlib.ExitStack) -> str:
    """The configured DSN, or an embedded PostgreSQL under the prefix (stopped on exit)."""
    if settings.pg_dsn:
        return settings.pg_dsn
    pg = EmbeddedPostgres(settings.prefix / "postgres")
    already = pg.running()
    dsn = pg.start()
    log.info("using embedded PostgreSQL in %s (no --pg-dsn given)", pg.data_dir)
    if not already:
        stack.callback(pg.stop)
    return dsn


async def bootstrap(dsn: str, password: str | None) -> list[migrate.Migration]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        ran = await migrate.up(conn)
        if password:
            await conn.execute(
                "INSERT INTO cluster_meta (key, value) VALUES ('admin_password_digest', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (token_digest(password),),
            )
    return ran


async def prepare_database(dsn: str, password: str | None) -> dict[str, Any]:
    """Bootstrap an empty database; refuse a partly migrated one. Returns stored settings."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        done = await migrate.applied(conn)
        todo = await migrate.pending(conn)
    if not done:
        ran = await bootstrap(dsn, password)
        log.info("database bootstrapped (%d migrations)", len(ran))
    elif todo:
        raise DatabaseNotReady(
            f"database has {len(todo)} pending migrations: run `tidegate cp migrations up`")
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        row = await (await conn.execute(
            "SELECT value FROM cluster_meta WHERE key = 'admin_password_digest'")).fetchone()
    return {"admin_password_digest": row[0] if row else None}


async def _start_cluster(
    settings: CPSettings, dsn: str, store: Store, stack: AsyncExitStack
) -> Cluster | None:
    """The mTLS cluster listener, when a cluster certificate is configured."""
    if not (settings.cluster_cert and settings.cluster_key):
        log.warning("no --cluster-cert/--cluster-key: the cluster listener is off, "
                    "data planes cannot connect")
        return None
    tls = ClusterTLS.from_files(
        settings.cluster_mtls, settings.cluster_cert, settings.cluster_key,  # type: ignore[arg-type]
        ca=settings.cluster_ca_cert,
        allowed_names=[n for n in settings.cluster_allowed_names.split(",") if n],
    )
    handshakes = HandshakeFailureLog()
    handshakes.start()
    stack.callback(handshakes.stop)
    if settings.dp_events_retention <= 0:
        raise BadSetting("dp_events_retention must be a positive number of seconds")
    events = DataPlaneEvents(store.pool, retention=settings.dp_events_retention,
                             hook_retry_period=settings.event_hooks_retry_period)
    cluster = await start_cluster(dsn, store.pool, tls, settings.cluster_listen, settings.node_id,
                                  events)
    stack.push_async_callback(cluster.stop)
    return cluster


async def start_hooks(settings: CPSettings, dsn: str, app: web.Application,
                      stack: AsyncExitStack) -> None:
    """The event-hook delivery engine, in its own lower-priority process unless configured
    inline. /test and /ping stay in this process: a user waits for them."""
    config = HooksConfig.from_settings(settings)
    mode = settings.event_hooks_worker
    if mode not in ("process", "inline"):
        raise BadSetting(f"event_hooks_worker must be 'process' or 'inline', not {mode!r}")
    if mode == "inline":
        engine = HookEngine(dsn, config)
        await engine.start()
        stack.push_async_callback(engine.stop)
        app[HOOKS].attach(engine.config, engine.ctx)
        return
    ctx = HandlerContext(config)
    stack.push_async_callback(ctx.close)
    app[HOOKS].attach(config, ctx)
    worker = WorkerSupervisor(WorkerSpec(
        dsn=dsn, config=config, node_id=settings.node_id, log_format=settings.log_format,
        nice=int(settings.event_hooks_nice)), counts=ctx.deliveries)  # for /metrics
    await worker.start()
    stack.push_async_callback(worker.stop)


async def serve(settings: CPSettings, dsn: str, stop: asyncio.Event) -> None:
    stored = await prepare_database(dsn, settings.password)
    if settings.enforce_rbac and not stored["admin_password_digest"]:
        log.warning("RBAC is enforced but no super-admin password was set at bootstrap; "
                    "only admins' tokens will be accepted")
    async with AsyncExitStack() as stack:
        store = await Store.open(dsn)
        stack.push_async_callback(store.close)
        cluster = await _start_cluster(settings, dsn, store, stack)
        app = create_app(store, {
            "enforce_rbac": settings.enforce_rbac,
            "admin_listen": settings.admin_listen,
            "cluster_listen": settings.cluster_listen,
            "node_id": settings.node_id,
            **stored,
        })
        if cluster is not None:
            app[CLUSTER] = cluster
        await start_hooks(settings, dsn, app, stack)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        host, port = split_listen(settings.admin_listen)
        await web.TCPSite(runner, host, port, reuse_address=True).start()
        log.info("Admin API listening on http://%s:%d", host, port)
        # Everything built so far lives as long as the process: keep the cyclic GC from
        # rescanning it on each full collection (a data plane's flood of events promotes
        # thousands of short-lived objects per batch, which triggers full collections often).
        gc.freeze()
        await stop.wait()
        log.info("control plane stopping")


def run(settings: CPSettings) -> int:
    import uvloop

    with contextlib.ExitStack() as stack:
        try:
            dsn = database_dsn(settings, stack)
        except Exception as exc:
            log.error("cannot start PostgreSQL: %s", exc)
            return 1

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await serve(settings, dsn, stop)

        try:
            uvloop.run(main())
        except (DatabaseNotReady, OSError, psycopg.Error, CertError, BadSetting) as exc:
            log.error("%s", exc)
            return 1
    return 0
