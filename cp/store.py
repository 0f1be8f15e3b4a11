"""The PostgreSQL store: entity CRUD, generic over the shared schema, with the change log.

Every write is one transaction that changes the entity tables, appends one change-log row per
entity touched (cascades included) and notifies listeners. Change-log ids are the config versions:
they are drawn under a transaction-scoped advisory lock held until commit, so ids increase in
commit order and a reader that has seen version N has seen every write up to N.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import pq
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from shared.entities import ENTITIES
from shared.errors import (
    ForeignKeyViolation,
    InvalidOffset,
    NotFound,
    SchemaViolation,
    UniqueViolation,
)
from shared.schema.entity import EntitySchema
from shared.schema.fields import is_uuid, text_error

NOTIFY_CHANNEL = "tidegate_changes"
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('tidegate_change_log'))"
_LOG_ROW = (
    "INSERT INTO change_log (id, op, entity_type, entity_id, old_entity, new_entity) "
    "VALUES (nextval('change_log_id_seq'), %s, %s, %s, %s, %s)")
_LOCK_AND_LOG_ROW = (
    f"WITH lock AS MATERIALIZED ({_LOCK}) "
    "INSERT INTO change_log (id, op, entity_type, entity_id, old_entity, new_entity) "
    "SELECT nextval('change_log_id_seq'), %s::text, %s::text, %s::uuid, %s::jsonb, %s::jsonb "
    "FROM lock")
# The transaction's last change-log id: currval is per session, and this session drew it.
_NOTIFY = "SELECT pg_notify(%s, currval('change_log_id_seq')::text)"


def token_digest(token: str) -> str:
    """Admin tokens are random and long, so a plain SHA-256 digest is enough to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


def encode_offset(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_offset(offset: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(offset + "=" * (-len(offset) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidOffset(offset, "bad base64 encoding") from None
    if not is_uuid(raw) and "|" not in raw:
        raise InvalidOffset(offset, "bad cursor")
    return raw


def _columns(schema: EntitySchema) -> list[str]:
    """The columns besides id/tags/created_at/entity that the migration gives this entity."""
    cols = [k for k in schema.unique_fields() if not schema.fields[k].writeonly]
    cols += [f"{k}_id" for k in schema.foreign_fields()]
    if schema.cache_key:
        cols.append("cache_key")
    if "token" in schema.fields:
        cols.append("token_digest")
    return cols


def cache_key(schema: EntitySchema, entity: dict[str, Any]) -> str:
    parts = []
    for k in schema.cache_key or ():
        v = entity.get(k)
        parts.append(v["id"] if isinstance(v, dict) else "" if v is None else str(v))
    return f"{schema.name}:" + ":".join(parts)


def _stored(schema: EntitySchema, entity: dict[str, Any]) -> dict[str, Any]:
    """What goes in the `entity` column: no secrets, no virtual fields."""
    return {
        k: v for k, v in entity.items()
        if not schema.fields[k].writeonly and not (schema.name == "certificates" and k == "snis")
    }


@dataclass
class _Tx:
    """One write transaction: its connection, and whether it appended to the change log."""

    conn: psycopg.AsyncConnection[Any]
    locked: bool = False
    logged: bool = False


@dataclass
class Page:
    data: list[dict[str, Any]]
    offset: str | None


class Store:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, dsn: str, *, min_size: int = 2, max_size: int = 16) -> Store:
        # No automatic prepared statements: a statement prepared inside a pipelined transaction
        # that fails is rolled back on the server while psycopg still thinks it exists, and the
        # pooled connection would then fail every later use of it ("prepared statement _pg3_N
        # does not exist", found by the fuzzer).
        pool = AsyncConnectionPool(dsn, min_size=min_size, max_size=max_size, open=False,
                                   kwargs={"autocommit": True, "prepare_threshold": None})
        await pool.open(wait=True, timeout=30)
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    # ---- reads -------------------------------------------------------------------------------

    @staticmethod
    def _key_clause(schema: EntitySchema, key: str) -> tuple[str, str] | None:
        if text_error(key):
            return None  # no stored key holds text PostgreSQL cannot take
        if is_uuid(key):
            return "id = %s", key
        if schema.endpoint_key:
            return f"{schema.endpoint_key} = %s", key
        return None

    async def get(
        self, schema: EntitySchema, key: str, *, scope: dict[str, str] | None = None,
        conn: psycopg.AsyncConnection[Any] | None = None, for_update: bool = False,
    ) -> dict[str, Any] | None:
        """The entity with this id (or endpoint key), optionally within a parent's scope."""
        clause = self._key_clause(schema, key)
        if clause is None:
            return None
        where, params = [clause[0]], [clause[1]]
        for col, value in (scope or {}).items():
            where.append(f"{col} = %s")
            params.append(value)
        sql = f"SELECT entity FROM {schema.name} WHERE {' AND '.join(where)}"
        if for_update:
            sql += " FOR UPDATE"
        if conn is not None:
            row = await (await conn.execute(sql, params)).fetchone()
        else:
            async with self.pool.connection() as c:
                row = await (await c.execute(sql, params)).fetchone()
                if row is not None and schema.name == "certificates":
                    await self._fill_snis(c, [row[0]])
                return schema.public(row[0]) if row else None
        return row[0] if row else None

    async def page(
        self, schema: EntitySchema, *, size: int = 100, offset: str | None = None,
        tags: list[str] | None = None, tags_any: bool = False,
        filters: dict[str, Any] | None = None,
    ) -> Page:
        where: list[str] = []
        params: list[Any] = []
        if offset is not None:
            after = decode_offset(offset)
            if not is_uuid(after):
                raise InvalidOffset(offset, "bad cursor")
            where.append("id > %s")
            params.append(after)
        if tags:
            where.append("tags && %s" if tags_any else "tags @> %s")
            params.append(tags)
        for col, value in (filters or {}).items():
            where.append(f"{col} = %s")
            params.append(value)
        sql = f"SELECT id, entity FROM {schema.name}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id LIMIT %s"
        params.append(size + 1)
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(sql, params)).fetchall()
            entities = [r[1] for r in rows[:size]]
            if schema.name == "certificates":
                await self._fill_snis(conn, entities)
        next_offset = encode_offset(str(rows[size - 1][0])) if len(rows) > size else None
        return Page([schema.public(e) for e in entities], next_offset)

    async def _fill_snis(self, conn: psycopg.AsyncConnection[Any], certs: list[dict]) -> None:
        if not certs:
            return
        rows = await (await conn.execute(
            "SELECT certificate_id::text, array_agg(name ORDER BY name) FROM snis "
            "WHERE certificate_id = ANY(%s::uuid[]) GROUP BY 1", ([c["id"] for c in certs],),
        )).fetchall()
        names = dict(rows)
        for cert in certs:
            cert["snis"] = names.get(cert["id"], [])

    async def tagged(self, tag: str | None, *, size: int, offset: str | None) -> Page:
        """`/tags` and `/tags/{tag}`: (entity_name, entity_id, tag) rows across every entity."""
        after = decode_offset(offset) if offset else None
        if after is not None and (after.count("|") < 2 or text_error(after)):
            raise InvalidOffset(offset or "", "bad cursor")
        parts = []
        for name in ENTITIES:
            parts.append(
                f"SELECT '{name}' AS entity_name, id::text AS entity_id, unnest(tags) AS tag "
                f"FROM {name}" + (" WHERE tags @> ARRAY[%(tag)s]" if tag is not None else "")
            )
        sql = "SELECT * FROM (" + " UNION ALL ".join(parts) + ") t"
        conditions = []
        if tag is not None:
            conditions.append("tag = %(tag)s")
        if after is not None:
            conditions.append("(tag, entity_name, entity_id) > (%(t)s, %(n)s, %(i)s)")
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        sql += " ORDER BY tag, entity_name, entity_id LIMIT %(size)s"
        params: dict[str, Any] = {"tag": tag, "size": size + 1}
        if after is not None:
            t, n, i = after.split("|", 2)
            params.update(t=t, n=n, i=i)
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            rows = await (await cur.execute(sql, params)).fetchall()
        next_offset = None
        if len(rows) > size:
            last = rows[size - 1]
            next_offset = encode_offset(f"{last['tag']}|{last['entity_name']}|{last['entity_id']}")
        return Page(rows[:size], next_offset)

    async def counts(self) -> dict[str, int]:
        sql = " UNION ALL ".join(f"SELECT '{n}', count(*) FROM {n}" for n in ENTITIES)
        async with self.pool.connection() as conn:
            return dict(await (await conn.execute(sql)).fetchall())  # type: ignore[arg-type]

    async def version(self) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT coalesce(max(id), 0) FROM change_log")
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def epoch(self) -> str:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(
                "SELECT value FROM cluster_meta WHERE key = 'epoch'")).fetchone()
        return str(row[0]) if row else ""

    async def changes_since(self, version: int, limit: int = 1000) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT id, op, entity_type, entity_id::text, old_entity, new_entity "
                "FROM change_log WHERE id > %s ORDER BY id LIMIT %s", (version, limit))
            return await cur.fetchall()

    async def admin_by_token(self, token: str) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(
                "SELECT entity FROM admins WHERE token_digest = %s", (token_digest(token),)
            )).fetchone()
        return row[0] if row else None

    async def _shown(
        self, schema: EntitySchema, entity: dict[str, Any], secret: str | None
    ) -> dict[str, Any]:
        """The response body; a generated admin token is shown once, on creation."""
        if schema.name == "certificates":
            return await self.get(schema, entity["id"]) or schema.public(entity)
        shown = schema.public(entity)
        if secret is not None and "token" in schema.fields:
            shown = {**shown, "token": secret}
        return shown

    # ---- writes ------------------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Tx]:
        """A write transaction; DB constraint errors become Kong errors.

        It runs in pipeline mode: statements whose results are not read (the INSERT, the lock,
        the change-log row, the notification, COMMIT) go out together, so a plain create is one
        round trip and the change-log lock is not held across client round trips. A statement
        that fails makes the server skip the rest, COMMIT included; the error surfaces at the
        next read or at the end, and the transaction is rolled back.
        """
        async with self.pool.connection() as conn:
            tx = _Tx(conn)
            failed: psycopg.Error | None = None
            try:
                try:
                    async with conn.pipeline():
                        await conn.execute("BEGIN")
                        try:
                            yield tx
                            if tx.logged:
                                await conn.execute(_NOTIFY, (NOTIFY_CHANNEL,))
                            await conn.execute("COMMIT")
                        except psycopg.Error as exc:
                            # Raised inside the block, the pipeline's exit would also log its
                            # aborted sync as a warning; re-raised below instead.
                            failed = exc
                except psycopg.Error:
                    if failed is None:
                        raise
                if failed is not None:
                    raise failed
            except pgerrors.UniqueViolation as exc:
                raise _unique_error(exc) from None
            except pgerrors.ForeignKeyViolation as exc:
                raise _foreign_error(exc) from None
            finally:
                if conn.info.transaction_status != pq.TransactionStatus.IDLE:
                    with contextlib.suppress(psycopg.Error):
                        await conn.execute("ROLLBACK")

    async def insert(
        self, schema: EntitySchema, data: Any, *, forced: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        entity = _drop_untouched_virtual(schema, data, schema.process(_with(data, forced)))
        secret = _take_token(schema, entity, generate=True)
        async with self.transaction() as tx:
            await self._write(tx, schema, entity, None, secret)
        return await self._shown(schema, entity, secret)

    async def update(
        self, schema: EntitySchema, key: str, data: Any, *,
        forced: dict[str, Any] | None = None, scope: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        async with self.transaction() as tx:
            old = await self.get(schema, key, scope=scope, conn=tx.conn, for_update=True)
            if old is None:
                raise NotFound("Not found")
            entity = schema.process(_with(data, forced), existing=old, partial=True,
                                    entity_id=old["id"])
            entity = _drop_untouched_virtual(schema, data, entity)
            secret = _take_token(schema, entity, generate=False)
            await self._write(tx, schema, entity, old, secret)
        return await self._shown(schema, entity, None)

    async def upsert(
        self, schema: EntitySchema, key: str, data: Any, *,
        forced: dict[str, Any] | None = None, scope: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """PUT: replace the entity named by `key` (an id or an endpoint key), creating it."""
        data = _with(data, forced)
        if isinstance(data, dict) and not is_uuid(key):
            if schema.endpoint_key is None:
                raise NotFound("Not found")
            data = {**data, schema.endpoint_key: key}
        async with self.transaction() as tx:
            old = await self.get(schema, key, scope=scope, conn=tx.conn, for_update=True)
            new_id = old["id"] if old else (key if is_uuid(key) else None)
            entity = schema.process(data, existing=old, entity_id=new_id)
            entity = _drop_untouched_virtual(schema, data, entity)
            secret = _take_token(schema, entity, generate=old is None)
            await self._write(tx, schema, entity, old, secret)
        return await self._shown(schema, entity, secret if old is None else None)

    async def delete(
        self, schema: EntitySchema, key: str, *, scope: dict[str, str] | None = None
    ) -> bool:
        async with self.transaction() as tx:
            old = await self.get(schema, key, scope=scope, conn=tx.conn, for_update=True)
            if old is None:
                return False
            await self._delete(tx, schema, old)
        return True

    async def _write(
        self, tx: _Tx, schema: EntitySchema, entity: dict[str, Any],
        old: dict[str, Any] | None, secret: str | None,
    ) -> None:
        await self._resolve_foreign(tx.conn, schema, entity)
        if old is not None:
            await self._check_children(tx.conn, schema, entity)
        row = {"id": entity["id"], "tags": entity.get("tags"),
               "created_at": entity.get("created_at") or 0,
               "entity": Jsonb(_stored(schema, entity))}
        for col in _columns(schema):
            if col == "cache_key":
                row[col] = cache_key(schema, entity)
            elif col == "token_digest":
                if secret is None and old is not None:
                    continue  # keep the stored digest
                row[col] = token_digest(secret) if secret else None
            elif col.endswith("_id") and col[:-3] in schema.foreign_fields():
                ref = entity.get(col[:-3])
                row[col] = ref["id"] if ref else None
            else:
                row[col] = entity.get(col)
        names = list(row)
        placeholders = ", ".join(f"%({n})s" for n in names)
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names if n != "id")
        await tx.conn.execute(
            f"INSERT INTO {schema.name} ({', '.join(names)}) VALUES ({placeholders}) "
            + (f"ON CONFLICT (id) DO UPDATE SET {updates}" if old is not None else ""),
            row,
        )
        public = _stored(schema, entity)
        await self._log(tx, "update" if old else "create", schema, entity["id"],
                        _stored(schema, old) if old else None, public)
        if schema.name == "certificates" and "snis" in entity:
            await self._sync_snis(tx, entity)

    async def _sync_snis(self, tx: _Tx, cert: dict[str, Any]) -> None:
        """A certificate's `snis` list creates and removes its SNI entities."""
        snis = ENTITIES["snis"]
        wanted = cert.get("snis") or []
        rows = await (await tx.conn.execute(
            "SELECT entity FROM snis WHERE certificate_id = %s", (cert["id"],))).fetchall()
        for (sni,) in rows:
            if sni["name"] not in wanted:
                await self._delete(tx, snis, sni)
        have = {sni["name"] for (sni,) in rows}
        for name in wanted:
            if name not in have:
                entity = snis.process({"name": name, "certificate": {"id": cert["id"]}})
                await self._write(tx, snis, entity, None, None)

    async def _resolve_foreign(
        self, conn: psycopg.AsyncConnection[Any], schema: EntitySchema, entity: dict[str, Any]
    ) -> None:
        """Check each reference exists (resolving endpoint keys to ids) and parent rules."""
        for name, f in schema.foreign_fields().items():
            ref = entity.get(name)
            if ref is None:
                continue
            parent_schema = ENTITIES[f.reference or ""]
            key = ref.get("id")
            if key is None:
                ((field_name, key),) = ref.items()
                if field_name != parent_schema.endpoint_key:
                    raise SchemaViolation({name: {field_name: "unknown field"}})
            parent = await self.get(parent_schema, key, conn=conn)
            if parent is None:
                raise ForeignKeyViolation.missing_parent(name, ref, parent_schema.name)
            entity[name] = {"id": parent["id"]}
            if schema.parent_check is not None:
                err = schema.parent_check(entity, name, parent)
                if err:
                    raise SchemaViolation(err)

    async def _check_children(
        self, conn: psycopg.AsyncConnection[Any], schema: EntitySchema, entity: dict[str, Any]
    ) -> None:
        """An updated parent must stay compatible with the children that reference it."""
        for child in ENTITIES.values():
            if child.parent_check is None:
                continue
            for fk, f in child.foreign_fields().items():
                if f.reference != schema.name:
                    continue
                rows = await (await conn.execute(
                    f"SELECT entity FROM {child.name} WHERE {fk}_id = %s", (entity["id"],)
                )).fetchall()
                for (row,) in rows:
                    err = child.parent_check(row, fk, entity)
                    if err:
                        label = row.get("name") or row["id"]
                        detail = "; ".join(str(v) for v in err.values())
                        raise SchemaViolation({"@entity": [
                            f"incompatible with {child.singular} '{label}': {detail}"]})

    async def _delete(self, tx: _Tx, schema: EntitySchema, entity: dict[str, Any]) -> None:
        """Delete with Kong's rules: cascade to owned children, refuse while referenced."""
        for child in ENTITIES.values():
            for fk, f in child.foreign_fields().items():
                if f.reference != schema.name:
                    continue
                rows = await (await tx.conn.execute(
                    f"SELECT entity FROM {child.name} WHERE {fk}_id = %s ORDER BY id",
                    (entity["id"],),
                )).fetchall()
                if rows and f.on_delete != "cascade":
                    raise ForeignKeyViolation.referenced_by(child.name, schema.name)
                for (row,) in rows:
                    await self._delete(tx, child, row)
        await tx.conn.execute(f"DELETE FROM {schema.name} WHERE id = %s", (entity["id"],))
        await self._log(tx, "delete", schema, entity["id"], _stored(schema, entity), None)

    async def _log(
        self, tx: _Tx, op: str, schema: EntitySchema, entity_id: str,
        old: dict[str, Any] | None, new: dict[str, Any] | None,
    ) -> None:
        # The first row takes the lock in the same statement: the CTE's row (the lock) is
        # produced before the projection over it draws the id.
        await tx.conn.execute(_LOG_ROW if tx.locked else _LOCK_AND_LOG_ROW,
                              (op, schema.name, entity_id, _json(old), _json(new)))
        tx.locked = tx.logged = True

    # ---- declarative -------------------------------------------------------------------------

    async def export_config(self) -> dict[str, list[dict[str, Any]]]:
        """Every data-plane entity, by type, in dependency order."""
        out: dict[str, list[dict[str, Any]]] = {}
        async with self.pool.connection() as conn:
            for name, schema in ENTITIES.items():
                if not schema.to_data_plane:
                    continue
                rows = await (await conn.execute(
                    f"SELECT entity FROM {name} ORDER BY id")).fetchall()
                out[name] = [schema.public(r[0]) for r in rows]
        return out

    async def replace_config(self, config: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
        """Make the database hold exactly `config` (validated entities with ids), in one
        transaction; only real differences reach the change log. Returns counts per op."""
        stats = {"create": 0, "update": 0, "delete": 0, "unchanged": 0}
        async with self.transaction() as tx:
            await tx.conn.execute(_LOCK)
            tx.locked = True
            # The file is checked as a whole: rows may swap unique values on the way.
            await tx.conn.execute("SET CONSTRAINTS ALL DEFERRED")
            current: dict[str, dict[str, dict[str, Any]]] = {}
            for name, schema in ENTITIES.items():
                if not schema.to_data_plane:
                    continue
                rows = await (await tx.conn.execute(f"SELECT entity FROM {name}")).fetchall()
                current[name] = {r[0]["id"]: r[0] for r in rows}
            for name in reversed(list(current)):
                wanted = {e["id"] for e in config.get(name, [])}
                for entity_id, entity in current[name].items():
                    if entity_id not in wanted:
                        await self._delete_row(tx, ENTITIES[name], entity)
                        stats["delete"] += 1
            for name in current:
                await self._bulk_upsert(tx, ENTITIES[name], config.get(name, []),
                                        current[name], stats)
        return stats

    async def _delete_row(self, tx: _Tx, schema: EntitySchema, entity: dict[str, Any]) -> None:
        await tx.conn.execute(f"DELETE FROM {schema.name} WHERE id = %s", (entity["id"],))
        await self._log(tx, "delete", schema, entity["id"], entity, None)

    async def _bulk_upsert(
        self, tx: _Tx, schema: EntitySchema, entities: Iterable[dict[str, Any]],
        current: dict[str, dict[str, Any]], stats: dict[str, int],
    ) -> None:
        cols = _columns(schema)
        names = ["id", "tags", "created_at", "entity", *cols]
        rows, log = [], []
        for entity in entities:
            stored = _stored(schema, entity)
            old = current.get(entity["id"])
            if old is not None and _same(old, stored):
                stats["unchanged"] += 1
                continue
            values: list[Any] = [entity["id"], entity.get("tags"), entity.get("created_at") or 0,
                                 Jsonb(stored)]
            for col in cols:
                if col == "cache_key":
                    values.append(cache_key(schema, entity))
                elif col.endswith("_id") and col[:-3] in schema.foreign_fields():
                    ref = entity.get(col[:-3])
                    values.append(ref["id"] if ref else None)
                else:
                    values.append(entity.get(col))
            rows.append(values)
            op = "update" if old is not None else "create"
            stats[op] += 1
            log.append((op, schema.name, entity["id"], _json(old), Jsonb(stored)))
        if not rows:
            return
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names if n != "id")
        async with tx.conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO {schema.name} ({', '.join(names)}) "
                f"VALUES ({', '.join(['%s'] * len(names))}) "
                f"ON CONFLICT (id) DO UPDATE SET {updates}", rows)
            await cur.executemany(
                "INSERT INTO change_log (id, op, entity_type, entity_id, old_entity, new_entity) "
                "VALUES (nextval('change_log_id_seq'), %s, %s, %s, %s, %s)", log)
        tx.logged = True


def _same(old: dict[str, Any], new: dict[str, Any]) -> bool:
    ignore = ("created_at", "updated_at")
    return {k: v for k, v in old.items() if k not in ignore} == {
        k: v for k, v in new.items() if k not in ignore}


def _json(value: dict[str, Any] | None) -> Jsonb | None:
    return Jsonb(value) if value is not None else None


def _with(data: Any, forced: dict[str, Any] | None) -> Any:
    if forced and isinstance(data, dict):
        return {**data, **forced}
    return data


def _take_token(schema: EntitySchema, entity: dict[str, Any], *, generate: bool) -> str | None:
    """Pull a write-only token out of the entity; make one for a new admin that gave none."""
    if "token" not in schema.fields:
        return None
    token = entity.pop("token", None)
    if token is None and generate:
        token = secrets.token_urlsafe(32)
    return token


def _drop_untouched_virtual(schema: EntitySchema, data: Any, entity: dict[str, Any]) -> dict:
    """A certificate's `snis` are only rewritten when the request names them."""
    if schema.name == "certificates" and not (isinstance(data, dict) and "snis" in data):
        entity.pop("snis", None)
    return entity


def _unique_error(exc: pgerrors.UniqueViolation) -> UniqueViolation:
    table = exc.diag.table_name or ""
    constraint = exc.diag.constraint_name or ""
    schema = ENTITIES.get(table)
    detail = exc.diag.message_detail or ""
    value = detail.split("=(", 1)[1].rsplit(")", 1)[0] if "=(" in detail else None
    if schema is not None and constraint.endswith("_cache_key_key") and schema.cache_key:
        parts = (value or "").split(":")[1:]
        key: dict[str, Any] = {}
        for k, v in zip(schema.cache_key, parts, strict=False):
            is_ref = schema.fields[k].type == "foreign"
            key[k] = ({"id": v} if v else None) if is_ref else v
        return UniqueViolation(key)
    field = constraint.removeprefix(f"{table}_").removesuffix("_key")
    if field == "p":  # <table>_pkey
        field = "id"
    return UniqueViolation({field: value})


def _foreign_error(exc: pgerrors.ForeignKeyViolation) -> ForeignKeyViolation:
    table = exc.diag.table_name or ""
    constraint = exc.diag.constraint_name or ""
    for name, schema in ENTITIES.items():
        for fk, f in schema.foreign_fields().items():
            if constraint == f"{name}_{fk}_id_fkey":
                if table == name:
                    return ForeignKeyViolation(f"the foreign key does not reference an existing "
                                               f"'{f.reference}' entity.", {fk: None})
                return ForeignKeyViolation.referenced_by(name, f.reference or "")
    return ForeignKeyViolation("foreign key violation")
