"""The PostgreSQL broker's records: the bus archive, schedule ticks, idempotency records and
leases. A mixin of PgBroker, on its connection helpers; each call is one transaction.

Races between nodes are settled by the database, not by reading then writing: a tick, an
idempotency key and a lease are each claimed with one `INSERT … ON CONFLICT DO UPDATE …
WHERE`, which takes the row lock and re-checks the condition against the latest committed
row, so of two nodes claiming at once exactly one wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..broker import ArchivedEvent, OutMessage
from .schema import NOW

_ARCHIVE = """
INSERT INTO archive (event_id, time, source, detail_type, body)
SELECT e.event_id, e.time, e.source, e.detail_type, e.body
FROM unnest(%(ids)s::text[], %(times)s::float8[], %(sources)s::text[],
            %(types)s::text[], %(bodies)s::text[])
     WITH ORDINALITY AS e(event_id, time, source, detail_type, body, ord)
ORDER BY e.ord
ON CONFLICT (event_id) DO NOTHING"""

_ARCHIVED = """
SELECT event_id, time, source, detail_type, body FROM archive
WHERE time >= %(start)s AND time < %(end)s
  AND (NOT EXISTS (SELECT 1 FROM archive WHERE event_id = %(after)s::text)
       OR (time, seq) > (SELECT time, seq FROM archive WHERE event_id = %(after)s::text))
ORDER BY time, seq LIMIT %(limit)s"""

_FIRE_TICK = """
INSERT INTO schedule_ticks AS t (schedule, last_tick) VALUES (%(schedule)s, %(tick)s)
ON CONFLICT (schedule) DO UPDATE SET last_tick = excluded.last_tick
    WHERE t.last_tick < excluded.last_tick"""

# a new key, or an expired record (done and past its expiry, or a run whose lock ran out):
# claimed for this run. Otherwise the row stays, locked by this transaction, for the look.
_IDEM_CLAIM = f"""
INSERT INTO idempotency AS i (key, status, payload_hash, result, locked_until, expires_at)
VALUES (%(key)s, 'in_progress', %(hash)s, NULL, {NOW} + %(lock)s, {NOW} + %(lock)s)
ON CONFLICT (key) DO UPDATE
    SET status = 'in_progress', payload_hash = excluded.payload_hash, result = NULL,
        locked_until = excluded.locked_until, expires_at = excluded.expires_at
    WHERE i.expires_at <= {NOW}"""

_LEASE = f"""
INSERT INTO leases AS l (name, holder, expires_at) VALUES (%(name)s, %(holder)s, {NOW} + %(ttl)s)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
    WHERE l.holder = excluded.holder OR l.expires_at <= {NOW}"""


class RecordOps:
    _now: Any
    _rows: Any
    _count: Any
    _transaction: Any
    _enqueue: Any
    _check_sizes: Any

    async def publish(self, events: Sequence[ArchivedEvent],
                      batches: Mapping[str, Sequence[OutMessage]]) -> dict[str, list[str]]:
        """Archive the events and enqueue the deliveries in one transaction. Event ids
        archived before are skipped; when all were, nothing is enqueued and {} returned."""
        self._check_sizes(batches)
        batches = {q: list(msgs) for q, msgs in batches.items() if msgs}
        async with self._transaction(f"cannot publish {len(events)} event(s)") as conn:
            if events:
                cur = await conn.execute(_ARCHIVE, {
                    "ids": [e.event_id for e in events], "times": [e.time for e in events],
                    "sources": [e.source for e in events],
                    "types": [e.detail_type for e in events],
                    "bodies": [e.body for e in events]})
                if not cur.rowcount:
                    return {}  # every event was archived before: delivered already
            return await self._enqueue(conn, batches) if batches else {}

    async def archived(self, start: float, end: float, *, limit: int = 1000,
                       after: str | None = None) -> list[ArchivedEvent]:
        rows = await self._rows("cannot read the event archive", _ARCHIVED, {
            "start": start, "end": end, "after": after, "limit": limit})
        return [ArchivedEvent(*r) for r in rows]

    async def fire_tick(self, schedule: str, tick: float, queue: str,
                        message: OutMessage) -> bool:
        self._check_sizes({queue: [message]})
        async with self._transaction(f"cannot fire schedule {schedule!r}") as conn:
            cur = await conn.execute(_FIRE_TICK, {"schedule": schedule, "tick": tick})
            if not cur.rowcount:
                return False  # this tick or a later one fired already
            await self._enqueue(conn, {queue: [message]})
            return True

    async def last_tick(self, schedule: str) -> float | None:
        rows = await self._rows(f"cannot read schedule {schedule!r}",
                                "SELECT last_tick FROM schedule_ticks "
                                "WHERE schedule = %(schedule)s", {"schedule": schedule})
        return rows[0][0] if rows else None

    async def idem_begin(self, key: str, payload_hash: str,
                         lock_s: float) -> tuple[str, str | None]:
        async with self._transaction(f"cannot claim idempotency key {key!r}") as conn:
            cur = await conn.execute(_IDEM_CLAIM, {
                "now": self._now(), "key": key, "hash": payload_hash, "lock": lock_s})
            if cur.rowcount:
                return "new", None
            cur = await conn.execute("SELECT status, payload_hash, result FROM idempotency "
                                     "WHERE key = %(key)s", {"key": key})
            status, stored_hash, result = await cur.fetchone()
        if stored_hash != payload_hash:
            return "mismatch", None
        if status == "done":
            return "done", result
        return "in_progress", None

    async def idem_complete(self, key: str, result: str, expires_s: float) -> None:
        await self._count(
            f"cannot complete idempotency key {key!r}",
            "UPDATE idempotency SET status = 'done', result = %(result)s, "
            f"expires_at = {NOW} + %(expires)s WHERE key = %(key)s",
            {"now": self._now(), "key": key, "result": result, "expires": expires_s})

    async def idem_release(self, key: str) -> None:
        await self._count(f"cannot release idempotency key {key!r}",
                          "DELETE FROM idempotency WHERE key = %(key)s "
                          "AND status = 'in_progress'", {"key": key})

    async def lease(self, name: str, holder: str, ttl_s: float) -> bool:
        return bool(await self._count(
            f"cannot take lease {name!r} for {holder!r}", _LEASE,
            {"now": self._now(), "name": name, "holder": holder, "ttl": ttl_s}))

    async def release(self, name: str, holder: str) -> None:
        await self._count(f"cannot release lease {name!r} of {holder!r}",
                          "DELETE FROM leases WHERE name = %(name)s AND holder = %(holder)s",
                          {"name": name, "holder": holder})
