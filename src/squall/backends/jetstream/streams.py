"""The JetStream broker's ordered streams: a limits stream with one subject per
(stream, shard). A mixin of NatsBroker.

Records with one partition key go to one shard (crc32 of the key, as on SQLite) and are
published in order on one connection, so the server stores them in order. Their
sequence numbers are the stream's: increasing per shard, never reused, with gaps where
other shards' records went (a consumer's lag is an upper bound). Reads go through a
short-lived consumer starting after the caller's sequence, so a read that finds nothing
waits on the server for the next append. Checkpoints are KV records that only move
forward (compare-and-set), whichever node writes them. A record carries the traceparent
of the hop that appended it in the `traceparent` header.
"""

from __future__ import annotations

import asyncio
import secrets
import zlib
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from nats.aio.msg import Msg

from ..broker import BrokerError, MessageTooLarge, StreamEntry
from .connection import Connection
from .kv import Keep, KvStore, Write
from .messages import H_TRACE, MSG_ID, read_text_header, text_header, trace_header
from .names import Names, token
from .receipts import Receipt

H_KEY = "Squall-Key"
H_ARRIVAL = "Squall-Arrival"
CHUNK = 1000


class StreamOps:
    clock: Callable[[], float]
    conn: Connection
    kv: KvStore
    names: Names
    replicas: int
    _ready: Callable[[], Awaitable[None]]
    ensure_stream: Callable[..., Awaitable[dict[str, Any]]]
    _streams_ready: bool = False

    @property
    def max_message_bytes(self) -> int:
        raise NotImplementedError  # the broker's

    async def _ensure_streams(self) -> None:
        if not self._streams_ready:
            await self.ensure_stream({
                "name": self.names.streams, "subjects": [f"{self.names.prefix}.s.>"],
                "retention": "limits", "storage": "file", "num_replicas": self.replicas,
                "duplicate_window": int(120e9), "allow_direct": True,
            })
            self._streams_ready = True

    async def append(self, stream: str, records: Sequence[tuple[str, bytes]], *,
                     shards: int, trace: str | None = None) -> list[tuple[int, int]]:
        await self._ready()
        for _, data in records:
            if len(data) > self.max_message_bytes:
                raise MessageTooLarge(stream, len(data), self.max_message_bytes)
        await self._ensure_streams()
        arrival = repr(self.clock())
        placed = [(zlib.crc32(key.encode()) % shards, key, data) for key, data in records]
        extra = {H_TRACE: trace_header(trace)} if trace else {}
        acks = await asyncio.gather(*[self.conn.publish(
            self.names.stream_subject(stream, shard), data,
            {H_KEY: text_header(key), H_ARRIVAL: arrival,
             MSG_ID: f"r:{secrets.token_urlsafe(12)}", **extra})
            for shard, key, data in placed])
        return [(shard, seq) for (shard, _, _), (seq, _) in zip(placed, acks, strict=True)]

    async def read(self, stream: str, shard: int, after_seq: int, limit: int, *,
                   wait_s: float = 0.0) -> list[StreamEntry]:
        await self._ready()
        await self._ensure_streams()
        got = await self._fetch(self.names.streams, self.names.stream_subject(stream, shard),
                                after_seq + 1, limit, wait_s)
        out = []
        for m in got:
            r = Receipt.of(m.reply or "", 0.0)
            headers = m.headers or {}
            if r is not None:
                out.append(StreamEntry(stream, shard, r.stream_seq,
                                       read_text_header(headers.get(H_KEY)) or "",
                                       bytes(m.data), float(headers.get(H_ARRIVAL, 0.0)),
                                       headers.get(H_TRACE)))
        return out

    async def latest_seq(self, stream: str, shard: int) -> int:
        await self._ready()
        await self._ensure_streams()
        m = await self.conn.direct_get(self.names.streams,
                                       {"last_by_subj": self.names.stream_subject(stream, shard)})
        return int((m.headers or {})["Nats-Sequence"]) if m is not None else 0

    # -- checkpoints -----------------------------------------------------------------

    def _checkpoint_key(self, stream: str, consumer: str, shard: int) -> str:
        return f"c.{token(stream)}.{token(consumer)}.{shard}"

    async def get_checkpoint(self, stream: str, consumer: str, shard: int) -> int | None:
        await self._ready()
        await self.kv.ensure(self.names.state)
        value, _ = await self.kv.get(self.names.state,
                                     self._checkpoint_key(stream, consumer, shard))
        return int(value["seq"]) if value is not None else None

    async def set_checkpoint(self, stream: str, consumer: str, shard: int, seq: int) -> None:
        await self._ready()
        await self.kv.ensure(self.names.state)

        def decide(v: dict[str, Any] | None) -> Keep[None] | Write[None]:
            if v is not None and int(v["seq"]) >= seq:
                return Keep(None)  # never goes back
            return Write({"seq": seq}, None)

        await self.kv.cas(self.names.state, self._checkpoint_key(stream, consumer, shard),
                          decide)

    # -- reading through short-lived consumers ---------------------------------------

    async def _fetch(self, stream: str, subject: str, start: int, limit: int,
                     wait_s: float = 0.0) -> list[Msg]:
        """Up to `limit` messages on `subject` from sequence `start`; when there are none,
        wait up to `wait_s` for the first."""
        if limit <= 0:
            return []
        name = await self._reader(stream, subject, start)
        try:
            got = await self.conn.pull(stream, name, limit)
            if not got and wait_s > 0:
                got = await self.conn.pull(stream, name, 1, wait_s=wait_s)
                if got and limit > 1:
                    got += await self.conn.pull(stream, name, limit - 1)
            return got
        finally:
            await self._drop_reader(stream, name)

    async def read_subject(self, stream: str, subject: str, start: int,
                           count: int) -> AsyncIterator[tuple[int, bytes]]:
        """(sequence, data) of the `count` messages stored on `subject` from `start`."""
        name = await self._reader(stream, subject, start)
        try:
            seen = 0
            while seen < count:
                got = await self.conn.pull(stream, name, min(CHUNK, count - seen))
                for m in got:
                    r = Receipt.of(m.reply or "", 0.0)
                    if r is not None:
                        yield r.stream_seq, bytes(m.data)
                seen += len(got)
                if not got:
                    break
        finally:
            await self._drop_reader(stream, name)

    async def _reader(self, stream: str, subject: str, start: int) -> str:
        """An ephemeral consumer of `subject` from sequence `start`, acking nothing (it
        removes itself when idle, should the delete after the read be lost)."""
        info = await self.conn.api(f"CONSUMER.CREATE.{stream}", {
            "stream_name": stream, "config": {
                "filter_subject": subject, "deliver_policy": "by_start_sequence",
                "opt_start_seq": max(1, start), "ack_policy": "none",
                "inactive_threshold": int(30e9), "mem_storage": True,
            }})
        return str(info["name"])

    async def _drop_reader(self, stream: str, name: str) -> None:
        try:
            await self.conn.api(f"CONSUMER.DELETE.{stream}.{name}", retry=False)
        except BrokerError:
            pass  # it removes itself when idle
