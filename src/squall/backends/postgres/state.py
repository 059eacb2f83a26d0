"""The shared state store on PostgreSQL: tables, their change feeds and object storage
for every node of a cluster, behind `open_state("postgresql://…?schema=NAME")`.

The same semantics as the embedded store (squall.backends.sqlite.state), checked by the
same suites (squall.testing.state_conformance); here any number of nodes write one
database. Tables (tables.py) and objects (objects.py) are mixins over this base, which
holds the connections (database.py: a lazy pool, no network I/O in the constructor), the
feeds and the wake-ups.

Feeds. A record's seq comes from a counter row per (feed, shard) bumped by
`INSERT … ON CONFLICT DO UPDATE SET seq = seq + 1` in the writing transaction. The row
stays locked until that transaction ends, so the seqs of a shard are taken one writer
after another, in commit order, with no gaps (a rolled-back write gives its number
back), and a reader that saw seq n never later finds a new record <= n. A sequence or
BIGSERIAL would not do: its numbers are handed out before commit, so a reader could pass
a number whose transaction has not committed yet and skip it for good. The counter row
outlives trims: numbers never restart. A record keeps its writer's traceparent (`trace`,
added when the store opens a schema made before that column existed).

Row locks. A write locks its key with a transaction-scoped advisory lock on a 64-bit hash
of (schema, table or bucket, key) before it reads the row, so it also serialises writers
of a key that does not exist yet (SELECT … FOR UPDATE cannot lock a missing row). The
lock is taken in its own statement: in READ COMMITTED the next statement's snapshot then
sees whatever the previous holder committed. A hash collision only makes two keys wait
for each other.

Wake-ups. Every transaction that appends to a feed calls `pg_notify` with the feed's
name on the channel `squall.<schema>.state`; PostgreSQL delivers it to every listening
session when, and only if, the transaction commits. `listen()` keeps one connection
LISTENing (reconnecting, with the broker's Waker) and hands each feed name to the state
service's FeedSignal, so a write on any node wakes that feed's consumers on every node.

Time. With an injected clock (tests) every timestamp (a record's `at`, an object's
`last_modified`, an upload's last touch) is `clock()`, sent as a parameter. Without one
it is the database server's clock at the start of the writing transaction: every node
stamps feed records and objects on one clock, whatever their own drift.

Durability: a call returns after COMMIT, with the server's default synchronous_commit=on
a commit is on disk.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from ..base import StoreError
from ..state import FeedEntry, FeedRecord
from .connect import psycopg, sql, translate
from .database import Database
from .objects import OBJECT_TABLES, ObjectOps
from .schema import NOW
from .tables import ITEM_TABLES, TableOps
from .waker import Waker

DEFAULT_POOL_SIZE = 8  # the state service's thread pool has 8 threads

FEED_TABLES = (
    """CREATE TABLE IF NOT EXISTS state_feed (
        feed text NOT NULL,
        shard integer NOT NULL,
        seq bigint NOT NULL,
        key text NOT NULL,
        event text NOT NULL,
        body text NOT NULL,
        at double precision NOT NULL,
        trace text,  -- the writer's traceparent + loop lineage (FeedEntry.trace)
        PRIMARY KEY (feed, shard, seq))""",
    # the last seq handed out per shard: bumped (and so locked) by the appending
    # transaction; kept when records are trimmed
    """CREATE TABLE IF NOT EXISTS state_feed_heads (
        feed text NOT NULL,
        shard integer NOT NULL,
        seq bigint NOT NULL,
        PRIMARY KEY (feed, shard))""",
    """CREATE TABLE IF NOT EXISTS state_feed_checkpoints (
        feed text NOT NULL,
        consumer text NOT NULL,
        shard integer NOT NULL,
        seq bigint NOT NULL,
        PRIMARY KEY (feed, consumer, shard))""",
)

# columns added since the tables were first released (Database adds them to older schemas)
FEED_COLUMNS = (("state_feed", "trace", "text"),)

_APPEND = f"""
WITH head AS (
    INSERT INTO state_feed_heads AS h (feed, shard, seq) VALUES (%(feed)s, %(shard)s, 1)
    ON CONFLICT (feed, shard) DO UPDATE SET seq = h.seq + 1
    RETURNING h.seq),
added AS (
    INSERT INTO state_feed (feed, shard, seq, key, event, body, at, trace)
    SELECT %(feed)s, %(shard)s, head.seq, %(key)s, %(event)s, %(body)s, {NOW},
           %(trace)s::text FROM head
    RETURNING seq)
SELECT seq, pg_notify(%(channel)s, %(feed)s) FROM added"""

_SET_CHECKPOINT = """
INSERT INTO state_feed_checkpoints AS c (feed, consumer, shard, seq)
VALUES (%(feed)s, %(consumer)s, %(shard)s, %(seq)s)
ON CONFLICT (feed, consumer, shard) DO UPDATE SET seq = greatest(c.seq, excluded.seq)"""


def key_lock(schema: str, *parts: str) -> int:
    """The advisory lock id of a key: 64 bits of a hash of (schema, *parts)."""
    text = "\x00".join((schema, *parts)).encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(text, digest_size=8, person=b"squall-state").digest()
    return int.from_bytes(digest, "big", signed=True)


class _FeedWaker(Waker):
    """The broker's Waker (one listening connection, reconnected when it breaks) with its
    wake-ups going to the state service's FeedSignal instead of waiting coroutines."""

    def __init__(self, listen: Callable[[], Awaitable[Any]], *,
                 lost: Callable[[], Awaitable[None]], notify: Callable[[str], None],
                 notify_all: Callable[[], None]) -> None:
        super().__init__(listen, lost=lost)
        self._notify = notify
        self._notify_all = notify_all

    def _wake(self, key: str) -> None:  # a commit appended to feed `key`
        self._notify(key)

    def wake_all(self) -> None:  # notifications may have been missed: everyone looks again
        self._notify_all()


class PgStateStore(TableOps, ObjectOps):
    """TableStore + ObjectStore + FeedStore on one PostgreSQL schema, shared by every node
    using the same URL and schema."""

    def __init__(self, url: str, *, clock: Callable[[], float] | None = None,
                 schema: str | None = None, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        """Checks the URL and schema name; connects on first use (StoreError then). The
        tables live in `schema`, else the URL's `?schema=`, else "squall". `clock`: where
        timestamps come from; None (the default) is the database server's clock."""
        self.db = Database(url, tables=FEED_TABLES + ITEM_TABLES + OBJECT_TABLES,
                           columns=FEED_COLUMNS,
                           role="squall-state", pool_size=pool_size, schema=schema)
        self.schema = self.db.schema
        self.clock = clock
        self.channel = f"squall.{self.schema}.state"
        self._waker: _FeedWaker | None = None

    def _now(self) -> float | None:
        """The injected clock's time, or None: the statement takes the server's."""
        return self.clock() if self.clock is not None else None

    def _lock(self, conn: psycopg.Connection, *keys: tuple[str, ...]) -> None:
        """Lock these keys (each a tuple of parts) until the transaction ends. Several
        are locked in one order whatever the caller's (unnest keeps the array's), so two
        writers of the same keys cannot deadlock."""
        ids = sorted({key_lock(self.schema, *k) for k in keys})
        conn.execute("SELECT pg_advisory_xact_lock(id) FROM unnest(%s::int8[]) AS id", (ids,))

    def close(self) -> None:
        self.db.close()

    # -- feeds -------------------------------------------------------------------------

    def _append(self, conn: psycopg.Connection, feed: str, entry: FeedEntry,
                at: float | None) -> int:
        row = conn.execute(_APPEND, {
            "feed": feed, "shard": entry.shard, "key": entry.key, "event": entry.event,
            "body": entry.body, "now": at, "trace": entry.trace,
            "channel": self.channel}).fetchone()
        return row[0]

    def read_feed(self, feed: str, shard: int, after_seq: int, limit: int) -> list[FeedRecord]:
        rows = self.db.rows(f"cannot read feed {feed!r}",
                            "SELECT feed, shard, seq, key, event, body, at, trace "
                            "FROM state_feed "
                            "WHERE feed = %s AND shard = %s AND seq > %s ORDER BY seq LIMIT %s",
                            (feed, shard, after_seq, limit))
        return [FeedRecord(*r) for r in rows]

    def latest_feed_seq(self, feed: str, shard: int) -> int:
        rows = self.db.rows(f"cannot read feed {feed!r}",
                            "SELECT seq FROM state_feed_heads WHERE feed = %s AND shard = %s",
                            (feed, shard))
        return rows[0][0] if rows else 0

    def feed_checkpoint(self, feed: str, consumer: str, shard: int) -> int | None:
        rows = self.db.rows(f"cannot read the checkpoint of {consumer!r} on feed {feed!r}",
                            "SELECT seq FROM state_feed_checkpoints WHERE feed = %s AND "
                            "consumer = %s AND shard = %s", (feed, consumer, shard))
        return rows[0][0] if rows else None

    def set_feed_checkpoint(self, feed: str, consumer: str, shard: int, seq: int) -> None:
        self.db.count(f"cannot move the checkpoint of {consumer!r} on feed {feed!r}",
                      _SET_CHECKPOINT, {"feed": feed, "consumer": consumer, "shard": shard,
                                        "seq": seq})

    def trim_feed(self, feed: str, shard: int, upto_seq: int, before: float) -> int:
        return self.db.count(f"cannot trim feed {feed!r}",
                             "DELETE FROM state_feed WHERE feed = %s AND shard = %s AND "
                             "seq <= %s AND at < %s", (feed, shard, upto_seq, before))

    # -- wake-ups across nodes ---------------------------------------------------------

    async def listen(self, notify: Callable[[str], None],
                     notify_all: Callable[[], None]) -> None:
        """From now on, call `notify(feed)` whenever a write on any node commits records
        to `feed`, and `notify_all()` when notifications may have been missed (the
        listening connection broke: it is reopened). Call in the loop that should run
        the listener; raises StoreError if PostgreSQL cannot be reached now."""
        if self._waker is not None:
            return
        waker = _FeedWaker(self._listening, lost=self._lost, notify=notify,
                           notify_all=notify_all)
        try:
            conn = await self._listening()
        except psycopg.Error as exc:
            raise translate(exc, self.db.target, "cannot listen for state changes",
                            StoreError) from exc
        waker.start(conn)
        self._waker = waker

    async def unlisten(self) -> None:
        waker, self._waker = self._waker, None
        if waker is not None:
            await waker.close()

    async def _listening(self) -> psycopg.AsyncConnection:
        conn = await psycopg.AsyncConnection.connect(
            self.db.target.url, **self.db.target.kwargs(self.db.app_name))
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _lost(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.db.check)


__all__ = ["PgStateStore", "key_lock"]
