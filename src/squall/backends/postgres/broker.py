"""The queue broker on PostgreSQL: any number of nodes sharing one database.

The same semantics as the embedded broker (squall.backends.sqlite.broker), checked by the
same conformance suite. This module holds the connections and the queues; the bus
archive, schedule ticks, idempotency records and leases (records.py) and ordered streams
(streams.py) are mixins using the same helpers.

Connections. A psycopg AsyncConnectionPool, opened lazily inside the running loop by the
first call (the constructor does no network I/O), plus one dedicated listening connection
(waker.py). That one is always reading, so it is the first to learn that the server went
away; it then has the pool check its idle connections (dropping and replacing the dead
ones) while it reconnects itself. A call that still meets a broken connection raises
BrokerError after the same check, and the caller retries on a live one. Success is only
reported after COMMIT returned, and with the server's default synchronous_commit a
commit is durable. (Connections are not checked at every checkout: that would cost a
round trip per call, and psycopg_pool backs off a second or more between failed checks.)

Transactions. Every call is one transaction: a single statement where it can be (data-
modifying CTEs, arrays passed whole and `unnest`ed, so a batch costs one round trip), else
BEGIN … COMMIT on one connection.

Competing consumers. `receive` picks visible rows with `SELECT … FOR UPDATE SKIP LOCKED`
and stamps them with a fresh receipt in the same statement, so consumers in one process
or on many nodes never share a delivery and never wait on each other's picks.

Waiting. `receive(wait_s=…)` and `read(wait_s=…)` wait on LISTEN/NOTIFY: a commit on any
node that makes something receivable wakes them at once. The only timed re-check is for
what becomes visible with time alone (a delay, a visibility timeout, a retry backoff):
the look that found nothing also says when the next message of the queue is due.

Time. With an injected `clock` (tests), every timestamp is `clock()`, sent as a
parameter. Without one, timestamps come from the database server: each statement uses
`COALESCE(<param>, extract(epoch FROM transaction_timestamp()))` with a NULL parameter.
Several nodes then measure visibility timeouts, delays, dedup windows and leases
against one clock whatever their own drift (a lease taken on one node and checked on
another must not depend on which node's clock runs fast), and the transaction's
timestamp gives all rows written by one call one instant, as an injected clock does.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, nullcontext, suppress
from typing import Any

from ..broker import BrokerError, Delivery, MessageTooLarge, OutMessage, QueueStats
from ..sqlite.broker import DEFAULT_DEDUP_WINDOW_S, DEFAULT_MAX_MESSAGE_BYTES
from .connect import (
    check_schema_name,
    connection_lost,
    parse_url,
    psycopg,
    psycopg_pool,
    search_path,
    setup,
    sql,
    translate,
)
from .records import RecordOps
from .schema import NOW, TABLES
from .streams import StreamOps
from .waker import Waker

DEFAULT_POOL_SIZE = 10
POOL_TIMEOUT_S = 10.0  # longest wait for a free (or new) pooled connection

_DELIVERY = ("m.id, m.queue, m.body, m.attributes, m.trace, m.sent_at, m.receive_count, "
             "m.receipt, m.last_error, m.dlq_reason, m.source_queue")

_INSERT_MESSAGES = f"""
WITH sent AS (
    INSERT INTO messages (id, queue, body, attributes, trace, sent_at, available_at)
    SELECT m.id, m.queue, m.body, m.attributes::jsonb, m.trace, {NOW},
           {NOW} + greatest(m.delay, 0)
    FROM unnest(%(ids)s::text[], %(queues)s::text[], %(bodies)s::bytea[],
                %(attributes)s::text[], %(traces)s::text[], %(delays)s::float8[])
         WITH ORDINALITY AS m(id, queue, body, attributes, trace, delay, ord)
    ORDER BY m.ord)
SELECT pg_notify(%(channel)s, 'q:' || q) FROM unnest(%(wake)s::text[]) AS q"""

# claim each (queue, dedup key) unless a live claim exists; returns the ones claimed
_CLAIM_DEDUP = f"""
INSERT INTO dedup AS d (queue, key, message_id, expires_at)
SELECT c.queue, c.key, c.message_id, {NOW} + %(window)s
FROM unnest(%(queues)s::text[], %(keys)s::text[], %(ids)s::text[]) AS c(queue, key, message_id)
ON CONFLICT (queue, key) DO UPDATE
    SET message_id = excluded.message_id, expires_at = excluded.expires_at
    WHERE d.expires_at <= {NOW}
RETURNING d.queue, d.key"""

_CLAIMED_BEFORE = """
SELECT d.queue, d.key, d.message_id
FROM dedup AS d JOIN unnest(%(queues)s::text[], %(keys)s::text[]) AS c(queue, key)
    ON d.queue = c.queue AND d.key = c.key"""

_RECEIVE = f"""
WITH picked AS (
    SELECT seq, available_at FROM messages
    WHERE queue = %(queue)s AND available_at <= {NOW}
    ORDER BY available_at, seq LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
UPDATE messages AS m
SET receipt = m.seq || '.' || replace(gen_random_uuid()::text, '-', ''),
    available_at = {NOW} + %(vt)s, receive_count = m.receive_count + 1
FROM picked WHERE m.seq = picked.seq
RETURNING picked.available_at, m.seq, {_DELIVERY}"""

_NEXT_DUE = f"SELECT min(available_at) - {NOW} FROM messages WHERE queue = %(queue)s"

_ACK = """
DELETE FROM messages AS m
USING unnest(%(seqs)s::int8[], %(receipts)s::text[]) AS r(seq, receipt)
WHERE m.seq = r.seq AND m.receipt = r.receipt AND m.queue = %(queue)s
RETURNING m.receipt"""

_NACK = f"""
WITH n AS (
    UPDATE messages SET receipt = NULL, available_at = {NOW} + greatest(%(delay)s, 0),
                        last_error = COALESCE(%(error)s::text, last_error)
    WHERE seq = %(seq)s AND receipt = %(receipt)s AND queue = %(queue)s RETURNING 1)
SELECT pg_notify(%(channel)s, 'q:' || %(queue)s) FROM n"""

_EXTEND = f"""
UPDATE messages SET available_at = {NOW} + %(vt)s
WHERE seq = %(seq)s AND receipt = %(receipt)s AND queue = %(queue)s"""

_DEAD_LETTER = f"""
WITH d AS (
    UPDATE messages SET queue = %(dlq)s, source_queue = queue, dlq_reason = %(reason)s,
                        last_error = COALESCE(%(error)s::text, last_error), receipt = NULL,
                        available_at = {NOW}
    WHERE seq = %(seq)s AND receipt = %(receipt)s AND queue = %(queue)s RETURNING 1)
SELECT pg_notify(%(channel)s, 'q:' || %(dlq)s) FROM d"""

_PEEK = f"""
SELECT NULL, m.seq, {_DELIVERY} FROM messages AS m
WHERE m.queue = %(queue)s
  AND m.seq > COALESCE((SELECT seq FROM messages WHERE id = %(after)s::text), 0)
ORDER BY m.seq LIMIT %(limit)s"""

_REDRIVE = f"""
WITH picked AS (
    SELECT seq FROM messages
    WHERE queue = %(dlq)s AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s::text[]))
      AND COALESCE(%(to)s::text, source_queue) IS NOT NULL
    ORDER BY seq LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED),
moved AS (
    UPDATE messages AS m
    SET queue = COALESCE(%(to)s::text, m.source_queue), source_queue = NULL,
        dlq_reason = NULL, receive_count = 0, receipt = NULL, available_at = {NOW}
    FROM picked WHERE m.seq = picked.seq RETURNING m.queue)
SELECT count(*), pg_notify(%(channel)s, 'q:' || queue) FROM moved GROUP BY queue"""

_UPDATE_BODY = f"""
UPDATE messages SET body = %(body)s
WHERE queue = %(queue)s AND id = %(id)s AND (receipt IS NULL OR available_at <= {NOW})"""

_STATS = f"""
SELECT count(*) FILTER (WHERE available_at <= {NOW}),
       count(*) FILTER (WHERE available_at > {NOW} AND receipt IS NOT NULL),
       count(*) FILTER (WHERE available_at > {NOW} AND receipt IS NULL)
FROM messages WHERE queue = %(queue)s"""

_RECEIPT = re.compile(r"(\d{1,18})\.[0-9a-f]+")


def _delivery(row: tuple) -> Delivery:
    (_was, _seq, mid, queue, body, attributes, trace, sent_at, count, receipt, last_error,
     reason, source) = row
    return Delivery(
        message_id=mid, queue=queue, body=bytes(body), attributes=attributes,
        receipt=receipt or "", receive_count=count, sent_at=sent_at, trace=trace,
        last_error=last_error, dead_letter_reason=reason, source_queue=source,
    )


def _seq_of(receipt: str) -> int | None:
    match = _RECEIPT.fullmatch(receipt)
    return int(match.group(1)) if match else None


class PgBroker(RecordOps, StreamOps):
    """The QueueBroker Protocol on one PostgreSQL schema; every node (process) using the
    same URL and schema shares its queues, archive, schedules, leases and streams."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S,
        schema: str | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        """Checks the URL and schema name; connects on first use (BrokerError then). The
        tables live in `schema`, else the URL's `?schema=`, else "squall"."""
        self.target = parse_url(url, BrokerError)
        if schema is not None:
            check_schema_name(schema, BrokerError)
        self.clock = clock
        self.max_message_bytes = max_message_bytes
        self.dedup_window_s = dedup_window_s
        self.schema = schema or self.target.schema
        self.pool_size = pool_size
        self.channel = f"squall.{self.schema}"
        self.app_name = f"squall-broker:{self.schema}"  # its name in pg_stat_activity
        self._pool: psycopg_pool.AsyncConnectionPool | None = None
        self._opening = asyncio.Lock()
        self._closed = False
        self._waker = Waker(self._listen, lost=self._check_pool)

    # -- connections ---------------------------------------------------------------------

    async def _listen(self, *, create_schema: bool = False) -> psycopg.AsyncConnection:
        conn = await psycopg.AsyncConnection.connect(self.target.url,
                                                     **self.target.kwargs(self.app_name))
        try:
            if create_schema:
                complete, params, statements = setup(self.schema, TABLES)
                if not (await (await conn.execute(complete, params)).fetchone())[0]:
                    async with conn.transaction():
                        for stmt in statements:
                            await conn.execute(stmt)
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _configure(self, conn: psycopg.AsyncConnection) -> None:
        await conn.execute(search_path(self.schema))

    async def _open(self) -> psycopg_pool.AsyncConnectionPool:
        """The pool, opened (with the schema and the listening connection) on first use."""
        if self._pool is None or self._closed:
            async with self._opening:
                if self._closed:
                    raise BrokerError(
                        f"the broker on PostgreSQL at {self.target.where} is closed")
                if self._pool is None:
                    # listening before the first look: no commit can slip between them
                    self._waker.start(await self._listen(create_schema=True))
                    pool = psycopg_pool.AsyncConnectionPool(
                        self.target.url, open=False, min_size=1, max_size=self.pool_size,
                        kwargs=self.target.kwargs(self.app_name),
                        configure=self._configure,
                        timeout=POOL_TIMEOUT_S, name=f"squall-broker-{self.schema}")
                    await pool.open()
                    self._pool = pool
        return self._pool

    @asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection (autocommit: one statement is one transaction); psycopg's
        errors come out as BrokerError saying `what` failed. When the connection turns out
        to be broken, the pool's other idle connections are checked before the error is
        raised, so that the caller's retry gets a live one."""
        try:
            pool = await self._open()
            async with pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            if connection_lost(exc):
                await self._check_pool()
            raise translate(exc, self.target, what, BrokerError) from exc

    async def _check_pool(self) -> None:
        """Drop the pool's dead connections (after a server restart every idle one is) and
        have them replaced: one round trip per idle connection, paid only after a loss."""
        if self._pool is not None:
            with suppress(psycopg.Error):  # closed meanwhile: nothing left to check
                await self._pool.check()

    @asynccontextmanager
    async def _transaction(self, what: str) -> AsyncIterator[psycopg.AsyncConnection]:
        async with self._connection(what) as conn, conn.transaction():
            yield conn

    async def _rows(self, what: str, query: str, params: dict[str, Any]) -> list[tuple]:
        async with self._connection(what) as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall() if cur.description else []

    async def _count(self, what: str, query: str, params: dict[str, Any]) -> int:
        async with self._connection(what) as conn:
            return (await conn.execute(query, params)).rowcount

    def _now(self) -> float | None:
        """The injected clock's time, or None: the statement takes the server's."""
        return self.clock() if self.clock is not None else None

    async def _wait(self, key: str, generation: int, timeout: float) -> None:
        """Wait for a notification of `key` unless one came since `generation` was read."""
        if self._waker.generation(key) == generation:
            await self._waker.wait(key, timeout)

    # -- sending (shared with publish and fire_tick) ------------------------------------

    def _check_sizes(self, batches: Mapping[str, Sequence[OutMessage]]) -> None:
        for queue, messages in batches.items():
            for m in messages:
                if len(m.body) > self.max_message_bytes:
                    raise MessageTooLarge(queue, len(m.body), self.max_message_bytes)

    async def _enqueue(self, conn: psycopg.AsyncConnection,
                       batches: Mapping[str, Sequence[OutMessage]]) -> dict[str, list[str]]:
        """Insert the messages and notify their queues, on `conn`; with dedup keys the
        caller runs this in a transaction. A message whose key was claimed on its queue
        within the window (by an earlier call or earlier in this one) is not stored; it
        gets the first message's id."""
        ids = {q: [uuid.uuid4().hex for _ in msgs] for q, msgs in batches.items()}
        first: dict[tuple[str, str], str] = {}  # (queue, dedup key) -> the id it claims
        for q, msgs in batches.items():
            for i, m in enumerate(msgs):
                if m.dedup_key is not None:
                    first.setdefault((q, m.dedup_key), ids[q][i])
        owner = dict(first)  # (queue, key) -> the id that key stands for after this call
        if first:
            keys = sorted(first)  # rows locked in one order: concurrent claims can't deadlock
            cur = await conn.execute(_CLAIM_DEDUP, {
                "now": self._now(), "window": self.dedup_window_s,
                "queues": [q for q, _ in keys], "keys": [k for _, k in keys],
                "ids": [first[qk] for qk in keys]})
            claimed = set(await cur.fetchall())
            taken = [qk for qk in keys if qk not in claimed]
            if taken:
                cur = await conn.execute(_CLAIMED_BEFORE, {
                    "queues": [q for q, _ in taken], "keys": [k for _, k in taken]})
                for q, k, mid in await cur.fetchall():
                    owner[(q, k)] = mid
        rows: list[tuple[str, str, OutMessage]] = []
        stored: set[tuple[str, str]] = set()
        for q, msgs in batches.items():
            for i, m in enumerate(msgs):
                if m.dedup_key is not None:
                    qk = (q, m.dedup_key)
                    ids[q][i] = owner[qk]
                    if owner[qk] != first[qk] or qk in stored:
                        continue  # a duplicate: the first message stands for it
                    stored.add(qk)
                rows.append((ids[q][i], q, m))
        if rows:
            await conn.execute(_INSERT_MESSAGES, {
                "now": self._now(), "channel": self.channel,
                "ids": [r[0] for r in rows], "queues": [r[1] for r in rows],
                "bodies": [r[2].body for r in rows],
                "attributes": [json.dumps(r[2].attributes) for r in rows],
                "traces": [r[2].trace for r in rows],
                "delays": [float(r[2].delay_s) for r in rows],
                "wake": sorted({r[1] for r in rows})})
        return ids

    async def _send_batches(self, batches: Mapping[str, Sequence[OutMessage]],
                            what: str) -> dict[str, list[str]]:
        self._check_sizes(batches)
        batches = {q: list(msgs) for q, msgs in batches.items() if msgs}
        if not batches:
            return {}
        keyed = any(m.dedup_key is not None for msgs in batches.values() for m in msgs)
        # without dedup keys the insert is one statement: its own transaction
        async with (self._connection(what) as conn,
                    conn.transaction() if keyed else nullcontext()):
            return await self._enqueue(conn, batches)

    # -- the Protocol: queues ------------------------------------------------------------

    async def send(self, queue: str, messages: Sequence[OutMessage]) -> list[str]:
        ids = await self._send_batches({queue: messages}, f"cannot send to queue {queue!r}")
        return ids.get(queue, [])

    async def send_many(self, batches: Mapping[str, Sequence[OutMessage]]) -> dict[str, list[str]]:
        return await self._send_batches(batches, f"cannot send to queues {sorted(batches)}")

    async def receive(self, queue: str, max_messages: int = 1, *,
                      visibility_timeout_s: float = 30.0, wait_s: float = 0.0) -> list[Delivery]:
        what = f"cannot receive from queue {queue!r}"
        key = f"q:{queue}"
        deadline = time.monotonic() + wait_s
        while True:
            generation = self._waker.generation(key)
            params = {"now": self._now(), "queue": queue, "limit": max_messages,
                      "vt": visibility_timeout_s}
            async with self._connection(what) as conn:
                rows = await (await conn.execute(_RECEIVE, params)).fetchall()
                remaining = deadline - time.monotonic()
                if rows or remaining <= 0:
                    rows.sort(key=lambda r: (r[0], r[1]))  # oldest first
                    return [_delivery(r) for r in rows]
                (due_in,) = await (await conn.execute(_NEXT_DUE, params)).fetchone()
            timeout = remaining if due_in is None else min(remaining, max(0.0, due_in) + 0.001)
            await self._wait(key, generation, timeout)

    async def ack(self, queue: str, receipts: Sequence[str]) -> list[bool]:
        valid = [(seq, r) for r in receipts if (seq := _seq_of(r)) is not None]
        acked: set[str] = set()
        if valid:
            rows = await self._rows(f"cannot ack on queue {queue!r}", _ACK, {
                "queue": queue, "seqs": [s for s, _ in valid], "receipts": [r for _, r in valid]})
            acked = {r for (r,) in rows}
        out = []
        for receipt in receipts:
            out.append(receipt in acked)
            acked.discard(receipt)  # the same receipt twice: acked once
        return out

    async def nack(self, queue: str, receipt: str, *, delay_s: float = 0.0,
                   error: str | None = None) -> bool:
        seq = _seq_of(receipt)
        if seq is None:
            return False
        return bool(await self._rows(f"cannot nack on queue {queue!r}", _NACK, {
            "now": self._now(), "channel": self.channel, "queue": queue, "seq": seq,
            "receipt": receipt, "delay": float(delay_s), "error": error}))

    async def extend(self, queue: str, receipt: str, visibility_timeout_s: float) -> bool:
        seq = _seq_of(receipt)
        if seq is None:
            return False
        return bool(await self._count(f"cannot extend a message on queue {queue!r}", _EXTEND, {
            "now": self._now(), "queue": queue, "seq": seq, "receipt": receipt,
            "vt": visibility_timeout_s}))

    async def dead_letter(self, queue: str, receipt: str, *, dlq: str, reason: str,
                          error: str | None = None) -> bool:
        seq = _seq_of(receipt)
        if seq is None:
            return False
        return bool(await self._rows(
            f"cannot move a message from queue {queue!r} to dead-letter queue {dlq!r}",
            _DEAD_LETTER, {"now": self._now(), "channel": self.channel, "queue": queue,
                           "seq": seq, "receipt": receipt, "dlq": dlq, "reason": reason,
                           "error": error}))

    async def peek(self, queue: str, limit: int = 100,
                   after_id: str | None = None) -> list[Delivery]:
        rows = await self._rows(f"cannot peek at queue {queue!r}", _PEEK,
                                {"queue": queue, "after": after_id, "limit": limit})
        return [_delivery(r) for r in rows]

    async def redrive(self, dlq: str, *, to: str | None = None,
                      message_ids: Sequence[str] | None = None, limit: int = 1000) -> int:
        rows = await self._rows(f"cannot redrive dead-letter queue {dlq!r}", _REDRIVE, {
            "now": self._now(), "channel": self.channel, "dlq": dlq, "to": to,
            "ids": list(message_ids) if message_ids is not None else None, "limit": limit})
        return sum(n for n, _ in rows)

    async def delete(self, queue: str, message_ids: Sequence[str]) -> int:
        return await self._count(f"cannot delete messages from queue {queue!r}",
                                 "DELETE FROM messages WHERE queue = %(queue)s "
                                 "AND id = ANY(%(ids)s::text[])",
                                 {"queue": queue, "ids": list(message_ids)})

    async def update_body(self, queue: str, message_id: str, body: bytes) -> bool:
        """Replace a message's body unless it is in flight (delivered, its visibility
        timeout not yet over)."""
        if len(body) > self.max_message_bytes:
            raise MessageTooLarge(queue, len(body), self.max_message_bytes)
        return bool(await self._count(
            f"cannot update message {message_id!r} on queue {queue!r}", _UPDATE_BODY,
            {"now": self._now(), "queue": queue, "id": message_id, "body": body}))

    async def stats(self, queue: str) -> QueueStats:
        (row,) = await self._rows(f"cannot count queue {queue!r}", _STATS,
                                  {"now": self._now(), "queue": queue})
        return QueueStats(queue, *row)

    async def purge(self, queue: str) -> int:
        return await self._count(f"cannot purge queue {queue!r}",
                                 "DELETE FROM messages WHERE queue = %(queue)s",
                                 {"queue": queue})

    async def close(self) -> None:
        """Stop listening, wake every waiter (they get BrokerError), close the pool."""
        async with self._opening:  # not while the first call is opening the pool
            if self._closed:
                return
            self._closed = True
        await self._waker.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
