"""The distributed queue broker on NATS JetStream (nats-server 2.9 or later).

How the Protocol maps onto JetStream (names: see names.py):

* Queues are subjects of one work-queue stream, file storage. Each queue has a durable
  pull consumer; its AckWait is the visibility timeout of the first receive that created
  it. A receive asking for another visibility timeout re-times each delivery at once
  with a nak-with-delay (the server keeps it pending, hidden until the delay ends: a
  per-delivery visibility timeout, measured on 2.9.10); `extend` does the same. Editing
  AckWait instead would not do: it is accepted, but re-times every pending delivery of
  the consumer (measured). MaxDeliver is unlimited and MaxAckPending too: the caller
  counts receives and dead-letters.
* Receipts identify one delivery although the server applies an ack from any earlier
  delivery's reply subject (measured, nats-server #4786): see receipts.py.
* Waiting is the server's: `receive(wait_s)` is a pull request that the server answers
  when a message arrives (from any node) or when it expires.
* `send` returns after the server acknowledged the write (PubAck) to the file-storage
  stream. Every message carries a Nats-Msg-Id (its dedup key's, else a random one), so
  the connection's retries never store it twice. Message ids are the stream sequence
  (with a tag of the stream's creation), so a duplicate's acknowledgement, which carries
  the first message's sequence, gives back its id even after it was consumed.
* Deduplication is JetStream's own duplicate window (`dedup_window_s`, per broker, on
  the server's clock), keyed per queue.
* Delays: a delayed message waits on its queue's delayed subject in the same stream. Every
  broker instance runs a mover (delays.py) on one shared durable consumer: it re-times
  each waiting message with a nak-with-delay until it is due, then publishes it to the
  queue and acks it. Any node's mover may do it; none is special.
* Dead letters and redrive copy the message (with its id, attempts and last error in
  headers) to the other queue, deduplicated by a Msg-Id derived from the source, then
  settle the source: a crash between the two steps repeats the copy, which the server
  drops as a duplicate within the window.
* The last error of a nacked message lives in a KV record until the message is settled.
* Schedule ticks, leases, idempotency records and stream checkpoints are KV records
  changed by compare-and-set on revisions (kv.py, records.py); the bus archive is a
  stream filed by hour, ordered streams are subjects per shard (streams.py).
* peek, redrive, delete, update_body, stats and purge: manage.py.

Where this deviates from the design brief, and why (nats-server 2.9):

* No fsync before the acknowledgement: 2.9's file store syncs on its own interval (2 min)
  and has no setting for it (2.9.10 rejects `sync_interval` as an unknown field; later
  servers accept `sync_interval: always`). An acknowledged send survives the
  server process being killed (the tests kill -9 it), not a power loss of a single
  server; run `replicas=3` on a cluster for that, or a later server with
  `sync_interval: always`.
* send / send_many are not atomic across messages: 2.9 has no atomic batch publish.
  Every message is validated first (MessageTooLarge rejects the whole call before
  anything is published), then all are published concurrently. If any publish fails,
  the messages of the call that were stored and carry no dedup key are deleted again
  and BrokerError is raised; messages with a dedup key stay (a retried call finds them
  by key). A message a consumer received in that moment may still be processed.
* `publish` (the bus) enqueues first, with Msg-Ids derived from the event ids, then
  archives: a retried publish never enqueues twice within the duplicate window, and a
  crash between the steps loses nothing. "Archived once" holds within that window (the
  archive's duplicate window is the same), not forever as on SQLite.
* MaxDeliver is not used: the caller decides when to dead-letter (the Protocol's
  receive does not carry max_receive), and a message whose last delivery crashed would
  otherwise be stranded on 2.9 (it only emits an advisory).
* stats: `visible` and `in_flight` are the consumer's pending and ack-pending counts;
  `in_flight` includes messages nacked with a delay (SQLite counts those as delayed)
  and ones whose visibility timeout ended but are not yet handed out again; `delayed`
  counts messages waiting for their send delay.
* A crash of a 2.9 server (kill -9, measured on 2.9.10) loses no acknowledged send, but
  acks of the last ~0.1 s come back as pending deliveries (redelivered after their
  visibility timeout: at-least-once, a duplicate), and the work-queue removal of acked
  messages is not persisted: they stay stored, never delivered again (stats does not
  count them).
* `update_body` republishes the message (same id, new body) and deletes the old one, so
  it moves to the back of its queue; a message ever delivered counts as in flight and
  is refused (the server does not say which delivered messages are pending).
* Visibility timeouts, retry delays, send delays and the duplicate window run on the
  server's clock; the injected `clock` stamps `sent_at` and stream records' arrival and
  decides records' expiry (idempotency, leases).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections import OrderedDict
from typing import Any, Callable, Mapping, Sequence

from nats.aio.msg import Msg

from ..broker import BrokerError, Delivery, MessageTooLarge, OutMessage
from .connection import (
    CONSUMER_NOT_FOUND,
    STREAM_NAME_IN_USE,
    STREAM_NOT_FOUND,
    Connection,
    JetStreamError,
    parse_url,
)
from .delays import DelayMover
from .delays import stop as stop_mover
from .kv import KvStore, Write
from .manage import ManageOps
from .messages import (
    H_ATTRS,
    H_COUNT,
    H_DUE,
    H_ERROR,
    H_ID,
    H_REASON,
    H_SENT,
    H_SOURCE,
    H_TRACE,
    MSG_ID,
    moved,
    nak_delay,
    read_text_header,
    text_header,
    trace_header,
)
from .names import Names, digest, token
from .receipts import DeliveryLedger, Receipt, stale_margin
from .records import RecordOps
from .streams import StreamOps

log = logging.getLogger("squall.broker.nats")

DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
DEFAULT_DEDUP_WINDOW_S = 300.0
HEADER_ROOM = 8 * 1024  # of the server's max_payload, kept for our headers


class NatsBroker(RecordOps, StreamOps, ManageOps):
    """`NatsBroker("nats://127.0.0.1:4222")`: the QueueBroker of many nodes on one NATS
    server or cluster. Construction does no I/O; the first operation connects (inside
    the running loop) and raises BrokerError, naming host:port, if it cannot."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        max_message_bytes: int | None = None,
        dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S,
        prefix: str = "SQUALL",
        replicas: int = 1,
        connect_timeout_s: float = 2.0,
        request_timeout_s: float = 5.0,
        idempotency_max_age_s: float = 7 * 86400.0,
        error_max_age_s: float = 14 * 86400.0,
    ) -> None:
        """`max_message_bytes` defaults to the server's max_payload less room for headers
        (at most 1 MiB); `dedup_window_s` is the messages stream's duplicate window (all
        nodes should agree: the last to start sets it); `prefix` names everything this
        broker creates; `replicas` is the streams' replication on a cluster."""
        self.url = url
        self.clock = clock
        self.names = Names(prefix)
        self.dedup_window_s = dedup_window_s
        self.replicas = replicas
        self.idempotency_max_age_s = idempotency_max_age_s
        self.error_max_age_s = error_max_age_s
        self._servers = parse_url(url)
        self._timeouts = (connect_timeout_s, request_timeout_s)
        self._max_bytes = max_message_bytes
        self.conn = self._new_connection()
        self.kv = KvStore(self.conn, replicas=replicas)
        self._ledger = DeliveryLedger()
        self._consumers: dict[str, float] = {}  # queue -> its consumer's AckWait
        self._opening: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._tag = ""
        self._mover: tuple[DelayMover, asyncio.Future[None]] | None = None
        self._seqs: OrderedDict[tuple[str, str], int] = OrderedDict()  # (queue, id) -> seq
        super().__init__()

    def _new_connection(self) -> Connection:
        return Connection(self._servers, connect_timeout_s=self._timeouts[0],
                          request_timeout_s=self._timeouts[1])

    # -- opening ---------------------------------------------------------------------

    async def _ready(self) -> None:
        if self._closed:
            raise BrokerError("the broker is closed")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise BrokerError("this NatsBroker was opened on another event loop: open one "
                              "broker per loop")
        if self._opening is None:
            self._opening = loop.create_task(self._open())
        opening = self._opening
        try:
            await asyncio.shield(opening)
        except BaseException:
            if opening.done() and self._opening is opening:
                self._opening = None  # failed: the next operation tries again
            raise

    async def _open(self) -> None:
        conn = self.conn
        if conn.closed:
            conn = self.conn = self._new_connection()
            self.kv = KvStore(conn, replicas=self.replicas)
        try:
            await conn.open()
            room = conn.max_payload - HEADER_ROOM
            if self._max_bytes is None:
                self._max_bytes = min(DEFAULT_MAX_MESSAGE_BYTES, room)
            elif self._max_bytes > room:
                raise BrokerError(
                    f"max_message_bytes={self._max_bytes} is over what the NATS server at "
                    f"{conn.where} accepts ({conn.max_payload} bytes max_payload, less "
                    f"{HEADER_ROOM} for headers): raise max_payload in its configuration")
            info = await self.ensure_stream({
                "name": self.names.messages,
                "subjects": [f"{self.names.prefix}.q.>", f"{self.names.prefix}.d.>"],
                "retention": "workqueue", "storage": "file", "num_replicas": self.replicas,
                "duplicate_window": int(self.dedup_window_s * 1e9), "allow_direct": True,
            }, keep_in_line=("duplicate_window",))
        except BaseException:
            await conn.close()
            raise
        created = str(info.get("created", ""))
        self._tag = hashlib.sha256(f"{self.names.messages}@{created}".encode()).hexdigest()[:6]
        mover = DelayMover(self)
        self._mover = (mover, asyncio.ensure_future(mover.run()))

    async def ensure_stream(self, config: dict[str, Any],
                            keep_in_line: Sequence[str] = ()) -> dict[str, Any]:
        """Create a stream unless it exists; bring the `keep_in_line` settings of an
        existing one to this broker's values. Its info."""
        name = config["name"]
        try:
            info = await self.conn.api(f"STREAM.INFO.{name}")
        except JetStreamError as exc:
            if exc.err_code != STREAM_NOT_FOUND:
                raise
            try:
                return await self.conn.api(f"STREAM.CREATE.{name}", config)
            except JetStreamError as exc2:
                if exc2.err_code != STREAM_NAME_IN_USE:
                    raise
                info = await self.conn.api(f"STREAM.INFO.{name}")
        current = info["config"]
        changed = {k: config[k] for k in keep_in_line if current.get(k) != config[k]}
        if changed:
            info = await self.conn.api(f"STREAM.UPDATE.{name}", {**current, **changed})
        return info

    async def _consumer(self, queue: str, visibility_s: float) -> float:
        """The AckWait of `queue`'s durable consumer, created on first use."""
        ack_wait = self._consumers.get(queue)
        if ack_wait is not None:
            return ack_wait
        stream, name = self.names.messages, self.names.queue_consumer(queue)
        try:  # 2.9 has no create-only call: a create with another config would update it
            info = await self.conn.api(f"CONSUMER.INFO.{stream}.{name}")
        except JetStreamError as exc:
            if exc.err_code != CONSUMER_NOT_FOUND:
                raise
            info = await self.conn.api(f"CONSUMER.DURABLE.CREATE.{stream}.{name}", {
                "stream_name": stream, "config": {
                    "durable_name": name, "filter_subject": self.names.queue_subject(queue),
                    "ack_policy": "explicit", "ack_wait": int(max(visibility_s, 0.001) * 1e9),
                    "max_deliver": -1, "max_ack_pending": -1, "deliver_policy": "all",
                }})
        ack_wait = float(info["config"]["ack_wait"]) / 1e9
        self._consumers[queue] = ack_wait
        return ack_wait

    @property
    def max_message_bytes(self) -> int:
        return self._max_bytes or DEFAULT_MAX_MESSAGE_BYTES

    def _check(self, queue: str, messages: Sequence[OutMessage]) -> None:
        limit = self.max_message_bytes
        for m in messages:
            if len(m.body) > limit:
                raise MessageTooLarge(queue, len(m.body), limit)

    # -- sending ---------------------------------------------------------------------

    async def send(self, queue: str, messages: Sequence[OutMessage]) -> list[str]:
        await self._ready()
        self._check(queue, messages)
        return (await self._send_all({queue: messages}, self.clock())).get(queue, [])

    async def send_many(self, batches: Mapping[str, Sequence[OutMessage]]) -> dict[str, list[str]]:
        await self._ready()
        for q, msgs in batches.items():
            self._check(q, msgs)
        return await self._send_all(batches, self.clock())

    async def _send_all(self, batches: Mapping[str, Sequence[OutMessage]], now: float, *,
                        msg_ids: Callable[[str, int], str] | None = None) -> dict[str, list[str]]:
        """Publish every message concurrently (in order on the connection). On a failure,
        delete again what was stored with a random Msg-Id, then raise."""
        jobs = [(q, i, m) for q, msgs in batches.items() for i, m in enumerate(msgs)]
        results = await asyncio.gather(
            *[self._publish(q, m, now, msg_ids(q, i) if msg_ids else None) for q, i, m in jobs],
            return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            undo = [r[1] for (_, _, m), r in zip(jobs, results, strict=True)
                    if not isinstance(r, BaseException) and not r[2]
                    and m.dedup_key is None and msg_ids is None]
            deleted = await asyncio.gather(*[self._delete_seq(s) for s in undo],
                                           return_exceptions=True)
            undone = sum(1 for d in deleted if d is True)
            first = failures[0]
            if not isinstance(first, Exception):
                raise first
            raise BrokerError(f"sending to {', '.join(sorted(batches))} failed: {first}; "
                              f"{undone} of the {len(jobs)} messages had been stored and were "
                              "deleted again") from first
        out: dict[str, list[str]] = {}
        for (q, _, _), r in zip(jobs, results, strict=True):
            assert not isinstance(r, BaseException)
            out.setdefault(q, []).append(r[0])
        return out

    async def _publish(self, queue: str, m: OutMessage, sent_at: float,
                       msg_id: str | None = None) -> tuple[str, int, bool]:
        """Store one message: (its id, stream sequence, whether it was a duplicate)."""
        headers = {H_SENT: repr(sent_at)}
        if m.attributes:
            headers[H_ATTRS] = json.dumps(m.attributes)
        if m.trace:
            headers[H_TRACE] = trace_header(m.trace)
        if msg_id is not None:  # the caller's identity for it (an event's, a tick's)
            headers[MSG_ID] = msg_id
        elif m.dedup_key is not None:
            headers[MSG_ID] = f"k:{token(queue)}:{digest(m.dedup_key)}"
        else:  # only so that the connection's retries cannot store it twice
            headers[MSG_ID] = f"r:{secrets.token_urlsafe(12)}"
        subject = self.names.queue_subject(queue)
        if m.delay_s > 0:
            subject = self.names.delayed_subject(queue)
            headers[H_DUE] = f"{time.time() + m.delay_s:.6f}"
        seq, duplicate = await self.conn.publish(subject, m.body, headers)
        return self._id(seq), seq, duplicate

    def _id(self, seq: int) -> str:
        return f"{self._tag}-{seq}"

    def message_id(self, headers: Mapping[str, str], seq: int) -> str:
        """A stored message's id: its own once it moved, else its place in the stream."""
        return headers.get(H_ID) or self._id(seq)

    def move_id(self, kind: str, seq: int) -> str:
        """The Msg-Id of moving the message at `seq` (dead letter, redrive, delay, ...)."""
        return f"{kind}:{self._tag}-{seq}"

    # -- receiving -------------------------------------------------------------------

    async def receive(self, queue: str, max_messages: int = 1, *,
                      visibility_timeout_s: float = 30.0, wait_s: float = 0.0) -> list[Delivery]:
        await self._ready()
        if max_messages <= 0:
            return []
        vt = max(0.0, visibility_timeout_s)
        ack_wait = await self._consumer(queue, vt)
        stream, consumer = self.names.messages, self.names.queue_consumer(queue)
        pulled_at = time.monotonic()
        try:
            got = [(m, pulled_at) for m in await self.conn.pull(stream, consumer, max_messages)]
            woke: Msg | None = None
            if not got and wait_s > 0:
                first = await self.conn.pull(stream, consumer, 1, wait_s=wait_s)
                if first:
                    woke = first[0]
                    got = [(woke, pulled_at)]
                    if max_messages > 1:
                        at = time.monotonic()
                        got += [(m, at) for m in
                                await self.conn.pull(stream, consumer, max_messages - 1)]
        except BrokerError:
            self._consumers.pop(queue, None)  # deleted under us? look again next time
            raise
        return await self._deliveries(queue, got, vt, ack_wait, woke)

    async def _deliveries(self, queue: str, got: list[tuple[Msg, float]], vt: float,
                          ack_wait: float, woke: Msg | None) -> list[Delivery]:
        # Re-time the deliveries whose server timer is not the one asked for: another
        # visibility timeout than the consumer's AckWait, or a long-polled one (delivered
        # at an unknown moment of the poll). Then each receipt's deadline is measured
        # from before the request that set its timer.
        retime = [m for m, _ in got if m is woke or abs(vt - ack_wait) > 0.0005]
        retimed_at = time.monotonic()
        done = await asyncio.gather(*[self.conn.settle(m.reply, nak_delay(vt)) for m in retime])
        retimed = {id(m) for m, ok in zip(retime, done, strict=True) if ok}
        redelivered = [r.stream_seq for r in (Receipt.of(m.reply or "", 0.0) for m, _ in got)
                       if r is not None and r.delivered > 1]
        errors = await self._last_errors(queue, redelivered)
        wall_offset = time.time() - time.monotonic()
        out = []
        for m, pulled_at in got:
            if id(m) in retimed:
                base, timer = retimed_at, vt
            else:  # as the server timed it: from its delivery, which followed our pull
                base, timer = pulled_at, min(vt, ack_wait)
            deadline = base + timer - stale_margin(timer)
            receipt = Receipt.of(m.reply, deadline + wall_offset)
            if receipt is None:
                continue
            error = errors.get(receipt.stream_seq)
            self._ledger.issue(receipt, deadline, has_error=error is not None)
            out.append(self.delivery(queue, m.headers or {}, m.data, receipt.stream_seq,
                                     receipt=receipt.encode(), delivered=receipt.delivered,
                                     last_error=error))
        return out

    def delivery(self, queue: str, headers: Mapping[str, str], body: bytes, seq: int, *,
                 receipt: str = "", delivered: int = 0,
                 last_error: str | None = None) -> Delivery:
        attrs = headers.get(H_ATTRS)
        return Delivery(
            message_id=self.message_id(headers, seq), queue=queue, body=bytes(body),
            attributes=json.loads(attrs) if attrs else {}, receipt=receipt,
            receive_count=int(headers.get(H_COUNT, 0)) + delivered,
            sent_at=float(headers.get(H_SENT, 0.0)), trace=headers.get(H_TRACE),
            last_error=last_error or read_text_header(headers.get(H_ERROR)),
            dead_letter_reason=read_text_header(headers.get(H_REASON)),
            source_queue=read_text_header(headers.get(H_SOURCE)))

    def _error_key(self, queue: str, seq: int) -> str:
        return f"{token(queue)}.{seq}"

    async def _last_errors(self, queue: str, seqs: list[int]) -> dict[int, str]:
        """The last errors recorded (by nack) for `queue`'s messages `seqs`."""
        if not seqs:
            return {}
        await self.kv.ensure(self.names.errors, max_age_s=self.error_max_age_s)
        found = await asyncio.gather(*[self.kv.get(self.names.errors, self._error_key(queue, s))
                                       for s in seqs])
        return {s: v["error"] for s, (v, _) in zip(seqs, found, strict=True) if v is not None}

    async def _forget_error(self, queue: str, receipt: Receipt) -> None:
        if self._ledger.has_error(receipt):
            try:
                await self.kv.cas(self.names.errors, self._error_key(queue, receipt.stream_seq),
                                  lambda v: Write(None, None))
            except BrokerError as exc:  # it ages out with the bucket's max age
                log.debug("could not drop the error record of %s: %s", receipt.stream_seq, exc)

    # -- settling --------------------------------------------------------------------

    def _own(self, queue: str, text: str) -> Receipt | None:
        """The receipt `text`, if it is one of `queue`'s."""
        r = Receipt.parse(text)
        if r is None or r.stream != self.names.messages:
            return None
        return r if r.consumer == self.names.queue_consumer(queue) else None

    async def _ack(self, receipt: Receipt) -> bool:
        """Ack, retried while the receipt's own deadline has not passed."""
        return await self.conn.settle(receipt.reply, b"+ACK", retry=True,
                                      still_wanted=lambda: time.time() < receipt.deadline)

    async def ack(self, queue: str, receipts: Sequence[str]) -> list[bool]:
        await self._ready()

        async def one(text: str) -> bool:
            r = self._own(queue, text)
            if r is None or not self._ledger.claim(r):
                return False
            if not await self._ack(r):
                self._ledger.unclaim(r)
                return False
            await self._forget_error(queue, r)
            return True

        return list(await asyncio.gather(*[one(t) for t in receipts]))

    async def nack(self, queue: str, receipt: str, *, delay_s: float = 0.0,
                   error: str | None = None) -> bool:
        await self._ready()
        r = self._own(queue, receipt)
        if r is None or not self._ledger.claim(r):
            return False
        try:
            if error is not None:  # before the nak, so the redelivery finds it
                await self.kv.ensure(self.names.errors, max_age_s=self.error_max_age_s)
                await self.kv.cas(self.names.errors, self._error_key(queue, r.stream_seq),
                                  lambda v: Write({"error": error}, None))
            ok = await self.conn.settle(r.reply, nak_delay(delay_s) if delay_s > 0 else b"-NAK")
        except BaseException:
            self._ledger.unclaim(r)
            raise
        if not ok:
            self._ledger.unclaim(r)
        return ok

    async def extend(self, queue: str, receipt: str, visibility_timeout_s: float) -> bool:
        await self._ready()
        r = self._own(queue, receipt)
        if r is None or not self._ledger.usable(r):
            return False
        at = time.monotonic()
        vt = max(0.0, visibility_timeout_s)
        if not await self.conn.settle(r.reply, nak_delay(vt)):
            return False
        self._ledger.extend(r, at + vt - stale_margin(vt))
        return True

    async def dead_letter(self, queue: str, receipt: str, *, dlq: str, reason: str,
                          error: str | None = None) -> bool:
        await self._ready()
        r = self._own(queue, receipt)
        if r is None or not self._ledger.claim(r):
            return False
        try:
            stored = await self.conn.direct_get(self.names.messages, {"seq": r.stream_seq})
            if stored is None:  # deleted or purged meanwhile
                return False
            headers = stored.headers or {}
            if error is None and self._ledger.has_error(r):
                error = (await self._last_errors(queue, [r.stream_seq])).get(r.stream_seq)
            if error is None:
                error = read_text_header(headers.get(H_ERROR))
            copy = moved(headers, self.message_id(headers, r.stream_seq),
                         self.move_id("dl", r.stream_seq))
            copy[H_COUNT] = str(int(headers.get(H_COUNT, 0)) + r.delivered)
            copy[H_REASON] = text_header(reason)
            copy[H_SOURCE] = text_header(queue)
            if error is not None:
                copy[H_ERROR] = text_header(error)
            await self.conn.publish(self.names.queue_subject(dlq), stored.data or b"", copy)
        except BaseException:
            self._ledger.unclaim(r)
            raise
        # the copy is stored: if this ack is lost, the message comes back and its next
        # dead-lettering is dropped as a duplicate of this copy
        await self._ack(r)
        await self._forget_error(queue, r)
        return True

    # -- closing ---------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._mover is not None:
            tries = await stop_mover(*self._mover)
            if tries > 1:
                log.warning("stopping the delay mover took %d cancellations", tries)
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        await self.conn.close()

