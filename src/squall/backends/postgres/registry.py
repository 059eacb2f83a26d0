"""The platform registry on PostgreSQL: every node of a cluster reads the same apps,
versions (with their packages, as bytea), aliases and history, and reports what it runs.
The tables live in the store URL's schema (`?schema=`, default "squall"); each app's own
data goes to schemas of its own (squall.platform.namespaces)."""

from __future__ import annotations

from typing import Any, Callable

from ..base import StoreError
from ..registry import SqlRegistry
from .connect import check_schema_name, sql
from .database import Database

_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BIGINT NOT NULL)",
    "INSERT INTO meta (k, v) VALUES ('revision', 0) ON CONFLICT (k) DO NOTHING",
    "CREATE TABLE IF NOT EXISTS apps (name TEXT PRIMARY KEY, created_at DOUBLE PRECISION "
    "NOT NULL, quotas TEXT NOT NULL, next_version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS versions (app TEXT NOT NULL, version INTEGER NOT NULL, "
    "record TEXT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (app, version))",
    "CREATE TABLE IF NOT EXISTS packages (sha256 TEXT PRIMARY KEY, data BYTEA NOT NULL)",
    "CREATE TABLE IF NOT EXISTS aliases (app TEXT NOT NULL, name TEXT NOT NULL, "
    "record TEXT NOT NULL, PRIMARY KEY (app, name))",
    "CREATE TABLE IF NOT EXISTS history (id BIGSERIAL PRIMARY KEY, app TEXT NOT NULL, "
    "at DOUBLE PRECISION NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS history_by_app ON history (app, id)",
    "CREATE TABLE IF NOT EXISTS nodes (node TEXT PRIMARY KEY, at DOUBLE PRECISION NOT NULL, "
    "state TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS grants (app TEXT NOT NULL, caller TEXT NOT NULL, "
    "functions TEXT NOT NULL, PRIMARY KEY (app, caller))",
)


class _Conn:
    """sqlite3's "?" placeholders on a psycopg connection."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, query: str, args: tuple = ()) -> Any:
        return self.conn.execute(query.replace("?", "%s"), args)


class PgRegistry(SqlRegistry):
    def __init__(self, url: str) -> None:
        self.db = Database(url, tables=_TABLES, role="squall-platform", pool_size=2)

    def _write(self, fn: Callable[[Any], Any], bump: bool = True) -> Any:
        with self.db.transaction("cannot change the platform registry") as conn:
            out = fn(_Conn(conn))
            if bump:
                conn.execute("UPDATE meta SET v = v + 1 WHERE k = 'revision'")
            return out

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        rows = self.db.rows("cannot read the platform registry", sql.replace("?", "%s"), args)
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]

    def schema_bytes(self, schema: str) -> int:
        """What an app's schema holds on disk (tables with their indexes and TOAST)."""
        rows = self.db.rows(
            f"cannot measure schema {schema!r}",
            "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'm')", (schema,))
        return int(rows[0][0])

    def drop_schema(self, schema: str) -> None:
        """Delete an app's data on the shared store (its schema, CASCADE)."""
        check_schema_name(schema, StoreError)
        with self.db.connection(f"cannot drop schema {schema!r}") as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))

    def close(self) -> None:
        self.db.close()
