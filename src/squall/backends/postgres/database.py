"""A lazily opened, synchronous connection pool on one schema, for the blocking stores
(the state store and the cache: the state service runs them on its thread pool).

The constructor only checks the URL and the schema name; the first call connects, sets
up the schema's tables (connect.setup: skipped when they are all there, else created
under the advisory lock that serialises concurrent set-ups; then adds the `columns` a
schema made by an older Squall lacks) and opens a
psycopg_pool.ConnectionPool whose connections use the schema (search_path) and are in
autocommit mode: one statement is one transaction unless `transaction()` opens one.

psycopg's errors come out as StoreError saying what failed, where (host:port/database,
never the password) and what to do (connect.translate). Errors raised by the caller's
own code inside a transaction (a write plan's ConditionFailed) roll it back and pass
through unchanged. A call that meets a broken connection (the server restarted) has the
pool check its idle connections before the error is raised, so the retry gets a live one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from ..base import StoreError
from .connect import (
    Target,
    check_schema_name,
    connection_lost,
    parse_url,
    psycopg,
    psycopg_pool,
    search_path,
    setup,
    sql,
    translate,
)

POOL_TIMEOUT_S = 10.0  # longest wait for a free (or new) pooled connection


class Database:
    def __init__(self, url: str, *, tables: Sequence[str], role: str, pool_size: int,
                 schema: str | None = None, session: Sequence[str] = (),
                 columns: Sequence[tuple[str, str, str]] = ()) -> None:
        """`tables`: the CREATE … IF NOT EXISTS statements of this schema's relations;
        `role`: what the connections are, in pg_stat_activity ("squall-state:<schema>");
        `session`: SET statements run on every new pooled connection; `columns`: (table,
        column, type) added since the table was first released, added on open to a
        schema made before them."""
        self.target: Target = parse_url(url, StoreError)
        if schema is not None:
            check_schema_name(schema, StoreError)
        self.schema = schema or self.target.schema
        self.tables = tuple(tables)
        self.session = tuple(session)
        self.columns = tuple(columns)
        self.app_name = f"{role}:{self.schema}"
        self.pool_size = pool_size
        self._pool: psycopg_pool.ConnectionPool | None = None
        self._opening = threading.Lock()
        self._closed = False

    @property
    def where(self) -> str:
        return f"PostgreSQL at {self.target.where} (schema {self.schema!r})"

    def connect(self) -> psycopg.Connection:
        """A connection of its own (not pooled), autocommit, in the schema."""
        conn = psycopg.connect(self.target.url, **self.target.kwargs(self.app_name))
        try:
            conn.execute(search_path(self.schema))
        except BaseException:
            conn.close()
            raise
        return conn

    def _open(self) -> psycopg_pool.ConnectionPool:
        pool = self._pool
        if pool is not None and not self._closed:
            return pool
        with self._opening:
            if self._closed:
                raise StoreError(f"the store on {self.where} is closed")
            if self._pool is None:
                with psycopg.connect(self.target.url,
                                     **self.target.kwargs(self.app_name)) as conn:
                    complete, params, statements = setup(self.schema, self.tables)
                    if not conn.execute(complete, params).fetchone()[0]:
                        with conn.transaction():
                            for stmt in statements:
                                conn.execute(stmt)
                    self._add_columns(conn)
                pool = psycopg_pool.ConnectionPool(
                    self.target.url, open=False, min_size=1, max_size=self.pool_size,
                    kwargs=self.target.kwargs(self.app_name), configure=self._configure,
                    timeout=POOL_TIMEOUT_S, name=self.app_name)
                pool.open()
                self._pool = pool
            return self._pool

    def _add_columns(self, conn: psycopg.Connection) -> None:
        """Bring an older schema's tables up to date (reads the catalog only when nothing
        is missing, the usual case; else adds them under an advisory lock)."""
        if not self.columns:
            return
        have = {(t, c) for t, c in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = ANY(%s)",
            (self.schema, [t for t, _, _ in self.columns])).fetchall()}
        missing = [(t, c, ty) for t, c, ty in self.columns if (t, c) not in have]
        if not missing:
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                         (f"squall-columns:{self.schema}",))
            for table, column, type_ in missing:
                conn.execute(sql.SQL("ALTER TABLE {}.{} ADD COLUMN IF NOT EXISTS {} {}").format(
                    sql.Identifier(self.schema), sql.Identifier(table),
                    sql.Identifier(column), sql.SQL(type_)))

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute(search_path(self.schema))
        for stmt in self.session:
            conn.execute(stmt)

    @contextlib.contextmanager
    def connection(self, what: str) -> Iterator[psycopg.Connection]:
        """A pooled connection; psycopg's errors come out as StoreError saying `what`
        failed."""
        try:
            with self._open().connection() as conn:
                yield conn
        except psycopg.Error as exc:
            if connection_lost(exc):
                self.check()
            raise translate(exc, self.target, what, StoreError) from exc

    @contextlib.contextmanager
    def transaction(self, what: str) -> Iterator[psycopg.Connection]:
        """A pooled connection inside BEGIN … COMMIT (rolled back if the body raises)."""
        with self.connection(what) as conn, conn.transaction():
            yield conn

    def rows(self, what: str, query: Any, params: Any = None) -> list[tuple]:
        with self.connection(what) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def count(self, what: str, query: Any, params: Any = None) -> int:
        with self.connection(what) as conn:
            return conn.execute(query, params).rowcount

    def check(self) -> None:
        """Drop the pool's dead connections (after a server restart every idle one is)."""
        pool = self._pool
        if pool is not None:
            with contextlib.suppress(psycopg.Error, psycopg_pool.PoolClosed):
                pool.check()

    def close(self) -> None:
        with self._opening:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
