"""The embedded broker's records: the bus archive, schedule ticks and idempotency
records. A mixin of SqliteBroker: each `_op_*` runs on its writer thread, inside the
group-commit transaction, like the queue operations."""

from __future__ import annotations

import sqlite3
from typing import Any, Mapping, Sequence

from ..broker import ArchivedEvent, OutMessage


class RecordOps:
    clock: Any
    _run: Any
    _op_send: Any
    _op_send_many: Any

    def _op_publish(self, db: sqlite3.Connection, touched: set[str],
                    events: Sequence[ArchivedEvent],
                    batches: Mapping[str, Sequence[OutMessage]]) -> dict[str, list[str]]:
        new = 0
        for e in events:
            new += db.execute(
                "INSERT OR IGNORE INTO archive (event_id, time, source, detail_type, body) "
                "VALUES (?,?,?,?,?)", (e.event_id, e.time, e.source, e.detail_type,
                                       e.body)).rowcount
        if events and not new:
            return {}  # every event was archived before: a duplicate, delivered already
        return self._op_send_many(db, touched, batches)

    def _op_archived(self, db: sqlite3.Connection, touched: set[str], start: float, end: float,
                     limit: int, after: str | None) -> list[ArchivedEvent]:
        after_key: tuple[float, int] = (start, 0)
        if after is not None:
            row = db.execute("SELECT time, seq FROM archive WHERE event_id = ?", (after,)).fetchone()
            if row is not None:
                after_key = (row[0], row[1])
        rows = db.execute(
            "SELECT event_id, time, source, detail_type, body FROM archive "
            "WHERE time >= ? AND time < ? AND (time > ? OR (time = ? AND seq > ?)) "
            "ORDER BY time, seq LIMIT ?",
            (start, end, after_key[0], after_key[0], after_key[1], limit)).fetchall()
        return [ArchivedEvent(*r) for r in rows]

    def _op_fire_tick(self, db: sqlite3.Connection, touched: set[str], schedule: str,
                      tick: float, queue: str, message: OutMessage) -> bool:
        row = db.execute("SELECT last_tick FROM schedule_ticks WHERE schedule = ?",
                         (schedule,)).fetchone()
        if row is not None and row[0] >= tick:
            return False
        db.execute("INSERT INTO schedule_ticks (schedule, last_tick) VALUES (?, ?) "
                   "ON CONFLICT(schedule) DO UPDATE SET last_tick = excluded.last_tick",
                   (schedule, tick))
        self._op_send(db, touched, queue, [message])
        return True

    def _op_last_tick(self, db: sqlite3.Connection, touched: set[str],
                      schedule: str) -> float | None:
        row = db.execute("SELECT last_tick FROM schedule_ticks WHERE schedule = ?",
                         (schedule,)).fetchone()
        return row[0] if row else None

    def _op_idem_begin(self, db: sqlite3.Connection, touched: set[str], key: str,
                       payload_hash: str, lock_s: float) -> tuple[str, str | None]:
        now = self.clock()
        row = db.execute("SELECT status, payload_hash, result, locked_until, expires_at "
                         "FROM idempotency WHERE key = ?", (key,)).fetchone()
        if row is not None and row[4] <= now:
            db.execute("DELETE FROM idempotency WHERE key = ?", (key,))
            row = None
        if row is None:
            db.execute("INSERT INTO idempotency (key, status, payload_hash, locked_until, "
                       "expires_at) VALUES (?, 'in_progress', ?, ?, ?)",
                       (key, payload_hash, now + lock_s, now + lock_s))
            return "new", None
        status, stored_hash, result, locked_until, _ = row
        if stored_hash != payload_hash:
            return "mismatch", None
        if status == "done":
            return "done", result
        if locked_until > now:
            return "in_progress", None
        db.execute("UPDATE idempotency SET locked_until = ?, expires_at = ? WHERE key = ?",
                   (now + lock_s, now + lock_s, key))
        return "new", None  # the previous run's lock expired: take over

    def _op_idem_complete(self, db: sqlite3.Connection, touched: set[str], key: str,
                          result: str, expires_s: float) -> None:
        db.execute("UPDATE idempotency SET status = 'done', result = ?, expires_at = ? "
                   "WHERE key = ?", (result, self.clock() + expires_s, key))

    def _op_idem_release(self, db: sqlite3.Connection, touched: set[str], key: str) -> None:
        db.execute("DELETE FROM idempotency WHERE key = ? AND status = 'in_progress'", (key,))

    def _op_lease(self, db: sqlite3.Connection, touched: set[str], name: str, holder: str,
                  ttl_s: float) -> bool:
        now = self.clock()
        return db.execute(
            "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, "
            "expires_at = excluded.expires_at WHERE leases.holder = excluded.holder "
            "OR leases.expires_at <= ?", (name, holder, now + ttl_s, now)).rowcount == 1

    def _op_release(self, db: sqlite3.Connection, touched: set[str], name: str,
                    holder: str) -> None:
        db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

    async def lease(self, name: str, holder: str, ttl_s: float) -> bool:
        return await self._run(self._op_lease, name, holder, ttl_s)

    async def release(self, name: str, holder: str) -> None:
        await self._run(self._op_release, name, holder)

    async def publish(self, events: Sequence[ArchivedEvent],
                      batches: Mapping[str, Sequence[OutMessage]]) -> dict[str, list[str]]:
        return await self._run(self._op_publish, list(events),
                               {q: list(m) for q, m in batches.items()})

    async def archived(self, start: float, end: float, *, limit: int = 1000,
                       after: str | None = None) -> list[ArchivedEvent]:
        return await self._run(self._op_archived, start, end, limit, after)

    async def fire_tick(self, schedule: str, tick: float, queue: str,
                        message: OutMessage) -> bool:
        return await self._run(self._op_fire_tick, schedule, tick, queue, message)

    async def last_tick(self, schedule: str) -> float | None:
        return await self._run(self._op_last_tick, schedule)

    async def idem_begin(self, key: str, payload_hash: str,
                         lock_s: float) -> tuple[str, str | None]:
        return await self._run(self._op_idem_begin, key, payload_hash, lock_s)

    async def idem_complete(self, key: str, result: str, expires_s: float) -> None:
        await self._run(self._op_idem_complete, key, result, expires_s)

    async def idem_release(self, key: str) -> None:
        await self._run(self._op_idem_release, key)
