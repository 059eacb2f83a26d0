"""The PostgreSQL broker's ordered streams: records per (stream, shard, seq) and consumer
checkpoints. A mixin of PgBroker.

Seqs come from a counter row per (stream, shard), locked by the appending transaction
until it commits: appenders on any number of nodes take seqs one after another, so the
seqs of a shard are unique, increasing, and committed in order (a reader never sees seq
n+1 before n). A transaction locks its shards' rows in shard order, so two appenders to
the same shards cannot deadlock. A shard's first seq follows its highest checkpoint:
seqs never go back, even for records a consumer has already passed.

Each record keeps the traceparent of the hop that appended it (`trace`). A schema made
before that column existed gets it on first use, under the set-up advisory lock.
"""

from __future__ import annotations

import time
import zlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..broker import MessageTooLarge, StreamEntry
from .schema import NOW

# lock (creating if new) each shard's counter and read its last seq, in shard order; the
# no-op update is what locks an existing row
_LOCK_SHARDS = """
INSERT INTO stream_shards AS s (stream, shard, last_seq)
SELECT %(stream)s, r.shard,
       COALESCE((SELECT max(c.seq) FROM stream_checkpoints AS c
                 WHERE c.stream = %(stream)s AND c.shard = r.shard), 0)
FROM unnest(%(shards)s::int4[]) AS r(shard) ORDER BY r.shard
ON CONFLICT (stream, shard) DO UPDATE SET last_seq = s.last_seq
RETURNING s.shard, s.last_seq"""

_APPEND = f"""
WITH counters AS (
    UPDATE stream_shards AS s SET last_seq = c.last_seq
    FROM unnest(%(shards)s::int4[], %(lasts)s::int8[]) AS c(shard, last_seq)
    WHERE s.stream = %(stream)s AND s.shard = c.shard),
appended AS (
    INSERT INTO stream_records (stream, shard, seq, partition_key, data, arrival, trace)
    SELECT %(stream)s, r.shard, r.seq, r.key, r.data, {NOW}, %(trace)s::text
    FROM unnest(%(record_shards)s::int4[], %(seqs)s::int8[], %(keys)s::text[],
                %(data)s::bytea[]) AS r(shard, seq, key, data))
SELECT pg_notify(%(channel)s, 's:' || %(stream)s)"""

_READ = """
SELECT stream, shard, seq, partition_key, data, arrival, trace FROM stream_records
WHERE stream = %(stream)s AND shard = %(shard)s AND seq > %(after)s
ORDER BY seq LIMIT %(limit)s"""

_LATEST = """
SELECT COALESCE(
    (SELECT last_seq FROM stream_shards WHERE stream = %(stream)s AND shard = %(shard)s),
    (SELECT max(seq) FROM stream_checkpoints WHERE stream = %(stream)s AND shard = %(shard)s),
    0)"""

_HAS_TRACE = """
SELECT count(*) FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = 'stream_records'
  AND column_name = 'trace'"""

_SET_CHECKPOINT = """
INSERT INTO stream_checkpoints AS c (stream, consumer, shard, seq)
VALUES (%(stream)s, %(consumer)s, %(shard)s, %(seq)s)
ON CONFLICT (stream, consumer, shard) DO UPDATE SET seq = greatest(c.seq, excluded.seq)"""


class StreamOps:
    channel: str
    max_message_bytes: int
    _now: Any
    _rows: Any
    _count: Any
    _transaction: Any
    _wait: Any
    _waker: Any
    schema: str
    _stream_trace_ready: bool = False

    async def _ensure_trace_column(self) -> None:
        """Add `stream_records.trace` to a schema made before it existed (once per broker;
        the check reads the catalog only, so the usual case takes no lock)."""
        if self._stream_trace_ready:
            return
        (row,) = await self._rows("cannot read the stream schema", _HAS_TRACE, {})
        if not row[0]:
            async with self._transaction("cannot add the stream trace column") as conn:
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%(s)s))",
                                   {"s": f"squall-streams-trace:{self.schema}"})
                await conn.execute(
                    "ALTER TABLE stream_records ADD COLUMN IF NOT EXISTS trace text")
        self._stream_trace_ready = True

    async def append(self, stream: str, records: Sequence[tuple[str, bytes]], *,
                     shards: int, trace: str | None = None) -> list[tuple[int, int]]:
        """Records with one partition key go to one shard (crc32 of the key, as the
        embedded broker does), in the order given."""
        for _, data in records:
            if len(data) > self.max_message_bytes:
                raise MessageTooLarge(stream, len(data), self.max_message_bytes)
        if not records:
            return []
        await self._ensure_trace_column()
        placed = [zlib.crc32(key.encode()) % shards for key, _ in records]
        counts = Counter(placed)
        order = sorted(counts)
        async with self._transaction(f"cannot append to stream {stream!r}") as conn:
            cur = await conn.execute(_LOCK_SHARDS, {"stream": stream, "shards": order})
            next_seq = {shard: last + 1 for shard, last in await cur.fetchall()}
            out = []
            for shard in placed:
                out.append((shard, next_seq[shard]))
                next_seq[shard] += 1
            await conn.execute(_APPEND, {
                "now": self._now(), "channel": self.channel, "stream": stream,
                "shards": order, "lasts": [next_seq[s] - 1 for s in order],
                "record_shards": placed, "seqs": [seq for _, seq in out],
                "keys": [key for key, _ in records], "data": [data for _, data in records],
                "trace": trace})
        return out

    async def read(self, stream: str, shard: int, after_seq: int, limit: int, *,
                   wait_s: float = 0.0) -> list[StreamEntry]:
        key = f"s:{stream}"
        deadline = time.monotonic() + wait_s
        await self._ensure_trace_column()
        while True:
            generation = self._waker.generation(key)
            rows = await self._rows(f"cannot read stream {stream!r}", _READ, {
                "stream": stream, "shard": shard, "after": after_seq, "limit": limit})
            remaining = deadline - time.monotonic()
            if rows or remaining <= 0:
                return [StreamEntry(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6])
                        for r in rows]
            await self._wait(key, generation, remaining)

    async def latest_seq(self, stream: str, shard: int) -> int:
        (row,) = await self._rows(f"cannot read stream {stream!r}", _LATEST,
                                  {"stream": stream, "shard": shard})
        return row[0]

    async def get_checkpoint(self, stream: str, consumer: str, shard: int) -> int | None:
        rows = await self._rows(
            f"cannot read the checkpoint of {consumer!r} on stream {stream!r}",
            "SELECT seq FROM stream_checkpoints WHERE stream = %(stream)s "
            "AND consumer = %(consumer)s AND shard = %(shard)s",
            {"stream": stream, "consumer": consumer, "shard": shard})
        return rows[0][0] if rows else None

    async def set_checkpoint(self, stream: str, consumer: str, shard: int, seq: int) -> None:
        """A checkpoint never goes back: a lower seq than the stored one is ignored."""
        await self._count(f"cannot checkpoint {consumer!r} on stream {stream!r}",
                          _SET_CHECKPOINT,
                          {"stream": stream, "consumer": consumer, "shard": shard, "seq": seq})
