"""The event store on PostgreSQL (`postgresql://…?schema=…`), for the distributed mode.

Appends serialise on a transaction-scoped advisory lock and take position max+1 inside
it, so positions have no gaps and commit in order: a reader that has seen position N
never later finds an event below N. The stream's version is checked under the same
lock. Data is stored as JSON text (not jsonb: an event's bytes are kept as written).
Triggers refuse UPDATE and DELETE on events.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Sequence

from ..event_store import ConcurrencyError, NewEvent, RecordedEvent, Snapshot
from .database import Database

_LOCK = 0x5E5E  # pg_advisory_xact_lock(_LOCK, hashtext(schema)): one appender at a time

TABLES = [
    """CREATE TABLE IF NOT EXISTS es_events (
        position BIGINT PRIMARY KEY, stream TEXT NOT NULL, version INTEGER NOT NULL,
        type TEXT NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL,
        schema_version INTEGER NOT NULL, recorded_at DOUBLE PRECISION NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS es_events_by_stream ON es_events (stream, version)",
    """CREATE TABLE IF NOT EXISTS es_snapshots (
        stream TEXT NOT NULL, version INTEGER NOT NULL, state TEXT NOT NULL,
        recorded_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (stream, version))""",
    """CREATE TABLE IF NOT EXISTS es_checkpoints (name TEXT PRIMARY KEY,
        position BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS es_rows (tbl TEXT NOT NULL, key TEXT NOT NULL,
        value TEXT NOT NULL, PRIMARY KEY (tbl, key))""",
    "CREATE TABLE IF NOT EXISTS es_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE OR REPLACE FUNCTION es_events_immutable() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'events are immutable'; END $$""",
    """CREATE OR REPLACE TRIGGER es_events_immutable BEFORE UPDATE OR DELETE ON es_events
        FOR EACH ROW EXECUTE FUNCTION es_events_immutable()""",
]

_COLS = "position, stream, version, type, data, metadata, schema_version, recorded_at"
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _event(r: tuple) -> RecordedEvent:
    return RecordedEvent(r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5]), r[6], r[7])


class PgEventStore:
    def __init__(self, url: str, *, clock: Callable[[], float] = time.time,
                 schema: str | None = None, pool_size: int = 8) -> None:
        self.db = Database(url, tables=TABLES, role="squall-events", pool_size=pool_size,
                           schema=schema)
        self.clock = clock

    def append(self, stream: str, events: Sequence[NewEvent],
               expected_version: int | None = None) -> list[RecordedEvent]:
        return self.append_many([(stream, events, expected_version)])

    def append_many(self, batch: Sequence[tuple[str, Sequence[NewEvent], int | None]]
                    ) -> list[RecordedEvent]:
        now = self.clock()
        with self.db.transaction("append events") as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                         (_LOCK, self.db.schema))
            position = conn.execute("SELECT coalesce(max(position), 0) FROM es_events"
                                    ).fetchone()[0]
            out, rows, versions = [], [], {}
            for stream, events, expected in batch:
                version = versions[stream] if stream in versions else conn.execute(
                    "SELECT coalesce(max(version), 0) FROM es_events WHERE stream = %s",
                    (stream,)).fetchone()[0]
                if expected is not None and expected != version:
                    raise ConcurrencyError(stream, expected, version)
                for e in events:
                    position += 1
                    version += 1
                    meta = dict(e.metadata)
                    out.append(RecordedEvent(position, stream, version, e.type, e.data, meta,
                                             e.schema_version, now))
                    rows.append((position, stream, version, e.type, _dumps(e.data),
                                 _dumps(meta), e.schema_version, now))
                versions[stream] = version
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO es_events ({_COLS}) VALUES "
                                "(%s,%s,%s,%s,%s,%s,%s,%s)", rows)
            return out

    def read_stream(self, stream: str, *, after_version: int = 0,
                    to_version: int | None = None, until: float | None = None
                    ) -> list[RecordedEvent]:
        q = f"SELECT {_COLS} FROM es_events WHERE stream = %s AND version > %s"
        args: list[Any] = [stream, after_version]
        if to_version is not None:
            q += " AND version <= %s"
            args.append(to_version)
        if until is not None:
            q += " AND recorded_at <= %s"
            args.append(until)
        return [_event(r) for r in self.db.rows("read a stream", q + " ORDER BY version", args)]

    def stream_version(self, stream: str) -> int:
        return self.db.rows("read a stream version", "SELECT coalesce(max(version), 0) FROM "
                            "es_events WHERE stream = %s", (stream,))[0][0]

    def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        return [_event(r) for r in self.db.rows(
            "read all events", f"SELECT {_COLS} FROM es_events WHERE position > %s "
            "ORDER BY position LIMIT %s", (after, limit))]

    def head(self) -> int:
        return self.db.rows("read the head", "SELECT coalesce(max(position), 0) FROM "
                            "es_events")[0][0]

    def save_snapshot(self, stream: str, version: int, state: Any) -> None:
        self.db.rows("save a snapshot", "INSERT INTO es_snapshots VALUES (%s,%s,%s,%s) ON "
                     "CONFLICT (stream, version) DO UPDATE SET state = excluded.state",
                     (stream, version, _dumps(state), self.clock()))

    def load_snapshot(self, stream: str, *, max_version: int | None = None,
                      until: float | None = None) -> Snapshot | None:
        q = "SELECT s.stream, s.version, s.state, s.recorded_at FROM es_snapshots s"
        args: list[Any] = []
        if until is not None:
            q += (" JOIN es_events e ON e.stream = s.stream AND e.version = s.version "
                  "WHERE s.stream = %s AND e.recorded_at <= %s")
            args += [stream, until]
        else:
            q += " WHERE s.stream = %s"
            args.append(stream)
        if max_version is not None:
            q += " AND s.version <= %s"
            args.append(max_version)
        rows = self.db.rows("load a snapshot", q + " ORDER BY s.version DESC LIMIT 1", args)
        if not rows:
            return None
        r = rows[0]
        return Snapshot(r[0], r[1], json.loads(r[2]), r[3])

    def get_checkpoint(self, name: str) -> int:
        r = self.db.rows("read a checkpoint", "SELECT position FROM es_checkpoints WHERE "
                         "name = %s", (name,))
        return r[0][0] if r else 0

    def set_checkpoint(self, name: str, position: int) -> None:
        self.db.rows("move a checkpoint", "INSERT INTO es_checkpoints VALUES (%s, %s) ON "
                     "CONFLICT (name) DO UPDATE SET position = excluded.position",
                     (name, position))

    def row_get(self, table: str, key: str) -> Any:
        r = self.db.rows("read a projection row", "SELECT value FROM es_rows WHERE tbl = %s "
                         "AND key = %s", (table, key))
        return json.loads(r[0][0]) if r else None

    def row_query(self, table: str, prefix: str = "", limit: int = 1000
                  ) -> list[tuple[str, Any]]:
        rows = self.db.rows("query projection rows", "SELECT key, value FROM es_rows WHERE "
                            "tbl = %s AND left(key, %s) = %s ORDER BY key COLLATE \"C\" "
                            "LIMIT %s", (table, len(prefix), prefix, limit))
        return [(k, json.loads(v)) for k, v in rows]

    def apply(self, table: str, puts: dict[str, Any], deletes: Sequence[str],
              checkpoint: str, position: int) -> None:
        with self.db.transaction("apply a projection batch") as conn, conn.cursor() as cur:
            if puts:
                cur.executemany("INSERT INTO es_rows VALUES (%s,%s,%s) ON CONFLICT (tbl, key) "
                                "DO UPDATE SET value = excluded.value",
                                [(table, k, _dumps(v)) for k, v in puts.items()])
            if deletes:
                cur.executemany("DELETE FROM es_rows WHERE tbl = %s AND key = %s",
                                [(table, k) for k in deletes])
            cur.execute("INSERT INTO es_checkpoints VALUES (%s, %s) ON CONFLICT (name) DO "
                        "UPDATE SET position = excluded.position", (checkpoint, position))

    def drop_rows(self, table: str) -> None:
        self.db.rows("drop projection rows", "DELETE FROM es_rows WHERE tbl = %s", (table,))

    def get_meta(self, key: str) -> Any:
        r = self.db.rows("read meta", "SELECT value FROM es_meta WHERE key = %s", (key,))
        return json.loads(r[0][0]) if r else None

    def set_meta(self, key: str, value: Any) -> None:
        self.db.rows("write meta", "INSERT INTO es_meta VALUES (%s, %s) ON CONFLICT (key) DO "
                     "UPDATE SET value = excluded.value", (key, _dumps(value)))

    def close(self) -> None:
        self.db.close()
