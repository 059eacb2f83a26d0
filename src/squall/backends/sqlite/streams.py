"""The embedded broker's ordered streams: records per (stream, shard, seq) and consumer
checkpoints. A mixin of SqliteBroker (its `_op_*` run on the writer thread).

Each record keeps the traceparent of the hop that appended it (`trace`), so a consumer's
invocation joins the producer's trace. Databases made before that column existed get it
on first use (`_ensure_trace_column`, an ALTER TABLE that keeps every record).
"""

from __future__ import annotations

import sqlite3
import time
import zlib
from typing import Any, Sequence

from ..broker import MessageTooLarge, StreamEntry


class StreamOps:
    clock: Any
    max_message_bytes: int
    _run: Any
    _generation: Any
    _wait: Any
    _stream_trace_ready: bool = False

    def _op_add_trace_column(self, db: sqlite3.Connection, touched: set[str]) -> None:
        cols = {r[1] for r in db.execute("PRAGMA table_info(stream_records)")}
        if "trace" not in cols:
            try:
                db.execute("ALTER TABLE stream_records ADD COLUMN trace TEXT")
            except sqlite3.OperationalError as exc:  # another process added it just now
                if "duplicate column" not in str(exc):
                    raise

    async def _ensure_trace_column(self) -> None:
        if not self._stream_trace_ready:
            await self._run(self._op_add_trace_column)
            self._stream_trace_ready = True

    def _op_append(self, db: sqlite3.Connection, touched: set[str], stream: str,
                   records: Sequence[tuple[str, bytes]], shards: int,
                   trace: str | None = None) -> list[tuple[int, int]]:
        now = self.clock()
        next_seq: dict[int, int] = {}
        out: list[tuple[int, int]] = []
        rows = []
        for key, data in records:
            shard = zlib.crc32(key.encode()) % shards
            if shard not in next_seq:
                r = db.execute("SELECT MAX(seq) FROM stream_records WHERE stream = ? AND "
                               "shard = ?", (stream, shard)).fetchone()
                last = r[0] if r[0] is not None else self._shard_floor(db, stream, shard)
                next_seq[shard] = last + 1
            seq = next_seq[shard]
            next_seq[shard] = seq + 1
            rows.append((stream, shard, seq, key, data, now, trace))
            out.append((shard, seq))
        db.executemany("INSERT INTO stream_records (stream, shard, seq, partition_key, data, "
                       "arrival, trace) VALUES (?,?,?,?,?,?,?)", rows)
        touched.add(f"stream:{stream}")
        return out

    @staticmethod
    def _shard_floor(db: sqlite3.Connection, stream: str, shard: int) -> int:
        """Sequence numbers never go back, even after the records were trimmed."""
        r = db.execute("SELECT MAX(seq) FROM stream_checkpoints WHERE stream = ? AND shard = ?",
                       (stream, shard)).fetchone()
        return r[0] if r[0] is not None else 0

    def _op_read(self, db: sqlite3.Connection, touched: set[str], stream: str, shard: int,
                 after_seq: int, limit: int) -> list[StreamEntry]:
        rows = db.execute("SELECT stream, shard, seq, partition_key, data, arrival, trace FROM "
                          "stream_records WHERE stream = ? AND shard = ? AND seq > ? "
                          "ORDER BY seq LIMIT ?", (stream, shard, after_seq, limit)).fetchall()
        return [StreamEntry(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6]) for r in rows]

    def _op_latest_seq(self, db: sqlite3.Connection, touched: set[str], stream: str,
                       shard: int) -> int:
        r = db.execute("SELECT MAX(seq) FROM stream_records WHERE stream = ? AND shard = ?",
                       (stream, shard)).fetchone()
        return r[0] if r[0] is not None else self._shard_floor(db, stream, shard)

    def _op_get_checkpoint(self, db: sqlite3.Connection, touched: set[str], stream: str,
                           consumer: str, shard: int) -> int | None:
        r = db.execute("SELECT seq FROM stream_checkpoints WHERE stream = ? AND consumer = ? "
                       "AND shard = ?", (stream, consumer, shard)).fetchone()
        return r[0] if r else None

    def _op_set_checkpoint(self, db: sqlite3.Connection, touched: set[str], stream: str,
                           consumer: str, shard: int, seq: int) -> None:
        db.execute("INSERT INTO stream_checkpoints (stream, consumer, shard, seq) "
                   "VALUES (?,?,?,?) ON CONFLICT(stream, consumer, shard) DO UPDATE SET "
                   "seq = MAX(seq, excluded.seq)", (stream, consumer, shard, seq))

    async def append(self, stream: str, records: Sequence[tuple[str, bytes]], *,
                     shards: int, trace: str | None = None) -> list[tuple[int, int]]:
        for _, data in records:
            if len(data) > self.max_message_bytes:
                raise MessageTooLarge(stream, len(data), self.max_message_bytes)
        await self._ensure_trace_column()
        return await self._run(self._op_append, stream, list(records), shards, trace)

    async def read(self, stream: str, shard: int, after_seq: int, limit: int, *,
                   wait_s: float = 0.0) -> list[StreamEntry]:
        key = f"stream:{stream}"
        deadline = time.monotonic() + wait_s
        await self._ensure_trace_column()
        while True:
            generation = self._generation[key]
            out = await self._run(self._op_read, stream, shard, after_seq, limit)
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            if self._generation[key] == generation:
                await self._wait(key, remaining)

    async def latest_seq(self, stream: str, shard: int) -> int:
        return await self._run(self._op_latest_seq, stream, shard)

    async def get_checkpoint(self, stream: str, consumer: str, shard: int) -> int | None:
        return await self._run(self._op_get_checkpoint, stream, consumer, shard)

    async def set_checkpoint(self, stream: str, consumer: str, shard: int, seq: int) -> None:
        await self._run(self._op_set_checkpoint, stream, consumer, shard, seq)
