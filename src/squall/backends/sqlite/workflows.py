"""The embedded workflow store: SQLite (WAL, synchronous=FULL by default).

One connection guarded by a lock; each call is one transaction. A step checkpoint is one
`append` = one commit = one fsync of the WAL.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..workflow_store import (RUNNING, Execution, ExecutionExists, Handoff, HistoryEvent,
                              InboxItem, WorkflowStoreError, handoffs_query, plan_append)
from .tx import immediate

_SCHEMA = """
CREATE TABLE IF NOT EXISTS wf_executions (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    error TEXT,
    parent TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    length INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS wf_executions_by_status ON wf_executions(status, created_at);
CREATE INDEX IF NOT EXISTS wf_executions_by_name ON wf_executions(name, created_at);
CREATE TABLE IF NOT EXISTS wf_history (
    execution_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (execution_id, seq)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS wf_history_immutable BEFORE UPDATE ON wf_history
BEGIN SELECT RAISE(ABORT, 'workflow history is append-only'); END;
CREATE TABLE IF NOT EXISTS wf_inbox (
    id INTEGER PRIMARY KEY,
    execution_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS wf_handoffs (
    id INTEGER PRIMARY KEY,
    execution_id TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL
);
"""

_EXEC_COLS = "id, name, kind, status, input, output, error, parent, created_at, updated_at, length"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _row(r: tuple) -> Execution:
    return Execution(id=r[0], name=r[1], kind=r[2], status=r[3],
                     input=json.loads(r[4]) if r[4] is not None else None,
                     output=json.loads(r[5]) if r[5] is not None else None,
                     error=json.loads(r[6]) if r[6] is not None else None,
                     parent=r[7], created_at=r[8], updated_at=r[9], length=r[10])


class SqliteWorkflowStore:
    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time,
                 synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.clock = clock
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 timeout=30.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise WorkflowStoreError(f"cannot open the workflow store at {self.path}: "
                                     f"{exc}") from exc
        self._db = db
        self._lock = threading.Lock()

    def _tx(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            try:
                with immediate(self._db) as db:
                    return fn(db)
            except sqlite3.Error as exc:
                raise WorkflowStoreError(f"workflow store {self.path}: {exc}") from exc

    def create(self, execution: Execution, events: Sequence[tuple[str, dict[str, Any]]]
               ) -> Execution:
        now = self.clock()

        def go(db: sqlite3.Connection) -> Execution:
            if db.execute("SELECT 1 FROM wf_executions WHERE id = ?",
                          (execution.id,)).fetchone():
                raise ExecutionExists(f"execution {execution.id!r} already exists")
            db.execute(f"INSERT INTO wf_executions ({_EXEC_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (execution.id, execution.name, execution.kind, RUNNING,
                        _dumps(execution.input), None, None, execution.parent, now, now,
                        len(events)))
            db.executemany("INSERT INTO wf_history VALUES (?,?,?,?,?)",
                           [(execution.id, i + 1, t, _dumps(d), now)
                            for i, (t, d) in enumerate(events)])
            return _row(db.execute(f"SELECT {_EXEC_COLS} FROM wf_executions WHERE id = ?",
                                   (execution.id,)).fetchone())

        return self._tx(go)

    def get(self, execution_id: str) -> Execution | None:
        with self._lock:
            r = self._db.execute(f"SELECT {_EXEC_COLS} FROM wf_executions WHERE id = ?",
                                 (execution_id,)).fetchone()
        return _row(r) if r else None

    def history(self, execution_id: str, after: int = 0) -> list[HistoryEvent]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, type, data, ts FROM wf_history WHERE execution_id = ? AND seq > ? "
                "ORDER BY seq", (execution_id, after)).fetchall()
        return [HistoryEvent(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

    def append(self, execution_id: str, events: Sequence[tuple[str, dict[str, Any]]], *,
               expected_length: int | None = None, status: str | None = None,
               output: Any = None, error: dict[str, Any] | None = None) -> int:
        now = self.clock()

        def go(db: sqlite3.Connection) -> int:
            found = db.execute("SELECT length, status FROM wf_executions WHERE id = ?",
                               (execution_id,)).fetchone()
            new_len, rows = plan_append(execution_id, found, events, expected_length, now,
                                        _dumps)
            db.executemany("INSERT INTO wf_history VALUES (?,?,?,?,?)", rows)
            if status is not None:
                db.execute("UPDATE wf_executions SET length = ?, updated_at = ?, status = ?, "
                           "output = ?, error = ? WHERE id = ?",
                           (new_len, now, status, _dumps(output),
                            _dumps(error) if error is not None else None, execution_id))
            else:
                db.execute("UPDATE wf_executions SET length = ?, updated_at = ? WHERE id = ?",
                           (new_len, now, execution_id))
            return new_len

        return self._tx(go)

    def list(self, *, name: str | None = None, status: str | None = None,
             limit: int = 100) -> list[Execution]:
        sql, args = f"SELECT {_EXEC_COLS} FROM wf_executions WHERE 1=1", []
        if name is not None:
            sql += " AND name = ?"
            args.append(name)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_row(r) for r in rows]

    def post(self, execution_id: str, kind: str, data: dict[str, Any]) -> int:
        return self._tx(lambda db: db.execute(
            "INSERT INTO wf_inbox (execution_id, kind, data) VALUES (?,?,?)",
            (execution_id, kind, _dumps(data))).lastrowid)

    def inbox(self, limit: int = 100) -> list[InboxItem]:
        with self._lock:
            rows = self._db.execute("SELECT id, execution_id, kind, data FROM wf_inbox "
                                    "ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [InboxItem(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def done(self, item_ids: Sequence[int]) -> None:
        if item_ids:
            self._tx(lambda db: db.executemany("DELETE FROM wf_inbox WHERE id = ?",
                                               [(i,) for i in item_ids]))

    def hand_off(self, execution_id: str, data: dict[str, Any]) -> None:
        self._tx(lambda db: db.execute(
            "INSERT INTO wf_handoffs (execution_id, data) VALUES (?, ?) "
            "ON CONFLICT (execution_id) DO UPDATE SET data = excluded.data",
            (execution_id, _dumps(data))))

    def handoffs(self, execution_id: str | None = None, limit: int = 1000, *,
                 ended: bool = False) -> list[Handoff]:
        sql, args = handoffs_query(execution_id, limit, ended, "?")
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [Handoff(r[0], json.loads(r[1])) for r in rows]

    def drop_handoff(self, execution_id: str) -> None:
        self._tx(lambda db: db.execute("DELETE FROM wf_handoffs WHERE execution_id = ?",
                                       (execution_id,)))

    def close(self) -> None:
        with self._lock:
            self._db.close()
