"""Spans, alert states and windowed reads of the invocation log, on the embedded store.

A mixin of SqliteStore (same connection, same lock): the trace store (one row per span,
written in batches like the invocation log), the alert-state history, the sampled gauges
(queue depths and the like over time), the raw rows the metrics and cost queries
aggregate (squall.observe does the arithmetic: percentiles and prices live above the
Protocol, once for every backend), and retention.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import Any, Iterator

from ..base import SPAN_FIELDS, StoreError, span_row
from .tx import immediate

SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT,
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    function TEXT,
    start REAL NOT NULL,
    duration_ms REAL NOT NULL,
    status TEXT NOT NULL,
    attributes TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_by_time ON spans(app, start);
CREATE TABLE IF NOT EXISTS alert_states (
    id INTEGER PRIMARY KEY,
    app TEXT NOT NULL,
    rule TEXT NOT NULL,
    state TEXT NOT NULL,
    at REAL NOT NULL,
    value REAL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_states_by_app ON alert_states(app, id);
CREATE TABLE IF NOT EXISTS gauge_samples (
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    subject TEXT NOT NULL,
    at REAL NOT NULL,
    value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS gauge_samples_by_time ON gauge_samples(app, name, at);
"""

_SPAN_COLUMNS = ", ".join(SPAN_FIELDS)
METRIC_COLUMNS = ("function, started_at, duration_ms, billed_ms, memory_mb, cold, init_ms, "
                  "status, trigger")


class SqliteTelemetry:
    """Needs `self._db` (sqlite3 connection), `self._lock` and `self._query` (SqliteStore)."""

    _db: sqlite3.Connection
    _lock: Any

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction under the store's lock; SQLite errors become StoreError
        ("cannot write {what}: …")."""
        try:
            with self._lock, immediate(self._db) as db:
                yield db
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write {what}: {exc}") from exc

    def _write(self, sql: str, rows: list[tuple | list], what: str) -> None:
        with self._transaction(what) as db:
            db.executemany(sql, rows)

    def record_spans(self, rows: list[tuple | list]) -> None:
        """Spans in SPAN_FIELDS order; a span recorded again (a workflow that finished)
        replaces the earlier row."""
        if rows:
            marks = ",".join("?" * len(SPAN_FIELDS))
            self._write(f"INSERT OR REPLACE INTO spans ({_SPAN_COLUMNS}) VALUES ({marks})",
                        [span_row(r) for r in rows], "spans")

    def spans(self, trace_id: str) -> list[tuple]:
        return self._query(f"SELECT {_SPAN_COLUMNS} FROM spans WHERE trace_id = ? "
                           "ORDER BY start, duration_ms DESC", [trace_id])

    def trace_ids(self, app: str, *, since: float = 0.0, limit: int = 50) -> list[tuple]:
        """(trace_id, first start, last end, spans, errors) of the newest traces."""
        return self._query(
            "SELECT trace_id, MIN(start), MAX(start + duration_ms / 1000.0), COUNT(*), "
            "SUM(status != 'ok') FROM spans WHERE app = ? AND start >= ? "
            "GROUP BY trace_id ORDER BY MIN(start) DESC LIMIT ?", [app, since, limit])

    def invocation_window(self, app: str, since: float, until: float,
                          function: str | None = None) -> list[tuple]:
        """Invocations started in [since, until): METRIC_COLUMNS, oldest first."""
        sql = f"SELECT {METRIC_COLUMNS} FROM invocations WHERE app = ? AND started_at >= ? " \
              "AND started_at < ?"
        args: list = [app, since, until]
        if function:
            sql += " AND function = ?"
            args.append(function)
        return self._query(sql + " ORDER BY started_at", args)

    def record_alert(self, app: str, rule: str, state: str, at: float, value: float | None,
                     message: str) -> None:
        self._write("INSERT INTO alert_states (app, rule, state, at, value, message) "
                    "VALUES (?,?,?,?,?,?)", [(app, rule, state, at, value, message)],
                    "an alert state")

    def alert_states(self, app: str, *, limit: int = 100) -> list[tuple]:
        """(rule, state, at, value, message), newest first."""
        return self._query("SELECT rule, state, at, value, message FROM alert_states "
                           "WHERE app = ? ORDER BY id DESC LIMIT ?", [app, limit])

    def record_gauges(self, rows: list[tuple]) -> None:
        if rows:
            self._write("INSERT INTO gauge_samples (app, name, subject, at, value) "
                        "VALUES (?,?,?,?,?)", rows, "gauge samples")

    def gauge_samples(self, app: str, name: str, since: float, until: float,
                      subject: str | None = None) -> list[tuple]:
        sql = "SELECT subject, at, value FROM gauge_samples WHERE app = ? AND name = ? " \
              "AND at >= ? AND at < ?"
        args: list = [app, name, since, until]
        if subject is not None:
            sql += " AND subject = ?"
            args.append(subject)
        return self._query(sql + " ORDER BY subject, at", args)

    def prune_gauges(self, app: str, before: float) -> int:
        with self._transaction("the gauge retention (deletes)") as db:
            return db.execute("DELETE FROM gauge_samples WHERE app = ? AND at < ?",
                              [app, before]).rowcount

    def prune(self, app: str, before: float) -> int:
        """Retention: drop invocations, their output and spans older than `before`."""
        with self._transaction("the retention (deletes)") as db:
            db.execute("DELETE FROM logs WHERE app = ? AND ts < ?", [app, before])
            n = db.execute("DELETE FROM invocations WHERE app = ? AND started_at < ?",
                           [app, before]).rowcount
            db.execute("DELETE FROM spans WHERE app = ? AND start < ?", [app, before])
        return n
