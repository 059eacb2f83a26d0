"""The invocation log on PostgreSQL, behind `open_store("postgresql://…")`.

The same semantics as the embedded store (squall.backends.sqlite.store): rows recorded in
batches, a request id recorded again replaces its row and its output, reads give the
newest N oldest first. Here several nodes write one log.

One connection, used by one thread at a time (a lock; callers run the store on an
executor thread as with SQLite). A connection that broke (the server restarted) fails the
call in flight with StoreError and is replaced on the next call. A batch is one
transaction: the invocations are upserted in one statement from arrays and their log
lines streamed in with COPY. Tables live in the schema `schema` ("squall" unless told),
created on open under an advisory lock so that processes starting together do not trip
over each other's CREATE … IF NOT EXISTS.
"""

from __future__ import annotations

import threading

from ..base import ROW_FIELDS, InvocationRecord, LogLine, StoreError
from .telemetry import TABLES as _TELEMETRY_TABLES, PgTelemetry
from .connect import (
    check_schema_name,
    parse_url,
    psycopg,
    search_path,
    setup,
    translate,
)

_TABLES = (
    """CREATE TABLE IF NOT EXISTS invocations (
        request_id text PRIMARY KEY,
        app text NOT NULL,
        function text NOT NULL,
        trigger text NOT NULL,
        started_at double precision NOT NULL,
        duration_ms double precision NOT NULL,
        billed_ms bigint NOT NULL,
        memory_mb integer NOT NULL,
        max_memory_mb integer NOT NULL,
        cold boolean NOT NULL,
        init_ms double precision,
        status text NOT NULL,
        error_type text,
        error_message text)""",
    "CREATE INDEX IF NOT EXISTS invocations_by_function ON invocations (app, function, started_at)",
    "CREATE INDEX IF NOT EXISTS invocations_by_time ON invocations (app, started_at)",
    """CREATE TABLE IF NOT EXISTS logs (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        request_id text NOT NULL,
        app text NOT NULL,
        function text NOT NULL,
        ts double precision NOT NULL,
        line text NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS logs_by_request ON logs (request_id)",
    "CREATE INDEX IF NOT EXISTS logs_by_function ON logs (app, function, id)",
)

_COLUMNS = ("request_id, app, function, trigger, started_at, duration_ms, billed_ms, memory_mb, "
            "max_memory_mb, cold, init_ms, status, error_type, error_message")
_TYPES = ("text", "text", "text", "text", "float8", "float8", "int8", "int4", "int4", "bool",
          "float8", "text", "text", "text")
_UPSERT = (
    f"INSERT INTO invocations ({_COLUMNS}) SELECT * FROM unnest("
    + ", ".join(f"%s::{t}[]" for t in _TYPES)
    + ") ON CONFLICT (request_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.split(", ")[1:])
)


def _text(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL; a NUL in captured output must not lose the batch."""
    return value.replace("\x00", "\ufffd") if value and "\x00" in value else value


class PgStore(PgTelemetry):
    """The InvocationLog Protocol on one PostgreSQL schema, shared by every node."""

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        """Connects and sets up the tables in `schema`, else the URL's `?schema=`, else
        "squall"."""
        self.target = parse_url(url, StoreError)
        if schema is not None:
            check_schema_name(schema, StoreError)
        self.schema = schema or self.target.schema
        self._lock = threading.Lock()
        self._closed = False
        self._db = self._connect(create=True)

    def _connect(self, *, create: bool = False) -> psycopg.Connection:
        try:
            db = psycopg.connect(self.target.url,
                                 **self.target.kwargs(f"squall-store:{self.schema}"))
        except psycopg.Error as exc:
            raise translate(exc, self.target, "cannot open the store", StoreError) from exc
        try:
            if create:
                complete, params, statements = setup(self.schema, _TABLES + _TELEMETRY_TABLES)
                if not db.execute(complete, params).fetchone()[0]:
                    with db.transaction():
                        for stmt in statements:
                            db.execute(stmt)
            db.execute(search_path(self.schema))
        except psycopg.Error as exc:
            db.close()
            raise translate(exc, self.target, "cannot open the store", StoreError) from exc
        return db

    def _connection(self) -> psycopg.Connection:
        if self._closed:
            raise StoreError(f"the store on PostgreSQL at {self.target.where} is closed")
        if self._db.broken or self._db.closed:
            self._db = self._connect()
        return self._db

    def record(self, rows: list[InvocationRecord]) -> None:
        self.record_rows([[getattr(r, f) for f in ROW_FIELDS] for r in rows])

    def record_rows(self, rows: list[tuple | list]) -> None:
        """Rows in ROW_FIELDS order (durations are rounded here, off the request path).
        A request id twice in one batch keeps its last row, as recording it again does."""
        if not rows:
            return
        latest = list({r[0]: r for r in rows}.values())
        inv = [
            (r[0], r[1], r[2], r[3], r[4], round(r[5], 3), r[6], r[7], r[8], bool(r[9]),
             round(r[10], 3) if r[10] is not None else None, r[11], r[12], _text(r[13]))
            for r in latest
        ]
        lines = [
            (r[0], r[1], r[2], r[4], _text(line))
            for r in latest if r[14]
            for line in r[14].rstrip("\n").split("\n")
        ]
        with self._lock:
            try:
                db = self._connection()
                with db.transaction():
                    ids = [r[0] for r in inv]
                    # a row recorded again replaces its output instead of repeating it
                    db.execute("DELETE FROM logs WHERE request_id = ANY(%s)", (ids,))
                    db.execute(_UPSERT, [list(col) for col in zip(*inv, strict=True)])
                    if lines:
                        with db.cursor().copy("COPY logs (request_id, app, function, ts, line) "
                                              "FROM STDIN") as copy:
                            for line in lines:
                                copy.write_row(line)
            except psycopg.Error as exc:
                raise translate(exc, self.target, "cannot write the invocation log",
                                StoreError) from exc

    def invocations(self, app: str, function: str | None = None, *, limit: int = 50,
                    request_id: str | None = None) -> list[InvocationRecord]:
        rows = self._query(f"SELECT {_COLUMNS} FROM invocations", app, function, request_id,
                           "started_at", limit)
        return [InvocationRecord(*row) for row in rows]

    def logs(self, app: str, function: str | None = None, *, request_id: str | None = None,
             limit: int = 200) -> list[LogLine]:
        rows = self._query("SELECT request_id, function, ts, line FROM logs", app, function,
                           request_id, "id", limit)
        return [LogLine(*row) for row in rows]

    def _query(self, select: str, app: str, function: str | None, request_id: str | None,
               newest_by: str, limit: int) -> list[tuple]:
        """The newest `limit` rows of `app` (by `newest_by`), optionally of one function or
        request, oldest first."""
        query = select + " WHERE app = %s"
        args: list[object] = [app]
        if function:
            query += " AND function = %s"
            args.append(function)
        if request_id:
            query += " AND request_id = %s"
            args.append(request_id)
        query += f" ORDER BY {newest_by} DESC LIMIT %s"
        args.append(limit)
        with self._lock:
            try:
                rows = self._connection().execute(query, args).fetchall()
            except psycopg.Error as exc:
                raise translate(exc, self.target, "cannot read the invocation log",
                                StoreError) from exc
        rows.reverse()
        return rows

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._db.close()
