"""The embedded store: SQLite in WAL mode under the data directory.

One connection, used from one thread at a time (callers serialise; the server runs it on
a dedicated executor thread). The invocation log is written in batches, so metering
never sits on an invocation's path.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from ..base import ROW_FIELDS, InvocationRecord, LogLine, StoreError
from .telemetry import SCHEMA as _TELEMETRY_SCHEMA, SqliteTelemetry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS invocations (
    request_id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    function TEXT NOT NULL,
    trigger TEXT NOT NULL,
    started_at REAL NOT NULL,
    duration_ms REAL NOT NULL,
    billed_ms INTEGER NOT NULL,
    memory_mb INTEGER NOT NULL,
    max_memory_mb INTEGER NOT NULL,
    cold INTEGER NOT NULL,
    init_ms REAL,
    status TEXT NOT NULL,
    error_type TEXT,
    error_message TEXT
);
CREATE INDEX IF NOT EXISTS invocations_by_function ON invocations(app, function, started_at);
CREATE INDEX IF NOT EXISTS invocations_by_time ON invocations(app, started_at);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    app TEXT NOT NULL,
    function TEXT NOT NULL,
    ts REAL NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_request ON logs(request_id);
CREATE INDEX IF NOT EXISTS logs_by_function ON logs(app, function, id);
"""

_COLUMNS = ("request_id, app, function, trigger, started_at, duration_ms, billed_ms, memory_mb, "
            "max_memory_mb, cold, init_ms, status, error_type, error_message")


class SqliteStore(SqliteTelemetry):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        db = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 timeout=10.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA + _TELEMETRY_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            if db is not None:
                db.close()
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
        self._db = db
        self._lock = threading.Lock()

    def record(self, rows: list[InvocationRecord]) -> None:
        self.record_rows([[getattr(r, f) for f in ROW_FIELDS] for r in rows])

    def record_rows(self, rows: list[tuple | list]) -> None:
        """Rows in ROW_FIELDS order (durations are rounded here, off the request path)."""
        if not rows:
            return
        inv = [
            (r[0], r[1], r[2], r[3], r[4], round(r[5], 3), r[6], r[7], r[8], int(r[9]),
             round(r[10], 3) if r[10] is not None else None, r[11], r[12], r[13])
            for r in rows
        ]
        lines = [
            (r[0], r[1], r[2], r[4], line)
            for r in rows if r[14]
            for line in r[14].rstrip("\n").split("\n")
        ]
        with self._transaction("the invocation log") as db:
            # a row recorded again replaces its output instead of repeating it; looked up
            # per batch, so the common case costs one query, not a delete per row
            again = []
            for i in range(0, len(inv), 5000):  # under SQLite's variable limit
                ids = [r[0] for r in inv[i:i + 5000]]
                marks = ",".join("?" * len(ids))
                again += [r[0] for r in db.execute(
                    f"SELECT request_id FROM invocations WHERE request_id IN ({marks})", ids)]
            if again:
                db.executemany("DELETE FROM logs WHERE request_id = ?",
                               [(rid,) for rid in again])
            db.executemany(f"INSERT OR REPLACE INTO invocations ({_COLUMNS}) "
                           "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", inv)
            if lines:
                db.executemany("INSERT INTO logs (request_id, app, function, ts, line) "
                               "VALUES (?,?,?,?,?)", lines)

    def invocations(self, app: str, function: str | None = None, *, limit: int = 50,
                    request_id: str | None = None) -> list[InvocationRecord]:
        sql = f"SELECT {_COLUMNS} FROM invocations WHERE app = ?"
        args: list = [app]
        if function:
            sql += " AND function = ?"
            args.append(function)
        if request_id:
            sql += " AND request_id = ?"
            args.append(request_id)
        sql += " ORDER BY started_at DESC LIMIT ?"
        args.append(limit)
        rows = self._query(sql, args)
        out = []
        for row in reversed(rows):
            fields = list(row)
            fields[9] = bool(fields[9])
            out.append(InvocationRecord(*fields))
        return out

    def logs(self, app: str, function: str | None = None, *, request_id: str | None = None,
             limit: int = 200) -> list[LogLine]:
        sql = "SELECT request_id, function, ts, line FROM logs WHERE app = ?"
        args: list = [app]
        if function:
            sql += " AND function = ?"
            args.append(function)
        if request_id:
            sql += " AND request_id = ?"
            args.append(request_id)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        rows = self._query(sql, args)
        return [LogLine(*r) for r in reversed(rows)]

    def _query(self, sql: str, args: list) -> list[tuple]:
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the invocation log at {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()
