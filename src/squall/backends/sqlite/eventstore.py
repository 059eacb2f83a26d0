"""The embedded event store: SQLite (WAL, synchronous=FULL by default).

The global position is assigned inside the write transaction as max+1 (BEGIN IMMEDIATE
serialises writers, across processes too), so it has no gaps even when an append is
rolled back; the stream's version is checked in the same transaction. Triggers refuse
UPDATE and DELETE on events.

Group commit: appends that arrive while another append is committing (other threads:
the "eventstore" service runs appends off the event loop) wait, then the next of them
to go takes all waiting appends (up to `max_group`) and writes them in ONE transaction:
one fsync for the lot. Each append keeps its own expected-version check, against the
stream as the appends before it in the group left it; a conflicting append is left out
(it writes nothing, its caller alone gets the ConcurrencyError) and the positions of the
others stay gap-free. An append returns only after the COMMIT that holds it: acknowledged
means durable, at the file's `synchronous` setting. An append that finds nobody committing
and nobody waiting commits at once, without the queue (a sequential writer's path: one
statement reads the head and the stream's version, one INSERT, the COMMIT).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import orjson

from ..event_store import (ConcurrencyError, EventStoreError, NewEvent, RecordedEvent,
                           Snapshot, recorded_event)
from .tx import run_immediate

_SCHEMA = """
CREATE TABLE IF NOT EXISTS es_events (
    position INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    metadata TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS es_events_by_stream ON es_events(stream, version);
CREATE TRIGGER IF NOT EXISTS es_events_no_update BEFORE UPDATE ON es_events
BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;
CREATE TRIGGER IF NOT EXISTS es_events_no_delete BEFORE DELETE ON es_events
BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;
CREATE TABLE IF NOT EXISTS es_snapshots (
    stream TEXT NOT NULL, version INTEGER NOT NULL, state TEXT NOT NULL,
    recorded_at REAL NOT NULL, PRIMARY KEY (stream, version)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS es_checkpoints (name TEXT PRIMARY KEY, position INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS es_rows (tbl TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (tbl, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS es_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""

_COLS = "position, stream, version, type, data, metadata, schema_version, recorded_at"
_NCOLS = 8
_CHUNK = 64  # rows per multi-row INSERT (512 parameters; SQLite allows 32,766)
# one INSERT of 64, 32, ..., 1 rows each: a handful of cached statements for any batch
_ROW = "(" + ",".join("?" * _NCOLS) + ")"
_INSERTS = {n: f"INSERT INTO es_events ({_COLS}) VALUES " + ",".join([_ROW] * n)
            for n in (1 << k for k in range(_CHUNK.bit_length()))}


def _insert(db: sqlite3.Connection, values: list[Any]) -> None:
    """Insert rows given as one flat list of `_NCOLS` values a row. A multi-row INSERT
    binds and steps in C what executemany does a row at a time from Python: measured
    1.5-2x faster for 100 events (docs/benchmarks.md)."""
    left = len(values) // _NCOLS
    if left in _INSERTS:  # one statement, no slicing (a single event: one row)
        db.execute(_INSERTS[left], values)
        return
    at, size = 0, _CHUNK
    while left:
        while size > left:
            size >>= 1
        db.execute(_INSERTS[size], values[at:at + size * _NCOLS])
        at += size * _NCOLS
        left -= size


_HEAD_AND_VERSION = ("SELECT (SELECT coalesce(max(position), 0) FROM es_events), "
                     "(SELECT coalesce(max(version), 0) FROM es_events WHERE stream = ?)")
MAX_GROUP = 256  # appends (not events) per group commit
# WAL pages before SQLite checkpoints the log into the database (SQLite's default: 1000).
# A WAL that restarts sooner stays small and is rewritten in place: a commit's fsync then
# need not also journal the log file's growth (a commit of 100 events: 0.36-0.43 ms while
# a fresh WAL grows, 0.20-0.24 ms once it is rewritten in place; no measurable difference
# in a store past its first checkpoint; docs/benchmarks.md). Durability is the same.
WAL_PAGES = 256
_OPTS = orjson.OPT_NON_STR_KEYS
_orjson_dumps = orjson.dumps
_json_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _dumps(value: Any) -> str:
    """Compact JSON text; orjson (about 10x faster than json for an event's data), json
    for what orjson refuses (integers over 64 bits)."""
    try:
        return orjson.dumps(value, option=_OPTS).decode()
    except TypeError:
        return _json_dumps(value)


def _dumps_all(values: list[Any]) -> list[str]:
    """_dumps of each value, with one fallback check for the lot instead of one a value."""
    try:
        return [_orjson_dumps(v, option=_OPTS).decode() for v in values]
    except TypeError:
        return [_dumps(v) for v in values]


_loads = orjson.loads


class _Append:
    """One caller's append, waiting for the group commit that writes it."""

    __slots__ = ("batch", "out", "error", "done")

    def __init__(self, batch: Sequence[tuple[str, Sequence[NewEvent], int | None]]) -> None:
        self.batch = batch
        self.out: list[RecordedEvent] = []
        self.error: BaseException | None = None
        self.done = False


def _events(rows: list[tuple]) -> list[RecordedEvent]:
    """Decode a page's data in one JSON parse (one C call instead of one per event)."""
    if not rows:
        return []
    datas = _loads("[" + ",".join([r[4] for r in rows]) + "]")
    return [recorded_event(r[0], r[1], r[2], r[3], d, _loads(r[5]) if r[5] != "{}" else {},
                           r[6], r[7]) for r, d in zip(rows, datas)]


class SqliteEventStore:
    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time,
                 synchronous: str = "FULL", max_group: int = MAX_GROUP,
                 wal_pages: int = WAL_PAGES) -> None:
        if max_group < 1:
            raise ValueError(f"max_group must be >= 1, got {max_group}")
        if wal_pages < 1:
            raise ValueError(f"wal_pages must be >= 1, got {wal_pages}")
        self.path = Path(path)
        self.clock = clock
        self.max_group = max_group
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 timeout=30.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.execute(f"PRAGMA wal_autocheckpoint={int(wal_pages)}")
            db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise EventStoreError(f"cannot open the event store at {self.path}: {exc}") from exc
        self._db = db
        self._lock = threading.Lock()
        self._queue: list[_Append] = []  # appends waiting for a group commit
        self._committing = False
        self._mutex = threading.Lock()  # under it: _queue, _committing, done flags
        self._turn = threading.Condition(self._mutex)
        self.groups = 0  # group commits so far (tests, the benchmark)

    def _tx(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            try:
                return run_immediate(self._db, fn)
            except sqlite3.Error as exc:
                raise EventStoreError(f"event store {self.path}: {exc}") from exc

    def _read(self, sql: str, args: Sequence[Any]) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise EventStoreError(f"event store {self.path}: {exc}") from exc

    # -- streams and the global order ------------------------------------------------

    def append(self, stream: str, events: Sequence[NewEvent],
               expected_version: int | None = None) -> list[RecordedEvent]:
        return self.append_many([(stream, events, expected_version)])

    def append_many(self, batch: Sequence[tuple[str, Sequence[NewEvent], int | None]]
                    ) -> list[RecordedEvent]:
        req = _Append(batch)
        with self._mutex:  # (the Condition's lock: a C-level `with`, not Condition's)
            alone = not self._committing and not self._queue
            if alone:  # nobody commits or waits: this append commits now, on its own
                self._committing = True
            else:
                self._queue.append(req)
        if alone:
            try:
                self._commit([req])
            finally:
                with self._mutex:
                    req.done = True
                    self._committing = False
                    if self._queue:  # only appends that queued wait for the turn
                        self._turn.notify_all()
        while not req.done:
            with self._turn:
                while self._committing and not req.done:
                    self._turn.wait()
                if req.done:
                    break
                # this caller commits the waiting appends (the oldest first, which holds
                # its own unless more than max_group wait ahead of it: then it goes again)
                group, self._queue = self._queue[:self.max_group], self._queue[self.max_group:]
                self._committing = True
            try:
                self._commit(group)
            finally:
                with self._turn:
                    for r in group:
                        r.done = True
                    self._committing = False
                    self._turn.notify_all()
        if req.error is not None:
            raise req.error
        return req.out

    def _commit(self, group: list[_Append]) -> None:
        now = self.clock()

        def go(db: sqlite3.Connection) -> None:
            # the head and the first stream's version in one statement (a sequential
            # writer's single append then reads once)
            first = group[0].batch[0][0] if group[0].batch else ""
            position, version = db.execute(_HEAD_AND_VERSION, (first,)).fetchone()
            rows: list[Any] = []  # flat: _NCOLS values a row
            # the streams' versions as the appends so far in the group left them
            versions: dict[str, int] = {first: version}
            for req in group:
                try:
                    position = self._plan(db, req, position, versions, rows, now)
                except ConcurrencyError as exc:
                    req.error = exc
            _insert(db, rows)

        try:
            self._tx(go)
        except BaseException as exc:  # nothing of the group was written: each caller hears
            for req in group:
                req.out = []
                if req.error is None:
                    req.error = exc
        self.groups += 1

    @staticmethod
    def _plan(db: sqlite3.Connection, req: _Append, position: int, versions: dict[str, int],
              rows: list[Any], now: float) -> int:
        """Check one append's expected versions and add its rows; the next position. On a
        conflict nothing of this append is kept (rows, versions, positions)."""
        mine: dict[str, int] = {}
        out: list[RecordedEvent] = []
        new: list[Any] = []
        for stream, events, expected in req.batch:
            if stream in mine:
                version = mine[stream]
            elif stream in versions:
                version = versions[stream]
            else:  # a seek on the (stream, version) index: no separate streams table
                version = db.execute("SELECT coalesce(max(version), 0) FROM es_events "
                                     "WHERE stream = ?", (stream,)).fetchone()[0]
                versions[stream] = version
            if expected is not None and expected != version:
                raise ConcurrencyError(stream, expected, version)
            if not isinstance(events, (list, tuple)):  # read twice below
                events = list(events)
            # per event only what differs: the JSON of all the data in one pass, the
            # row's values as the INSERT binds them, the event returned to the caller
            for e, data in zip(events, _dumps_all([e.data for e in events])):
                position += 1
                version += 1
                if e.metadata:
                    meta = dict(e.metadata)
                    meta_json = _dumps(meta)
                else:
                    meta, meta_json = {}, "{}"
                out.append(recorded_event(position, stream, version, e.type, e.data, meta,
                                          e.schema_version, now))
                new += (position, stream, version, e.type, data, meta_json,
                        e.schema_version, now)
            mine[stream] = version
        versions.update(mine)
        rows.extend(new)
        req.out = out
        return position

    def read_stream(self, stream: str, *, after_version: int = 0,
                    to_version: int | None = None, until: float | None = None
                    ) -> list[RecordedEvent]:
        sql = f"SELECT {_COLS} FROM es_events WHERE stream = ? AND version > ?"
        args: list[Any] = [stream, after_version]
        if to_version is not None:
            sql += " AND version <= ?"
            args.append(to_version)
        if until is not None:
            sql += " AND recorded_at <= ?"
            args.append(until)
        return _events(self._read(sql + " ORDER BY version", args))

    def stream_version(self, stream: str) -> int:
        return self._read("SELECT coalesce(max(version), 0) FROM es_events WHERE stream = ?",
                          (stream,))[0][0]

    def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        return _events(self._read(
            f"SELECT {_COLS} FROM es_events WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit)))

    def head(self) -> int:
        return self._read("SELECT coalesce(max(position), 0) FROM es_events", ())[0][0]

    # -- snapshots -------------------------------------------------------------------

    def save_snapshot(self, stream: str, version: int, state: Any) -> None:
        now = self.clock()
        self._tx(lambda db: db.execute(
            "INSERT OR REPLACE INTO es_snapshots VALUES (?,?,?,?)",
            (stream, version, _dumps(state), now)))

    def load_snapshot(self, stream: str, *, max_version: int | None = None,
                      until: float | None = None) -> Snapshot | None:
        # a snapshot is only as old as the last event it covers, not its write time
        sql = "SELECT s.stream, s.version, s.state, s.recorded_at FROM es_snapshots s"
        args: list[Any] = []
        if until is not None:
            sql += (" JOIN es_events e ON e.stream = s.stream AND e.version = s.version "
                    "WHERE s.stream = ? AND e.recorded_at <= ?")
            args += [stream, until]
        else:
            sql += " WHERE s.stream = ?"
            args.append(stream)
        if max_version is not None:
            sql += " AND s.version <= ?"
            args.append(max_version)
        rows = self._read(sql + " ORDER BY s.version DESC LIMIT 1", args)
        if not rows:
            return None
        r = rows[0]
        return Snapshot(r[0], r[1], json.loads(r[2]), r[3])

    # -- tracking: checkpoints and projection rows -------------------------------------

    def get_checkpoint(self, name: str) -> int:
        r = self._read("SELECT position FROM es_checkpoints WHERE name = ?", (name,))
        return r[0][0] if r else 0

    def set_checkpoint(self, name: str, position: int) -> None:
        self._tx(lambda db: db.execute(
            "INSERT INTO es_checkpoints VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET "
            "position = excluded.position", (name, position)))

    def row_get(self, table: str, key: str) -> Any:
        r = self._read("SELECT value FROM es_rows WHERE tbl = ? AND key = ?", (table, key))
        return json.loads(r[0][0]) if r else None

    def row_query(self, table: str, prefix: str = "", limit: int = 1000
                  ) -> list[tuple[str, Any]]:
        rows = self._read("SELECT key, value FROM es_rows WHERE tbl = ? AND key >= ? "
                          "AND substr(key, 1, ?) = ? ORDER BY key LIMIT ?",
                          (table, prefix, len(prefix), prefix, limit))
        return [(k, json.loads(v)) for k, v in rows]

    def apply(self, table: str, puts: dict[str, Any], deletes: Sequence[str],
              checkpoint: str, position: int) -> None:
        def go(db: sqlite3.Connection) -> None:
            db.executemany("INSERT OR REPLACE INTO es_rows VALUES (?,?,?)",
                           [(table, k, _dumps(v)) for k, v in puts.items()])
            db.executemany("DELETE FROM es_rows WHERE tbl = ? AND key = ?",
                           [(table, k) for k in deletes])
            db.execute("INSERT INTO es_checkpoints VALUES (?, ?) ON CONFLICT(name) DO UPDATE "
                       "SET position = excluded.position", (checkpoint, position))

        self._tx(go)

    def drop_rows(self, table: str) -> None:
        self._tx(lambda db: db.execute("DELETE FROM es_rows WHERE tbl = ?", (table,)))

    def get_meta(self, key: str) -> Any:
        r = self._read("SELECT value FROM es_meta WHERE key = ?", (key,))
        return json.loads(r[0][0]) if r else None

    def set_meta(self, key: str, value: Any) -> None:
        self._tx(lambda db: db.execute("INSERT OR REPLACE INTO es_meta VALUES (?, ?)",
                                       (key, _dumps(value))))

    def close(self) -> None:
        with self._lock:
            self._db.close()
