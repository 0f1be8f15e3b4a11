"""Shared fixtures: a real PostgreSQL for the session, a fresh database per test, and a real
Admin API on a real socket."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from aiohttp import ClientSession, web

from cp import migrate
from cp.admin.app import create_app
from cp.pg_embedded import EmbeddedPostgres
from cp.store import Store
from shared.certs import gen_cluster_cert

TEMPLATE_DB = "tidegate_template"


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Path]:
    """A cluster certificate and key (shared mode), as `tidegate certs gen` writes them."""
    cert, key = tmp_path / "cluster.crt", tmp_path / "cluster.key"
    gen_cluster_cert(cert, key)
    return {"cert": cert, "key": key}


@pytest.fixture(scope="session")
def pg() -> Iterator[EmbeddedPostgres]:
    """One real PostgreSQL server for the whole run (short path: its socket lives there)."""
    root = Path(tempfile.mkdtemp(prefix="tgpg-", dir="/tmp"))
    root.chmod(0o755)  # when we are root, the server runs as nobody and must reach its directory
    server = EmbeddedPostgres(root / "pg")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def dsn_for(server: EmbeddedPostgres, dbname: str) -> str:
    return server.dsn.replace("dbname=tidegate", f"dbname={dbname}")


@contextlib.asynccontextmanager
async def database_at(server: EmbeddedPostgres, version: int) -> AsyncIterator[str]:
    """A new database with the migrations up to `version` applied, as `migrate.up` did before
    the later ones existed; yields its DSN, drops it afterwards."""
    name = f"m_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(server.dsn, autocommit=True) as conn:
        await conn.execute(f"CREATE DATABASE {name}")
    dsn = dsn_for(server, name)
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT "
                "NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            for m in migrate.available():
                if m.version <= version:
                    await conn.execute(m.sql)  # type: ignore[arg-type]
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (m.version, m.name))
        yield dsn
    finally:
        async with await psycopg.AsyncConnection.connect(server.dsn, autocommit=True) as conn:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
async def template_db(pg: EmbeddedPostgres) -> str:
    async with await psycopg.AsyncConnection.connect(pg.dsn, autocommit=True) as conn:
        await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
        await conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    async with await psycopg.AsyncConnection.connect(
        dsn_for(pg, TEMPLATE_DB), autocommit=True
    ) as conn:
        await migrate.up(conn)
    return TEMPLATE_DB


@pytest.fixture
async def dsn(pg: EmbeddedPostgres, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(pg.dsn, autocommit=True) as conn:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    yield dsn_for(pg, name)
    async with await psycopg.AsyncConnection.connect(pg.dsn, autocommit=True) as conn:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[Store]:
    s = await Store.open(dsn, min_size=1, max_size=8)
    yield s
    await s.close()


async def serve_admin(store: Store, settings: dict | None = None) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_app(store, settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def admin(store: Store) -> AsyncIterator[ClientSession]:
    """An HTTP client for a real Admin API (RBAC off) backed by a fresh database."""
    runner, url = await serve_admin(store)
    async with ClientSession(base_url=url) as session:
        yield session
    await runner.cleanup()
