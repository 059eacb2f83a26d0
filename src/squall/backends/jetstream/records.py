"""The JetStream broker's records: the bus archive, schedule ticks, idempotency records
and leases. A mixin of NatsBroker.

* Archive: a stream with one subject per hour of the events' time, so a replay reads
  only the hours it covers (the stream's subject counts list the hours there are) and
  sorts each by (time, arrival). Deduplicated by event id within the duplicate window.
* Ticks, leases, idempotency records: KV records changed by compare-and-set (kv.py).
  A tick's message is sent before its record is advanced, under a Msg-Id of the
  (schedule, tick): two nodes firing one tick store one message, one of them advances
  the record, and a node that dies between the steps leaves a tick that the next
  attempt fires (its message deduplicated) instead of a lost one.
* Expiry (leases, idempotency) is judged with the broker's clock against times in the
  record: nodes' clocks must agree to well within a lease's time to live.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, Awaitable, Callable, Mapping, Sequence

from ..broker import ArchivedEvent, OutMessage
from .connection import Connection
from .kv import Decide, Keep, KvStore, T, Write, nonce
from .names import ARCHIVE_BUCKET_S, Names, digest, token

Batches = Mapping[str, Sequence[OutMessage]]


class RecordOps:
    clock: Callable[[], float]
    conn: Connection
    kv: KvStore
    names: Names
    dedup_window_s: float
    replicas: int
    idempotency_max_age_s: float
    _ready: Callable[[], Awaitable[None]]
    _check: Callable[[str, Sequence[OutMessage]], None]
    _send_all: Callable[..., Awaitable[dict[str, list[str]]]]
    ensure_stream: Callable[..., Awaitable[dict[str, Any]]]

    def __init__(self) -> None:
        self._archive_ready = False
        # the last hour read by `archived`, kept while paging through it: (subject,
        # message count) -> events sorted by (time, arrival)
        self._hour: tuple[tuple[str, int], list[tuple[float, int, ArchivedEvent]]] | None = None

    # -- the bus archive -------------------------------------------------------------

    async def _ensure_archive(self) -> None:
        if not self._archive_ready:
            await self.ensure_stream({
                "name": self.names.archive, "subjects": [f"{self.names.prefix}.a.>"],
                "retention": "limits", "storage": "file", "num_replicas": self.replicas,
                "duplicate_window": int(self.dedup_window_s * 1e9), "allow_direct": True,
            }, keep_in_line=("duplicate_window",))
            self._archive_ready = True

    async def publish(self, events: Sequence[ArchivedEvent],
                      batches: Batches) -> dict[str, list[str]]:
        await self._ready()
        for q, msgs in batches.items():
            self._check(q, msgs)
        if not events:
            return await self._send_all(batches, self.clock())
        # enqueue first under Msg-Ids of these events (a retried publish stores nothing
        # twice), then archive: a crash in between loses no delivery
        key = digest("\x1f".join(e.event_id for e in events))
        out = await self._send_all(batches, self.clock(),
                                   msg_ids=lambda q, i: f"ev:{key}:{token(q)}:{i}")
        await self._ensure_archive()
        acks = await asyncio.gather(*[self.conn.publish(
            self.names.archive_subject(math.floor(e.time / ARCHIVE_BUCKET_S)),
            json.dumps({"id": e.event_id, "time": e.time, "source": e.source,
                        "detail_type": e.detail_type, "body": e.body}).encode(),
            {"Nats-Msg-Id": f"ev:{digest(e.event_id)}"}) for e in events])
        if all(duplicate for _, duplicate in acks):
            return {}  # every event was archived before: its deliveries were made then
        return out

    async def archived(self, start: float, end: float, *, limit: int = 1000,
                       after: str | None = None) -> list[ArchivedEvent]:
        await self._ready()
        await self._ensure_archive()
        info = await self.conn.api(f"STREAM.INFO.{self.names.archive}",
                                   {"subjects_filter": f"{self.names.prefix}.a.*"})
        first, last = math.floor(start / ARCHIVE_BUCKET_S), math.floor(end / ARCHIVE_BUCKET_S)
        hours = sorted((int(s.rsplit(".", 1)[1]), s, n)
                       for s, n in (info["state"].get("subjects") or {}).items())
        out: list[ArchivedEvent] = []
        passed = after is None
        for hour, subject, count in hours:
            if not first <= hour <= last:
                continue
            for t, _, event in await self._read_hour(subject, count):
                if not start <= t < end:
                    continue
                if not passed:
                    passed = event.event_id == after
                    continue
                out.append(event)
                if len(out) >= limit:
                    return out
        if not passed:  # `after` is not in the window: page from its start, as SQLite does
            return await self.archived(start, end, limit=limit)
        return out

    async def _read_hour(self, subject: str,
                         count: int) -> list[tuple[float, int, ArchivedEvent]]:
        if self._hour is not None and self._hour[0] == (subject, count):
            return self._hour[1]
        events = []
        async for seq, data in self.read_subject(self.names.archive, subject, 1, count):
            e = json.loads(data)
            events.append((float(e["time"]), seq, ArchivedEvent(
                e["id"], float(e["time"]), e["source"], e["detail_type"], e["body"])))
        events.sort(key=lambda x: (x[0], x[1]))
        self._hour = ((subject, count), events)
        return events

    read_subject: Callable[..., Any]  # streams.py: every message on a subject, in order

    # -- schedules -------------------------------------------------------------------

    async def fire_tick(self, schedule: str, tick: float, queue: str,
                        message: OutMessage) -> bool:
        await self._ready()
        self._check(queue, [message])
        await self.kv.ensure(self.names.state)
        key = f"t.{token(schedule)}"
        current, _ = await self.kv.get(self.names.state, key)
        if current is not None and current["tick"] >= tick:
            return False
        # a message per (schedule, tick), whoever sends it and however often
        await self._send_all({queue: [message]}, self.clock(),
                             msg_ids=lambda q, i: f"tick:{token(schedule)}:{tick!r}")
        mine = nonce()

        def decide(v: dict[str, Any] | None) -> Keep[bool] | Write[bool]:
            if v is not None and v["tick"] >= tick:
                return Keep(v.get("nonce") == mine)  # another node fired it (or we did)
            return Write({"tick": tick, "nonce": mine}, True)

        return await self.kv.cas(self.names.state, key, decide)

    async def last_tick(self, schedule: str) -> float | None:
        await self._ready()
        await self.kv.ensure(self.names.state)
        value, _ = await self.kv.get(self.names.state, f"t.{token(schedule)}")
        return float(value["tick"]) if value is not None else None

    # -- leases ----------------------------------------------------------------------

    async def lease(self, name: str, holder: str, ttl_s: float) -> bool:
        await self._ready()
        await self.kv.ensure(self.names.state)

        def decide(v: dict[str, Any] | None) -> Keep[bool] | Write[bool]:
            now = self.clock()
            if v is None or v["holder"] == holder or v["expires"] <= now:
                return Write({"holder": holder, "expires": now + ttl_s}, True)
            return Keep(False)

        return await self.kv.cas(self.names.state, f"l.{token(name)}", decide)

    async def release(self, name: str, holder: str) -> None:
        await self._ready()
        await self.kv.ensure(self.names.state)

        def decide(v: dict[str, Any] | None) -> Keep[None] | Write[None]:
            if v is not None and v["holder"] == holder:
                return Write(None, None)
            return Keep(None)

        await self.kv.cas(self.names.state, f"l.{token(name)}", decide)

    # -- idempotency records ---------------------------------------------------------

    async def _idem(self, key: str, decide: Decide[T]) -> T:
        await self._ready()
        await self.kv.ensure(self.names.idempotency, max_age_s=self.idempotency_max_age_s)
        return await self.kv.cas(self.names.idempotency, f"i.{digest(key)}", decide)

    async def idem_begin(self, key: str, payload_hash: str,
                         lock_s: float) -> tuple[str, str | None]:
        mine = nonce()

        def decide(v: dict[str, Any] | None) -> (Keep[tuple[str, str | None]]
                                                 | Write[tuple[str, str | None]]):
            now = self.clock()
            claim = {"status": "in_progress", "hash": payload_hash, "result": None,
                     "locked_until": now + lock_s, "expires": now + lock_s, "nonce": mine}
            if v is not None and v.get("nonce") == mine:
                return Keep(("new", None))  # our claim landed (its answer was lost)
            if v is None or v["expires"] <= now:
                return Write(claim, ("new", None))
            if v["hash"] != payload_hash:
                return Keep(("mismatch", None))
            if v["status"] == "done":
                return Keep(("done", v["result"]))
            if v["locked_until"] > now:
                return Keep(("in_progress", None))
            return Write(claim, ("new", None))  # the previous run's lock expired: take over

        return await self._idem(key, decide)

    async def idem_complete(self, key: str, result: str, expires_s: float) -> None:
        def decide(v: dict[str, Any] | None) -> Keep[None] | Write[None]:
            if v is None:
                return Keep(None)
            return Write({**v, "status": "done", "result": result,
                          "expires": self.clock() + expires_s, "nonce": nonce()}, None)

        await self._idem(key, decide)

    async def idem_release(self, key: str) -> None:
        def decide(v: dict[str, Any] | None) -> Keep[None] | Write[None]:
            if v is not None and v["status"] == "in_progress":
                return Write(None, None)
            return Keep(None)

        await self._idem(key, decide)
