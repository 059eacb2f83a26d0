"""Spans, alert states, gauge samples and windowed invocation reads on PostgreSQL: a
mixin of PgStore, with the same semantics as squall.backends.sqlite.telemetry (several
nodes write here)."""

from __future__ import annotations

from typing import Any

from ..base import SPAN_FIELDS, StoreError, span_row
from .connect import psycopg, translate

TABLES = (
    """CREATE TABLE IF NOT EXISTS spans (
        trace_id text NOT NULL,
        span_id text NOT NULL,
        parent_id text,
        app text NOT NULL,
        name text NOT NULL,
        kind text NOT NULL,
        function text,
        start double precision NOT NULL,
        duration_ms double precision NOT NULL,
        status text NOT NULL,
        attributes text NOT NULL,
        PRIMARY KEY (trace_id, span_id))""",
    "CREATE INDEX IF NOT EXISTS spans_by_time ON spans (app, start)",
    """CREATE TABLE IF NOT EXISTS alert_states (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        app text NOT NULL,
        rule text NOT NULL,
        state text NOT NULL,
        at double precision NOT NULL,
        value double precision,
        message text NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS alert_states_by_app ON alert_states (app, id)",
    """CREATE TABLE IF NOT EXISTS gauge_samples (
        app text NOT NULL,
        name text NOT NULL,
        subject text NOT NULL,
        at double precision NOT NULL,
        value double precision NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS gauge_samples_by_time ON gauge_samples (app, name, at)",
)

_SPAN_COLUMNS = ", ".join(SPAN_FIELDS)
_SPAN_UPSERT = (
    f"INSERT INTO spans ({_SPAN_COLUMNS}) VALUES ({', '.join(['%s'] * len(SPAN_FIELDS))}) "
    "ON CONFLICT (trace_id, span_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in SPAN_FIELDS[2:]))
_METRIC_COLUMNS = ("function, started_at, duration_ms, billed_ms, memory_mb, cold, init_ms, "
                   "status, trigger")


class PgTelemetry:
    """Needs `self._lock`, `self._connection()` and `self.target` (PgStore)."""

    _lock: Any
    target: Any

    def _connection(self) -> Any:  # pragma: no cover - PgStore provides it
        raise NotImplementedError

    def _run(self, what: str, sql: str, args: Any = (), *, many: bool = False,
             fetch: bool = False) -> Any:
        with self._lock:
            try:
                db = self._connection()
                if many:
                    with db.transaction(), db.cursor() as cur:
                        cur.executemany(sql, args)
                        return cur.rowcount
                with db.transaction():
                    cur = db.execute(sql, args)
                    return cur.fetchall() if fetch else cur.rowcount
            except psycopg.Error as exc:
                raise translate(exc, self.target, f"cannot {what}", StoreError) from exc

    def record_spans(self, rows: list[tuple | list]) -> None:
        if rows:
            self._run("write spans", _SPAN_UPSERT, [span_row(r) for r in rows], many=True)

    def spans(self, trace_id: str) -> list[tuple]:
        return self._run("read spans", f"SELECT {_SPAN_COLUMNS} FROM spans WHERE trace_id = %s "
                         "ORDER BY start, duration_ms DESC", [trace_id], fetch=True)

    def trace_ids(self, app: str, *, since: float = 0.0, limit: int = 50) -> list[tuple]:
        return self._run(
            "read traces",
            "SELECT trace_id, MIN(start), MAX(start + duration_ms / 1000.0), COUNT(*), "
            "SUM(CASE WHEN status != 'ok' THEN 1 ELSE 0 END) FROM spans "
            "WHERE app = %s AND start >= %s GROUP BY trace_id ORDER BY MIN(start) DESC LIMIT %s",
            [app, since, limit], fetch=True)

    def invocation_window(self, app: str, since: float, until: float,
                          function: str | None = None) -> list[tuple]:
        sql = (f"SELECT {_METRIC_COLUMNS} FROM invocations WHERE app = %s AND started_at >= %s "
               "AND started_at < %s")
        args: list[Any] = [app, since, until]
        if function:
            sql += " AND function = %s"
            args.append(function)
        return self._run("read the invocation log", sql + " ORDER BY started_at", args,
                         fetch=True)

    def record_alert(self, app: str, rule: str, state: str, at: float, value: float | None,
                     message: str) -> None:
        self._run("write an alert state",
                  "INSERT INTO alert_states (app, rule, state, at, value, message) "
                  "VALUES (%s, %s, %s, %s, %s, %s)", [app, rule, state, at, value, message])

    def alert_states(self, app: str, *, limit: int = 100) -> list[tuple]:
        return self._run("read alert states",
                         "SELECT rule, state, at, value, message FROM alert_states "
                         "WHERE app = %s ORDER BY id DESC LIMIT %s", [app, limit], fetch=True)

    def record_gauges(self, rows: list[tuple]) -> None:
        if rows:
            self._run("write gauge samples", "INSERT INTO gauge_samples "
                      "(app, name, subject, at, value) VALUES (%s, %s, %s, %s, %s)",
                      rows, many=True)

    def gauge_samples(self, app: str, name: str, since: float, until: float,
                      subject: str | None = None) -> list[tuple]:
        sql = ("SELECT subject, at, value FROM gauge_samples WHERE app = %s AND name = %s "
               "AND at >= %s AND at < %s")
        args: list[Any] = [app, name, since, until]
        if subject is not None:
            sql += " AND subject = %s"
            args.append(subject)
        return self._run("read gauge samples", sql + " ORDER BY subject, at", args,
                         fetch=True)

    def prune_gauges(self, app: str, before: float) -> int:
        return self._run("apply the gauge retention",
                         "DELETE FROM gauge_samples WHERE app = %s AND at < %s", [app, before])

    def prune(self, app: str, before: float) -> int:
        self._run("apply retention", "DELETE FROM logs WHERE app = %s AND ts < %s",
                  [app, before])
        self._run("apply retention", "DELETE FROM spans WHERE app = %s AND start < %s",
                  [app, before])
        return self._run("apply retention",
                         "DELETE FROM invocations WHERE app = %s AND started_at < %s",
                         [app, before])
