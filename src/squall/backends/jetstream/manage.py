"""Looking at and managing stored queue messages on JetStream: peek, redrive, delete,
update_body, stats, purge. A mixin of NatsBroker (broker.py has how queues map onto
JetStream). Messages are found by the stream sequence in their id, by a sequence
remembered from a peek, or by scanning the queue's subjects (moved messages).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import AsyncIterator, Awaitable, Callable, Mapping, Sequence

from nats.aio.msg import Msg

from ..broker import Delivery, MessageTooLarge, QueueStats
from .connection import CONSUMER_NOT_FOUND, Connection, JetStreamError
from .kv import KvStore
from .messages import H_COUNT, H_DUE, H_ERROR, H_REASON, H_SOURCE, moved, read_text_header
from .names import Names, token


class ManageOps:
    conn: Connection
    kv: KvStore
    names: Names
    max_message_bytes: int
    _tag: str
    _seqs: OrderedDict[tuple[str, str], int]
    _ready: Callable[[], Awaitable[None]]
    message_id: Callable[[Mapping[str, str], int], str]
    move_id: Callable[[str, int], str]
    delivery: Callable[..., Delivery]

    async def _scan(self, subject: str, start: int = 1,
                    until: int | None = None) -> AsyncIterator[tuple[int, Msg]]:
        """Stored messages on `subject` (wildcards allowed) from sequence `start` on (to
        `until`, inclusive)."""
        while True:
            m = await self.conn.direct_get(self.names.messages,
                                           {"seq": start, "next_by_subj": subject})
            if m is None:
                return
            seq = int((m.headers or {})["Nats-Sequence"])
            if until is not None and seq > until:
                return
            yield seq, m
            start = seq + 1

    def _remember(self, queue: str, mid: str, seq: int) -> None:
        self._seqs[(queue, mid)] = seq
        self._seqs.move_to_end((queue, mid))
        while len(self._seqs) > 10_000:
            self._seqs.popitem(last=False)

    async def _locate(self, queue: str, ids: Sequence[str]) -> dict[str, int]:
        """The stream sequences of `queue`'s messages `ids` (those found)."""
        subjects = (self.names.queue_subject(queue), self.names.delayed_subject(queue))
        found: dict[str, int] = {}
        for mid in ids:  # by the sequence in the id, or remembered from a peek
            guesses = [self._seqs.get((queue, mid))]
            tag, _, number = mid.rpartition("-")
            if tag == self._tag and number.isdigit():
                guesses.append(int(number))
            for guess in filter(None, guesses):
                m = await self.conn.direct_get(self.names.messages, {"seq": guess})
                hdrs = (m.headers or {}) if m is not None else {}
                if (m is not None and hdrs.get("Nats-Subject") in subjects
                        and self.message_id(hdrs, guess) == mid):
                    found[mid] = guess
                    break
        missing = set(ids) - set(found)
        if missing:  # moved messages (dead-lettered, redriven, updated): look through
            async for seq, m in self._scan(self.names.any_subject(queue)):
                mid = self.message_id(m.headers or {}, seq)
                if mid in missing:
                    found[mid] = seq
                    missing.discard(mid)
                    if not missing:
                        break
        return found

    async def _delete_seq(self, seq: int) -> bool:
        try:
            r = await self.conn.api(f"STREAM.MSG.DELETE.{self.names.messages}", {"seq": seq})
        except JetStreamError:
            return False  # already gone
        return bool(r.get("success"))

    async def peek(self, queue: str, limit: int = 100,
                   after_id: str | None = None) -> list[Delivery]:
        await self._ready()
        start = 1
        if after_id is not None:
            seq = (await self._locate(queue, [after_id])).get(after_id)
            start = seq + 1 if seq is not None else 1
        out: list[Delivery] = []
        if limit <= 0:
            return out
        async for seq, m in self._scan(self.names.any_subject(queue), start):
            d = self.delivery(queue, m.headers or {}, m.data, seq)
            self._remember(queue, d.message_id, seq)
            out.append(d)
            if len(out) >= limit:
                break
        return out

    async def redrive(self, dlq: str, *, to: str | None = None,
                      message_ids: Sequence[str] | None = None, limit: int = 1000) -> int:
        await self._ready()
        wanted = set(message_ids) if message_ids is not None else None
        done = seen = 0
        info = await self.conn.api(f"STREAM.INFO.{self.names.messages}")
        last = int(info["state"]["last_seq"])  # not what this redrive adds (to=dlq)
        async for seq, m in self._scan(self.names.any_subject(dlq), until=last):
            if seen >= limit or (wanted is not None and not wanted):
                break
            headers = m.headers or {}
            mid = self.message_id(headers, seq)
            if wanted is not None:
                if mid not in wanted:
                    continue
                wanted.discard(mid)
            seen += 1
            target = to or read_text_header(headers.get(H_SOURCE))
            if not target:
                continue
            await self.conn.publish(self.names.queue_subject(target), m.data or b"",
                                    moved(headers, mid, self.move_id("rd", seq)))
            await self._delete_seq(seq)
            done += 1
        return done

    async def delete(self, queue: str, message_ids: Sequence[str]) -> int:
        await self._ready()
        seqs = await self._locate(queue, list(message_ids))
        return sum(await asyncio.gather(*[self._delete_seq(s) for s in seqs.values()]))

    async def update_body(self, queue: str, message_id: str, body: bytes) -> bool:
        await self._ready()
        if len(body) > self.max_message_bytes:
            raise MessageTooLarge(queue, len(body), self.max_message_bytes)
        seq = (await self._locate(queue, [message_id])).get(message_id)
        if seq is None:
            return False
        m = await self.conn.direct_get(self.names.messages, {"seq": seq})
        if m is None:
            return False
        headers = m.headers or {}
        subject = headers.get("Nats-Subject", "")
        if subject == self.names.queue_subject(queue) and await self._ever_delivered(queue, seq):
            return False
        copy = moved(headers, message_id, self.move_id("ub", seq))
        copy.update({k: headers[k] for k in (H_COUNT, H_ERROR, H_REASON, H_SOURCE, H_DUE)
                     if k in headers})
        new_seq, _ = await self.conn.publish(subject, body, copy)
        if not await self._delete_seq(seq):  # consumed meanwhile: take the copy back
            await self._delete_seq(new_seq)
            return False
        self._remember(queue, message_id, new_seq)
        return True

    async def _ever_delivered(self, queue: str, seq: int) -> bool:
        stream, name = self.names.messages, self.names.queue_consumer(queue)
        try:
            info = await self.conn.api(f"CONSUMER.INFO.{stream}.{name}")
        except JetStreamError as exc:
            if exc.err_code == CONSUMER_NOT_FOUND:
                return False
            raise
        return int(info["delivered"]["stream_seq"]) >= seq

    async def stats(self, queue: str) -> QueueStats:
        """Counts from the queue's consumer (undelivered; delivered and not acked) once it
        exists, else the stored messages; delayed ones from the stream. The consumer's
        counts also stay right where the stream's do not: 2.9 can lose the removal of
        acked messages in a crash, leaving copies no consumer will deliver again."""
        await self._ready()
        info = await self.conn.api(f"STREAM.INFO.{self.names.messages}",
                                   {"subjects_filter": self.names.any_subject(queue)})
        subjects = info["state"].get("subjects") or {}
        stored = int(subjects.get(self.names.queue_subject(queue), 0))
        delayed = int(subjects.get(self.names.delayed_subject(queue), 0))
        try:
            ci = await self.conn.api(
                f"CONSUMER.INFO.{self.names.messages}.{self.names.queue_consumer(queue)}")
        except JetStreamError as exc:
            if exc.err_code != CONSUMER_NOT_FOUND:
                raise
            return QueueStats(queue, stored, 0, delayed)
        visible = min(int(ci.get("num_pending", 0)), stored)
        in_flight = min(int(ci.get("num_ack_pending", 0)), stored - visible)
        return QueueStats(queue, visible, in_flight, delayed)

    async def purge(self, queue: str) -> int:
        await self._ready()
        purged = 0
        for subject in (self.names.queue_subject(queue), self.names.delayed_subject(queue)):
            r = await self.conn.api(f"STREAM.PURGE.{self.names.messages}", {"filter": subject})
            purged += int(r.get("purged", 0))
        await self.kv.purge(self.names.errors, token(queue))
        return purged
