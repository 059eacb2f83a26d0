"""The workflow store on PostgreSQL (`postgresql://…?schema=…`).

An append locks the execution's row (SELECT … FOR UPDATE), numbers the new history events
after its length and updates it, in one transaction: per-execution histories stay
gap-free with several writers.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Sequence

from ..workflow_store import (RUNNING, Execution, ExecutionExists, Handoff, HistoryEvent,
                              InboxItem, handoffs_query, plan_append)
from .database import Database

TABLES = [
    """CREATE TABLE IF NOT EXISTS wf_executions (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
        input TEXT, output TEXT, error TEXT, parent TEXT,
        created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
        length INTEGER NOT NULL DEFAULT 0, ord BIGSERIAL)""",
    "CREATE INDEX IF NOT EXISTS wf_executions_by_status ON wf_executions (status, created_at)",
    "CREATE INDEX IF NOT EXISTS wf_executions_by_name ON wf_executions (name, created_at)",
    """CREATE TABLE IF NOT EXISTS wf_history (
        execution_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,
        data TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, PRIMARY KEY (execution_id, seq))""",
    """CREATE TABLE IF NOT EXISTS wf_inbox (id BIGSERIAL PRIMARY KEY,
        execution_id TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS wf_handoffs (id BIGSERIAL PRIMARY KEY,
        execution_id TEXT NOT NULL UNIQUE, data TEXT NOT NULL)""",
]

_COLS = "id, name, kind, status, input, output, error, parent, created_at, updated_at, length"
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _row(r: tuple) -> Execution:
    return Execution(id=r[0], name=r[1], kind=r[2], status=r[3],
                     input=json.loads(r[4]) if r[4] is not None else None,
                     output=json.loads(r[5]) if r[5] is not None else None,
                     error=json.loads(r[6]) if r[6] is not None else None,
                     parent=r[7], created_at=r[8], updated_at=r[9], length=r[10])


class PgWorkflowStore:
    def __init__(self, url: str, *, clock: Callable[[], float] = time.time,
                 schema: str | None = None, pool_size: int = 8) -> None:
        self.db = Database(url, tables=TABLES, role="squall-workflows", pool_size=pool_size,
                           schema=schema)
        self.clock = clock

    def create(self, execution: Execution, events: Sequence[tuple[str, dict[str, Any]]]
               ) -> Execution:
        now = self.clock()
        with self.db.transaction("create a workflow execution") as conn:
            r = conn.execute(
                f"INSERT INTO wf_executions ({_COLS}) VALUES (%s,%s,%s,%s,%s,NULL,NULL,%s,%s,%s,"
                f"%s) ON CONFLICT (id) DO NOTHING RETURNING {_COLS}",
                (execution.id, execution.name, execution.kind, RUNNING, _dumps(execution.input),
                 execution.parent, now, now, len(events))).fetchone()
            if r is None:
                raise ExecutionExists(f"execution {execution.id!r} already exists")
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO wf_history VALUES (%s,%s,%s,%s,%s)",
                                [(execution.id, i + 1, t, _dumps(d), now)
                                 for i, (t, d) in enumerate(events)])
            return _row(r)

    def get(self, execution_id: str) -> Execution | None:
        r = self.db.rows("read a workflow execution",
                         f"SELECT {_COLS} FROM wf_executions WHERE id = %s", (execution_id,))
        return _row(r[0]) if r else None

    def history(self, execution_id: str, after: int = 0) -> list[HistoryEvent]:
        rows = self.db.rows("read a workflow history",
                            "SELECT seq, type, data, ts FROM wf_history WHERE execution_id = %s "
                            "AND seq > %s ORDER BY seq", (execution_id, after))
        return [HistoryEvent(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

    def append(self, execution_id: str, events: Sequence[tuple[str, dict[str, Any]]], *,
               expected_length: int | None = None, status: str | None = None,
               output: Any = None, error: dict[str, Any] | None = None) -> int:
        now = self.clock()
        with self.db.transaction("append to a workflow history") as conn:
            found = conn.execute("SELECT length, status FROM wf_executions WHERE id = %s "
                                 "FOR UPDATE", (execution_id,)).fetchone()
            new_len, rows = plan_append(execution_id, found, events, expected_length, now,
                                        _dumps)
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO wf_history VALUES (%s,%s,%s,%s,%s)", rows)
            if status is not None:
                conn.execute("UPDATE wf_executions SET length = %s, updated_at = %s, status = %s,"
                             " output = %s, error = %s WHERE id = %s",
                             (new_len, now, status, _dumps(output),
                              _dumps(error) if error is not None else None, execution_id))
            else:
                conn.execute("UPDATE wf_executions SET length = %s, updated_at = %s WHERE id = %s",
                             (new_len, now, execution_id))
            return new_len

    def list(self, *, name: str | None = None, status: str | None = None,
             limit: int = 100) -> list[Execution]:
        q, args = f"SELECT {_COLS} FROM wf_executions WHERE true", []
        if name is not None:
            q += " AND name = %s"
            args.append(name)
        if status is not None:
            q += " AND status = %s"
            args.append(status)
        args.append(limit)
        return [_row(r) for r in self.db.rows(
            "list workflow executions", q + " ORDER BY created_at DESC, ord DESC LIMIT %s", args)]

    def post(self, execution_id: str, kind: str, data: dict[str, Any]) -> int:
        return self.db.rows("post to the workflow inbox",
                            "INSERT INTO wf_inbox (execution_id, kind, data) VALUES (%s,%s,%s) "
                            "RETURNING id", (execution_id, kind, _dumps(data)))[0][0]

    def inbox(self, limit: int = 100) -> list[InboxItem]:
        rows = self.db.rows("read the workflow inbox", "SELECT id, execution_id, kind, data "
                            "FROM wf_inbox ORDER BY id LIMIT %s", (limit,))
        return [InboxItem(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def done(self, item_ids: Sequence[int]) -> None:
        if item_ids:
            self.db.rows("clear the workflow inbox", "DELETE FROM wf_inbox WHERE id = ANY(%s)",
                         (list(item_ids),))

    def hand_off(self, execution_id: str, data: dict[str, Any]) -> None:
        self.db.rows("record a workflow handoff",
                     "INSERT INTO wf_handoffs (execution_id, data) VALUES (%s, %s) "
                     "ON CONFLICT (execution_id) DO UPDATE SET data = EXCLUDED.data "
                     "RETURNING id", (execution_id, _dumps(data)))

    def handoffs(self, execution_id: str | None = None, limit: int = 1000, *,
                 ended: bool = False) -> list[Handoff]:
        q, args = handoffs_query(execution_id, limit, ended, "%s")
        rows = self.db.rows("read workflow handoffs", q, args)
        return [Handoff(r[0], json.loads(r[1])) for r in rows]

    def drop_handoff(self, execution_id: str) -> None:
        self.db.rows("drop a workflow handoff",
                     "DELETE FROM wf_handoffs WHERE execution_id = %s RETURNING id",
                     (execution_id,))

    def close(self) -> None:
        self.db.close()
