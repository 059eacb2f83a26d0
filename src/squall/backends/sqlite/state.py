"""The embedded state store: tables, object metadata and their feeds in one SQLite file
(WAL), object bytes in files beside it.

Every thread gets its own connection (the service runs stores on a thread pool); a
write is one `BEGIN IMMEDIATE` transaction, so the row, its version and its feed record
commit together or not at all. `synchronous=FULL` by default: a write that returned is
on disk. Feed sequence numbers come from a per-(feed, shard) counter row updated in the
writing transaction: taken in commit order, and never reused after a trim. A feed
record keeps its writer's traceparent (`trace`); a database made before that column
existed gets it when opened.

Tables (tables.py) and objects (objects.py) are mixins over this base.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from ..base import StoreError
from ..state import FeedEntry, FeedRecord
from .objects import ObjectOps
from .tables import TableOps

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    tbl TEXT NOT NULL,
    pk TEXT NOT NULL,
    sk NOT NULL,            -- no type: numbers stay numbers, text stays text
    data TEXT NOT NULL,
    version INTEGER NOT NULL,
    expires_at REAL,
    PRIMARY KEY (tbl, pk, sk)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_expiry ON items(tbl, expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS feed (
    feed TEXT NOT NULL,
    shard INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    key TEXT NOT NULL,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    at REAL NOT NULL,
    trace TEXT,             -- the writer's traceparent + loop lineage (FeedEntry.trace)
    PRIMARY KEY (feed, shard, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS feed_by_time ON feed(feed, at);
CREATE TABLE IF NOT EXISTS feed_heads (
    feed TEXT NOT NULL,
    shard INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (feed, shard)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS feed_checkpoints (
    feed TEXT NOT NULL,
    consumer TEXT NOT NULL,
    shard INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (feed, consumer, shard)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    content_type TEXT NOT NULL,
    metadata TEXT NOT NULL,
    last_modified REAL NOT NULL,
    version TEXT NOT NULL,
    tier TEXT NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
"""


class SqliteStateStore(TableOps, ObjectOps):
    """TableStore + ObjectStore + FeedStore on SQLite and the filesystem."""

    def __init__(self, path: str | Path, objects_dir: str | Path | None = None, *,
                 clock: Callable[[], float] = time.time, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.objects_dir = Path(objects_dir) if objects_dir else self.path.parent / "objects"
        self.clock = clock
        self.synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            (self.objects_dir / "tmp").mkdir(parents=True, exist_ok=True)
            self._db().executescript(_SCHEMA)
            self._add_trace_column()
        except (sqlite3.Error, OSError) as exc:
            self.close()
            raise StoreError(f"cannot open the state store at {self.path}: {exc}") from exc

    def _add_trace_column(self) -> None:
        """Give `feed.trace` to a database made before it existed (every record kept; its
        old records have none: their consumers start new chains)."""
        db = self._db()
        if "trace" not in {r[1] for r in db.execute("PRAGMA table_info(feed)")}:
            try:
                db.execute("ALTER TABLE feed ADD COLUMN trace TEXT")
            except sqlite3.OperationalError as exc:  # another process added it just now
                if "duplicate column" not in str(exc):
                    raise

    # -- connections and transactions ------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            if self._closed:
                raise StoreError("the state store is closed")
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 timeout=30.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"state store {self.path}: {exc}") from exc
        try:
            yield db
        except BaseException:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise StoreError(f"state store {self.path}: commit failed: {exc}") from exc

    def _read(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        try:
            return self._db().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"state store {self.path}: {exc}") from exc

    def close(self) -> None:
        self._closed = True
        with self._lock:
            conns, self._all = self._all, []
        for db in conns:
            try:
                db.close()
            except sqlite3.Error:
                pass

    # -- feeds -------------------------------------------------------------------------

    def _append(self, db: sqlite3.Connection, feed: str, entry: FeedEntry, at: float) -> int:
        (seq,) = db.execute(
            "INSERT INTO feed_heads (feed, shard, seq) VALUES (?, ?, 1) "
            "ON CONFLICT(feed, shard) DO UPDATE SET seq = seq + 1 RETURNING seq",
            (feed, entry.shard)).fetchone()
        db.execute("INSERT INTO feed (feed, shard, seq, key, event, body, at, trace) "
                   "VALUES (?,?,?,?,?,?,?,?)",
                   (feed, entry.shard, seq, entry.key, entry.event, entry.body, at,
                    entry.trace))
        return seq

    def read_feed(self, feed: str, shard: int, after_seq: int, limit: int) -> list[FeedRecord]:
        rows = self._read("SELECT feed, shard, seq, key, event, body, at, trace FROM feed "
                          "WHERE feed = ? AND shard = ? AND seq > ? ORDER BY seq LIMIT ?",
                          (feed, shard, after_seq, limit))
        return [FeedRecord(*r) for r in rows]

    def latest_feed_seq(self, feed: str, shard: int) -> int:
        rows = self._read("SELECT seq FROM feed_heads WHERE feed = ? AND shard = ?",
                          (feed, shard))
        return rows[0][0] if rows else 0

    def feed_checkpoint(self, feed: str, consumer: str, shard: int) -> int | None:
        rows = self._read("SELECT seq FROM feed_checkpoints WHERE feed = ? AND consumer = ? "
                          "AND shard = ?", (feed, consumer, shard))
        return rows[0][0] if rows else None

    def set_feed_checkpoint(self, feed: str, consumer: str, shard: int, seq: int) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO feed_checkpoints (feed, consumer, shard, seq) "
                       "VALUES (?,?,?,?) ON CONFLICT(feed, consumer, shard) DO UPDATE SET "
                       "seq = MAX(seq, excluded.seq)", (feed, consumer, shard, seq))

    def trim_feed(self, feed: str, shard: int, upto_seq: int, before: float) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM feed WHERE feed = ? AND shard = ? AND seq <= ? "
                              "AND at < ?", (feed, shard, upto_seq, before)).rowcount
