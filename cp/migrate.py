"""Versioned SQL migrations: `cp/migrations/NNNN_name.sql`, each applied once, in a transaction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

_FILE = re.compile(r"^(\d{4})_([\w-]+)\.sql$")

_TRACKING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    found = []
    for entry in resources.files("cp.migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    return sorted(found, key=lambda m: m.version)


async def applied(conn: psycopg.AsyncConnection) -> dict[int, str]:
    exists = await (await conn.execute("SELECT to_regclass('schema_migrations')")).fetchone()
    if exists is None or exists[0] is None:
        return {}
    rows = await (await conn.execute("SELECT version, name FROM schema_migrations")).fetchall()
    return {v: n for v, n in rows}


async def pending(conn: psycopg.AsyncConnection) -> list[Migration]:
    done = await applied(conn)
    return [m for m in available() if m.version not in done]


async def up(conn: psycopg.AsyncConnection) -> list[Migration]:
    """Apply every pending migration; a lock keeps two CP nodes from racing."""
    ran = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('tidegate_migrations'))")
        await conn.execute(_TRACKING)
        for migration in await pending(conn):
            await conn.execute(migration.sql)  # type: ignore[arg-type]
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            ran.append(migration)
    return ran
