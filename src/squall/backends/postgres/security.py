"""API keys, daily counts and secret ciphertexts on PostgreSQL (squall.backends.
security_store): tables `security_*` in the app store's schema (`?schema=`, default
"squall"), created on first use like the other tables there (connect.setup), so every node
of a cluster reads and counts the same rows."""

from __future__ import annotations

from typing import Any, Callable

from ..security_store import TABLES, SqlSecurityRecords
from .database import Database


class _Conn:
    """sqlite3's "?" placeholders on a psycopg connection."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, query: str, args: tuple = ()) -> Any:
        return self.conn.execute(query.replace("?", "%s"), args)


class PgSecurityRecords(SqlSecurityRecords):
    def __init__(self, url: str) -> None:
        # 2 connections: the key poller and one quota count or CLI call at a time
        self.db = Database(url, tables=TABLES, role="squall-security", pool_size=2)
        self.where = self.db.where

    def _write(self, what: str, fn: Callable[[Any], Any]) -> Any:
        with self.db.transaction(f"cannot {what}") as conn:
            return fn(_Conn(conn))

    def _read(self, what: str, sql: str, args: tuple = ()) -> list[tuple]:
        return self.db.rows(f"cannot {what}", sql.replace("?", "%s"), args)

    def close(self) -> None:
        self.db.close()
