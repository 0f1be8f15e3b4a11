"""`tidegate cp …`: start the control plane, manage its database migrations."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from typing import Any

from cp.settings import CPSettings
from shared.logs import setup_logging
from shared.settings import add_setting_flags


def register(groups: Any) -> None:
    cp = groups.add_parser("cp", help="control plane: Admin API, PostgreSQL, cluster server")
    sub = cp.add_subparsers(dest="cp_command", metavar="COMMAND")
    sub.required = True

    start = sub.add_parser("start", help="start the control plane")
    _database_flags(start)
    start.add_argument("--admin-listen", help="Admin API address (default 127.0.0.1:8001)")
    start.add_argument("--cluster-listen",
                       help="cluster (mTLS gRPC) address (default 0.0.0.0:8005)")
    start.add_argument("--enforce-rbac", action="store_const", const=True, default=None,
                       help="require a Kong-Admin-Token on every Admin API request")
    start.add_argument("--cluster-cert", help="cluster certificate (PEM)")
    start.add_argument("--cluster-key", help="cluster certificate key (PEM)")
    start.add_argument("--cluster-mtls", choices=("shared", "pki"),
                       help="shared (default): data planes present the cluster certificate; "
                            "pki: data planes present certificates signed by --cluster-ca-cert")
    start.add_argument("--cluster-ca-cert", help="CA certificate (pki mode)")
    start.add_argument("--cluster-allowed-names",
                       help="pki mode: comma-separated data-plane certificate names to accept "
                            "(default: any the CA signed)")
    start.add_argument("--log-format", choices=("text", "json"))
    add_setting_flags(start, CPSettings)  # every other setting: --event-hooks-timeout, …
    start.set_defaults(handler=_start)

    migrations = sub.add_parser("migrations", help="database migrations")
    msub = migrations.add_subparsers(dest="migrations_command", metavar="COMMAND")
    msub.required = True
    for name, text in (("bootstrap", "create the schema in an empty database"),
                       ("up", "apply pending migrations"),
                       ("status", "list applied and pending migrations")):
        p = msub.add_parser(name, help=text)
        _database_flags(p)
        if name == "bootstrap":
            p.add_argument("--password", help="super-admin password for RBAC "
                                              "(or TIDEGATE_PASSWORD)")
        p.set_defaults(handler=_migrations, action=name)


def _database_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prefix", help="state directory (default ./.tidegate)")
    parser.add_argument("--pg-dsn", help="PostgreSQL DSN (default: embedded PostgreSQL)")
    parser.add_argument("--config", metavar="FILE",
                        help="TOML settings file, keys = setting names (or TIDEGATE_CONFIG); "
                             "a flag wins over TIDEGATE_<NAME>, which wins over the file")


def _settings(args: argparse.Namespace) -> Any:
    from cp.settings import CPSettings

    return CPSettings.from_sources(args)


def _start(args: argparse.Namespace) -> int:
    from cp.server import run

    settings = _settings(args)
    setup_logging("cp", settings.node_id, settings.log_format)
    return run(settings)


def _migrations(args: argparse.Namespace) -> int:
    import psycopg

    from cp import migrate
    from cp.server import bootstrap, database_dsn

    settings = _settings(args)
    setup_logging("cp", settings.node_id, settings.log_format)
    log = logging.getLogger("tidegate.cp")

    async def status(dsn: str) -> int:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            done = await migrate.applied(conn)
            todo = await migrate.pending(conn)
        for version, name in sorted(done.items()):
            print(f"applied  {version:04d}_{name}")
        for m in todo:
            print(f"pending  {m.version:04d}_{m.name}")
        print("database is up to date" if not todo else f"{len(todo)} pending migrations")
        return 0

    async def apply(dsn: str, action: str) -> int:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            done = await migrate.applied(conn)
        if action == "bootstrap" and done:
            print("database already bootstrapped; use `tidegate cp migrations up`",
                  file=sys.stderr)
            return 1
        if action == "up" and not done:
            print("database not bootstrapped; use `tidegate cp migrations bootstrap`",
                  file=sys.stderr)
            return 1
        ran = await bootstrap(dsn, settings.password if action == "bootstrap" else None)
        for m in ran:
            print(f"migrated {m.version:04d}_{m.name}")
        print(f"{len(ran)} migrations applied")
        return 0

    with contextlib.ExitStack() as stack:
        try:
            dsn = database_dsn(settings, stack)
            if args.action == "status":
                return asyncio.run(status(dsn))
            return asyncio.run(apply(dsn, args.action))
        except (OSError, RuntimeError, psycopg.Error) as exc:
            log.error("%s", exc)
            return 1
