"""The embedded queue broker: SQLite in WAL mode with `synchronous=FULL`.

Every operation runs on one writer thread that owns the connection. The thread takes
whatever operations are waiting, runs them in ONE transaction (each inside its own
savepoint, so one failing operation does not undo the others) and commits once: group
commit. A `send` therefore returns only after an fsync'd commit, yet a burst of sends
costs one fsync per batch, not per message.

Consumers wait by notification: after a commit that made messages visible, waiting
`receive` calls on those queues wake at once. Messages that become visible later
(delays, visibility timeouts, retry backoff) wake their waiters at that time; those
deadlines are on the monotonic clock, immune to wall-clock steps (deadlines.py). Writes by
another process (`squall send` while the app runs) are noticed through SQLite's
`data_version` (on a separate read connection) within `EXTERNAL_CHECK_S`.

This module holds the writer thread and the queues; the bus archive, schedule ticks and
idempotency records (records.py) and ordered streams (streams.py) are mixins whose
operations run on the same thread, in the same group commits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import queue as queue_mod
import secrets
import sqlite3
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..broker import (
    BrokerError,
    Delivery,
    MessageTooLarge,
    OutMessage,
    QueueStats,
)
from ...aiocompat import wait_for
from .deadlines import DeadlineClock, adopt
from .records import RecordOps
from .streams import StreamOps

EXTERNAL_CHECK_S = 0.01
MAX_GROUP = 1024
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
DEFAULT_DEDUP_WINDOW_S = 300.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    attributes TEXT NOT NULL,
    trace TEXT,
    sent_at REAL NOT NULL,
    available_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    last_error TEXT,
    dlq_reason TEXT,
    source_queue TEXT
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages(queue, available_at, seq);
CREATE TABLE IF NOT EXISTS dedup (
    queue TEXT NOT NULL,
    key TEXT NOT NULL,
    message_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (queue, key)
);
CREATE INDEX IF NOT EXISTS dedup_expiry ON dedup(expires_at);
CREATE TABLE IF NOT EXISTS archive (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    time REAL NOT NULL,
    source TEXT NOT NULL,
    detail_type TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS archive_by_time ON archive(time, seq);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    result TEXT,
    locked_until REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS stream_records (
    stream TEXT NOT NULL,
    shard INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    partition_key TEXT NOT NULL,
    data BLOB NOT NULL,
    arrival REAL NOT NULL,
    PRIMARY KEY (stream, shard, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stream_checkpoints (
    stream TEXT NOT NULL,
    consumer TEXT NOT NULL,
    shard INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (stream, consumer, shard)
);
CREATE TABLE IF NOT EXISTS schedule_ticks (
    schedule TEXT PRIMARY KEY,
    last_tick REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL
);
"""

_DELIVERY_COLS = ("seq, id, queue, body, attributes, trace, sent_at, receive_count, receipt, "
                  "last_error, dlq_reason, source_queue")

Op = Callable[..., Any]

def _delivery(row: tuple, receipt: str | None = None) -> Delivery:
    (_seq, mid, queue, body, attrs, trace, sent_at, count, rcpt, last_error, reason,
     source) = row
    return Delivery(
        message_id=mid, queue=queue, body=bytes(body), attributes=json.loads(attrs),
        receipt=receipt or rcpt or "", receive_count=count, sent_at=sent_at, trace=trace,
        last_error=last_error, dead_letter_reason=reason, source_queue=source,
    )

def _seq_of(receipt: str) -> int | None:
    head, _, _ = receipt.partition(".")
    return int(head) if head.isdigit() else None

class SqliteBroker(RecordOps, StreamOps):
    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        timer: DeadlineClock | None = None,
        synchronous: str = "FULL",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S,
    ) -> None:
        self.path = Path(path)
        self.clock = clock  # wall time: sent_at and the other user-facing timestamps
        # deadlines (visibility, delays, backoff, dedup window): deadlines.py. A test's
        # fake wall clock drives them too, unless the test gives a timer of its own.
        self.timer = timer or (DeadlineClock.system() if clock is time.time
                               else DeadlineClock(clock, "injected"))
        self.max_message_bytes = max_message_bytes
        self.dedup_window_s = dedup_window_s
        self._ops: queue_mod.SimpleQueue[tuple | None] = queue_mod.SimpleQueue()
        self._waiters: dict[str, set[asyncio.Future[None]]] = defaultdict(set)
        self._generation: dict[str, int] = defaultdict(int)  # bumped by every wake-up
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None,
                                       check_same_thread=False, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(_SCHEMA)
            adopt(self._db, self.timer, clock, dedup_window_s)
        except (sqlite3.Error, OSError) as exc:
            raise BrokerError(f"cannot open the broker database at {self.path}: {exc}") from exc
        # a read-only connection to notice other processes' commits without taking the
        # write lock (the writer thread may be waiting on it behind an external burst)
        self._reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._data_version = self._reader.execute("PRAGMA data_version").fetchone()[0]
        self._thread = threading.Thread(target=self._writer, name="squall-broker", daemon=True)
        self._thread.start()

    # -- the writer thread -------------------------------------------------------------

    def _writer(self) -> None:
        db = self._db
        while True:
            first = self._ops.get()
            if first is None:
                break
            batch = [first]
            stop = False
            while len(batch) < MAX_GROUP:
                try:
                    item = self._ops.get_nowait()
                except queue_mod.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            touched: set[str] = set()
            outcomes: list[tuple[concurrent.futures.Future, Any, BaseException | None]] = []
            try:
                db.execute("BEGIN IMMEDIATE")
                for fn, args, fut in batch:
                    db.execute("SAVEPOINT op")
                    try:
                        outcomes.append((fut, fn(db, touched, *args), None))
                        db.execute("RELEASE op")
                    except Exception as exc:  # this op only
                        db.execute("ROLLBACK TO op")
                        db.execute("RELEASE op")
                        outcomes.append((fut, None, exc))
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                err = BrokerError(f"broker commit failed: {exc}")
                outcomes = [(fut, None, err) for _, _, fut in batch]
                touched = set()
            for fut, result, exc in outcomes:
                if fut.set_running_or_notify_cancel():
                    if exc is None:
                        fut.set_result(result)
                    else:
                        fut.set_exception(exc)
            if touched and self._loop is not None and not self._loop.is_closed():
                try:
                    self._loop.call_soon_threadsafe(self._wake, touched)
                except RuntimeError:  # the loop closed meanwhile
                    pass
            if stop:
                break
        db.close()

    async def _run(self, fn: Op, *args: Any) -> Any:
        if self._closed:
            raise BrokerError("the broker is closed")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._ops.put((fn, args, fut))
        return await asyncio.wrap_future(fut)

    def _wake(self, queues: set[str]) -> None:
        for q in queues:
            self._generation[q] += 1
            for fut in self._waiters.pop(q, ()):
                if not fut.done():
                    fut.set_result(None)

    def _wake_all(self) -> None:
        self._wake(set(self._waiters) | set(self._generation))

    # -- operations (run on the writer thread, inside a transaction) ------------------

    def _op_send(self, db: sqlite3.Connection, touched: set[str], queue: str,
                 messages: Sequence[OutMessage]) -> list[str]:
        now, due = self.clock(), self.timer.now()
        ids: list[str] = []
        rows: list[tuple] = []
        for m in messages:
            if m.dedup_key is not None:
                row = db.execute(
                    "SELECT message_id FROM dedup WHERE queue = ? AND key = ? AND expires_at > ?",
                    (queue, m.dedup_key, due)).fetchone()
                if row is not None:
                    ids.append(row[0])
                    continue
            mid = uuid.uuid4().hex
            attrs = json.dumps(m.attributes) if m.attributes else "{}"
            rows.append((mid, queue, m.body, attrs, m.trace, now, due + max(0.0, m.delay_s)))
            if m.dedup_key is not None:
                db.execute("INSERT OR REPLACE INTO dedup (queue, key, message_id, expires_at) "
                           "VALUES (?,?,?,?)",
                           (queue, m.dedup_key, mid, due + self.dedup_window_s))
            ids.append(mid)
        db.executemany(
            "INSERT INTO messages (id, queue, body, attributes, trace, sent_at, available_at) "
            "VALUES (?,?,?,?,?,?,?)", rows)
        touched.add(queue)
        return ids

    def _op_send_many(self, db: sqlite3.Connection, touched: set[str],
                      batches: Mapping[str, Sequence[OutMessage]]) -> dict[str, list[str]]:
        return {q: self._op_send(db, touched, q, msgs) for q, msgs in batches.items() if msgs}

    def _op_receive(self, db: sqlite3.Connection, touched: set[str], queue: str, limit: int,
                    vt: float) -> tuple[list[Delivery], float | None]:
        now = self.timer.now()
        rows = db.execute(
            f"SELECT {_DELIVERY_COLS} FROM messages WHERE queue = ? AND available_at <= ? "
            "ORDER BY available_at, seq LIMIT ?", (queue, now, limit)).fetchall()
        out: list[Delivery] = []
        for row in rows:
            receipt = f"{row[0]}.{secrets.token_hex(8)}"
            db.execute("UPDATE messages SET receipt = ?, available_at = ?, "
                       "receive_count = receive_count + 1 WHERE seq = ?",
                       (receipt, now + vt, row[0]))
            fields = list(row)
            fields[7] = row[7] + 1
            out.append(_delivery(tuple(fields), receipt))
        nxt = None
        if not out:
            r = db.execute("SELECT MIN(available_at) FROM messages WHERE queue = ?",
                           (queue,)).fetchone()
            nxt = r[0]
        return out, nxt

    def _op_ack(self, db: sqlite3.Connection, touched: set[str], queue: str,
                receipts: Sequence[str]) -> list[bool]:
        out = []
        for receipt in receipts:
            seq = _seq_of(receipt)
            cur = db.execute("DELETE FROM messages WHERE seq = ? AND receipt = ? AND queue = ?",
                             (seq, receipt, queue)) if seq is not None else None
            out.append(bool(cur and cur.rowcount))
        return out

    def _op_nack(self, db: sqlite3.Connection, touched: set[str], queue: str, receipt: str,
                 delay_s: float, error: str | None) -> bool:
        seq = _seq_of(receipt)
        if seq is None:
            return False
        cur = db.execute(
            "UPDATE messages SET receipt = NULL, available_at = ?, "
            "last_error = COALESCE(?, last_error) WHERE seq = ? AND receipt = ? AND queue = ?",
            (self.timer.now() + max(0.0, delay_s), error, seq, receipt, queue))
        if cur.rowcount:
            touched.add(queue)
        return bool(cur.rowcount)

    def _op_extend(self, db: sqlite3.Connection, touched: set[str], queue: str, receipt: str,
                   vt: float) -> bool:
        seq = _seq_of(receipt)
        if seq is None:
            return False
        cur = db.execute("UPDATE messages SET available_at = ? WHERE seq = ? AND receipt = ? "
                         "AND queue = ?", (self.timer.now() + vt, seq, receipt, queue))
        return bool(cur.rowcount)

    def _op_dead_letter(self, db: sqlite3.Connection, touched: set[str], queue: str,
                        receipt: str, dlq: str, reason: str, error: str | None) -> bool:
        seq = _seq_of(receipt)
        if seq is None:
            return False
        cur = db.execute(
            "UPDATE messages SET queue = ?, source_queue = ?, dlq_reason = ?, "
            "last_error = COALESCE(?, last_error), receipt = NULL, available_at = ? "
            "WHERE seq = ? AND receipt = ? AND queue = ?",
            (dlq, queue, reason, error, self.timer.now(), seq, receipt, queue))
        if cur.rowcount:
            touched.add(dlq)
        return bool(cur.rowcount)

    def _op_peek(self, db: sqlite3.Connection, touched: set[str], queue: str, limit: int,
                 after_id: str | None) -> list[Delivery]:
        after = 0
        if after_id is not None:
            r = db.execute("SELECT seq FROM messages WHERE id = ?", (after_id,)).fetchone()
            after = r[0] if r else 0
        rows = db.execute(f"SELECT {_DELIVERY_COLS} FROM messages WHERE queue = ? AND seq > ? "
                          "ORDER BY seq LIMIT ?", (queue, after, limit)).fetchall()
        return [_delivery(r) for r in rows]

    def _op_redrive(self, db: sqlite3.Connection, touched: set[str], dlq: str, to: str | None,
                    ids: Sequence[str] | None, limit: int) -> int:
        if ids is not None:
            marks = ",".join("?" * len(ids)) or "NULL"
            rows = db.execute(f"SELECT seq, source_queue FROM messages WHERE queue = ? AND id IN "
                              f"({marks}) ORDER BY seq LIMIT ?", (dlq, *ids, limit)).fetchall()
        else:
            rows = db.execute("SELECT seq, source_queue FROM messages WHERE queue = ? "
                              "ORDER BY seq LIMIT ?", (dlq, limit)).fetchall()
        now = self.timer.now()
        moved = 0
        for seq, source in rows:
            target = to or source
            if not target:
                continue
            db.execute("UPDATE messages SET queue = ?, source_queue = NULL, dlq_reason = NULL, "
                       "receive_count = 0, receipt = NULL, available_at = ? WHERE seq = ?",
                       (target, now, seq))
            touched.add(target)
            moved += 1
        return moved

    def _op_delete(self, db: sqlite3.Connection, touched: set[str], queue: str,
                   ids: Sequence[str]) -> int:
        marks = ",".join("?" * len(ids)) or "NULL"
        return db.execute(f"DELETE FROM messages WHERE queue = ? AND id IN ({marks})",
                          (queue, *ids)).rowcount

    def _op_update_body(self, db: sqlite3.Connection, touched: set[str], queue: str, mid: str,
                        body: bytes) -> bool:
        return bool(db.execute("UPDATE messages SET body = ? WHERE queue = ? AND id = ? AND "
                               "receipt IS NULL", (body, queue, mid)).rowcount)

    def _op_stats(self, db: sqlite3.Connection, touched: set[str], queue: str) -> QueueStats:
        now = self.timer.now()
        visible, in_flight, delayed = db.execute(
            "SELECT "
            "COALESCE(SUM(available_at <= ?), 0), "
            "COALESCE(SUM(available_at > ? AND receipt IS NOT NULL), 0), "
            "COALESCE(SUM(available_at > ? AND receipt IS NULL), 0) "
            "FROM messages WHERE queue = ?", (now, now, now, queue)).fetchone()
        return QueueStats(queue, visible, in_flight, delayed)

    def _op_purge(self, db: sqlite3.Connection, touched: set[str], queue: str) -> int:
        return db.execute("DELETE FROM messages WHERE queue = ?", (queue,)).rowcount

    def _op_sweep_dedup(self, db: sqlite3.Connection, touched: set[str]) -> int:
        return db.execute("DELETE FROM dedup WHERE expires_at <= ?",
                          (self.timer.now(),)).rowcount

    # -- the Protocol ------------------------------------------------------------------

    async def send(self, queue: str, messages: Sequence[OutMessage]) -> list[str]:
        for m in messages:
            if len(m.body) > self.max_message_bytes:
                raise MessageTooLarge(queue, len(m.body), self.max_message_bytes)
        return await self._run(self._op_send, queue, list(messages))

    async def send_many(self, batches: Mapping[str, Sequence[OutMessage]]) -> dict[str, list[str]]:
        for q, msgs in batches.items():
            for m in msgs:
                if len(m.body) > self.max_message_bytes:
                    raise MessageTooLarge(q, len(m.body), self.max_message_bytes)
        return await self._run(self._op_send_many, {q: list(m) for q, m in batches.items()})

    async def receive(self, queue: str, max_messages: int = 1, *,
                      visibility_timeout_s: float = 30.0, wait_s: float = 0.0) -> list[Delivery]:
        deadline = time.monotonic() + wait_s
        while True:
            generation = self._generation[queue]
            out, next_at = await self._run(self._op_receive, queue, max_messages,
                                           visibility_timeout_s)
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            if self._generation[queue] != generation:
                continue  # something arrived while we looked: look again
            timeout = remaining
            if next_at is not None:
                timeout = min(timeout, max(0.0, next_at - self.timer.now()) + 0.001)
            await self._wait(queue, timeout)

    async def _wait(self, queue: str, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters[queue].add(fut)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.ensure_future(self._watch_external())
        try:
            await wait_for(fut, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(queue)
            if waiters is not None:
                waiters.discard(fut)
                if not waiters:
                    self._waiters.pop(queue, None)

    async def _watch_external(self) -> None:
        """While anyone waits, notice commits made by other processes: a data_version read
        on the reader connection (microseconds, no lock), every EXTERNAL_CHECK_S. It also
        changes on our own writer's commits; waking then only costs a look."""
        while self._waiters and not self._closed:
            await asyncio.sleep(EXTERNAL_CHECK_S)
            try:
                version = self._reader.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error:
                return
            if version != self._data_version:
                self._data_version = version
                self._wake_all()

    async def ack(self, queue: str, receipts: Sequence[str]) -> list[bool]:
        return await self._run(self._op_ack, queue, list(receipts))

    async def nack(self, queue: str, receipt: str, *, delay_s: float = 0.0,
                   error: str | None = None) -> bool:
        return await self._run(self._op_nack, queue, receipt, delay_s, error)

    async def extend(self, queue: str, receipt: str, visibility_timeout_s: float) -> bool:
        return await self._run(self._op_extend, queue, receipt, visibility_timeout_s)

    async def dead_letter(self, queue: str, receipt: str, *, dlq: str, reason: str,
                          error: str | None = None) -> bool:
        return await self._run(self._op_dead_letter, queue, receipt, dlq, reason, error)

    async def peek(self, queue: str, limit: int = 100,
                   after_id: str | None = None) -> list[Delivery]:
        return await self._run(self._op_peek, queue, limit, after_id)

    async def redrive(self, dlq: str, *, to: str | None = None,
                      message_ids: Sequence[str] | None = None, limit: int = 1000) -> int:
        ids = list(message_ids) if message_ids is not None else None
        return await self._run(self._op_redrive, dlq, to, ids, limit)

    async def delete(self, queue: str, message_ids: Sequence[str]) -> int:
        return await self._run(self._op_delete, queue, list(message_ids))

    async def update_body(self, queue: str, message_id: str, body: bytes) -> bool:
        if len(body) > self.max_message_bytes:
            raise MessageTooLarge(queue, len(body), self.max_message_bytes)
        return await self._run(self._op_update_body, queue, message_id, body)

    async def stats(self, queue: str) -> QueueStats:
        return await self._run(self._op_stats, queue)

    async def purge(self, queue: str) -> int:
        return await self._run(self._op_purge, queue)

    async def sweep(self) -> int:
        """Drop expired deduplication records."""
        return await self._run(self._op_sweep_dedup)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
        self._ops.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 10)
        self._reader.close()
        self._wake_all()
