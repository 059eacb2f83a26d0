"""The broker conformance suite: every messaging backend must pass it unchanged.

A backend's test module subclasses `BrokerConformance` and provides one fixture,
`open_broker`: an async callable `open_broker(clock, **options) -> QueueBroker` that
opens (or re-opens, for the durability check) the same backing store each time it is
called within a test.

    class TestMyBroker(BrokerConformance):
        @pytest.fixture
        def open_broker(self, tmp_path):
            async def open_(clock, **opts):
                return MyBroker(url_for(tmp_path), clock=clock, **opts)
            return open_

Time. The suite moves time with `await clock.elapse(s)` and looks at each deadline from
just before and just after it (`before`, `after`). By default the `clock` fixture is a
`FakeClock`: time jumps, the suite never sleeps, and each deadline is checked at its exact
edge (a message still hidden 0.1 s before its 30 s visibility timeout, visible 0.1 s
after). A backend whose server keeps time itself (JetStream: AckWait, Nak delays and the
duplicate window run on the server's clock) sets `REAL_TIME = True`: the suite then gives
it a `RealClock` (elapse really waits), uses the short `REAL_DURATIONS`, and looks at half
and one and a half times each deadline, margins wide enough to make a real-time run
deterministic. The assertions are the same in both modes.

    class TestMyNetworkBroker(BrokerConformance):
        REAL_TIME = True
        ...
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from ..backends.broker import ArchivedEvent, MessageTooLarge, OutMessage, QueueBroker
from .clocks import (REAL_DURATIONS, Durations, FakeClock, RealClock, SuiteClock, Timeline,
                     async_test)

__all__ = ["BrokerConformance", "Durations", "FakeClock", "REAL_DURATIONS", "RealClock",
           "SuiteClock", "Timeline", "async_test", "msg"]


def msg(body: str = "{}", **kw: Any) -> OutMessage:
    return OutMessage(body=body.encode(), **kw)


class BrokerConformance:
    """Queue semantics every backend must honour (see squall.backends.broker)."""

    # Two nodes on a broker server both get a share of a 500-message queue. On one SQLite
    # file a node's writer thread may drain it before the other's gets the write lock:
    # still never a shared delivery, which is the property every backend must have.
    NODES_SHARE_WORK = True

    #: True for a backend whose server keeps time (see the module docstring)
    REAL_TIME = False
    #: the durations the suite uses: REAL_DURATIONS when REAL_TIME, unless overridden
    DURATIONS: Durations | None = None

    @pytest.fixture
    def clock(self) -> SuiteClock:
        return RealClock() if self.REAL_TIME else FakeClock()

    @property
    def T(self) -> Durations:
        if self.DURATIONS is not None:
            return self.DURATIONS
        return REAL_DURATIONS if self.REAL_TIME else Durations()

    def before(self, deadline: float, edge: float) -> float:
        """A moment just before `deadline`: `edge` seconds before it on a fake clock, half
        of it in real time."""
        return deadline * 0.5 if self.REAL_TIME else deadline - edge

    def after(self, deadline: float, edge: float) -> float:
        """A moment just after `deadline`: `edge` seconds after it on a fake clock, one and
        a half times it in real time."""
        return deadline * 1.5 if self.REAL_TIME else deadline + edge

    @async_test
    async def test_send_then_receive_round_trip(self, open_broker: Any, clock: SuiteClock) -> None:
        b: QueueBroker = await open_broker(clock)
        try:
            t0 = clock()
            (mid,) = await b.send("q", [msg('{"a": 1}', attributes={"k": "v"},
                                            trace="00-" + "1" * 32 + "-" + "2" * 16 + "-01")])
            t1 = clock()  # == t0 on a fake clock: sent_at is exactly the clock's time
            (d,) = await b.receive("q", 10, visibility_timeout_s=self.T.visibility)
            assert d.message_id == mid and d.queue == "q"
            assert d.body == b'{"a": 1}' and d.attributes == {"k": "v"}
            assert d.trace.startswith("00-111") and d.receive_count == 1
            assert t0 <= d.sent_at <= t1 and d.receipt
            assert await b.receive("q", 10) == []  # in flight: invisible
        finally:
            await b.close()

    @async_test
    async def test_oldest_first_and_batch_size(self, open_broker: Any, clock: SuiteClock) -> None:
        b = await open_broker(clock)
        try:
            for i in range(5):
                await b.send("q", [msg(str(i))])
                await clock.elapse(0.001)
            first = await b.receive("q", 3)
            rest = await b.receive("q", 10)
            assert [d.body for d in first] == [b"0", b"1", b"2"]
            assert [d.body for d in rest] == [b"3", b"4"]
        finally:
            await b.close()

    @async_test
    async def test_queues_are_isolated(self, open_broker: Any, clock: SuiteClock) -> None:
        b = await open_broker(clock)
        try:
            await b.send("a", [msg("for a")])
            assert await b.receive("b", 10) == []
            assert [d.body for d in await b.receive("a", 10)] == [b"for a"]
        finally:
            await b.close()

    @async_test
    async def test_visibility_timeout_redelivers_with_a_new_receipt(
            self, open_broker: Any, clock: SuiteClock) -> None:
        b = await open_broker(clock)
        vis = self.T.visibility
        try:
            await b.send("q", [msg()])
            t = Timeline(clock)
            (d1,) = await b.receive("q", visibility_timeout_s=vis)
            await t.at(self.before(vis, edge=0.1))
            assert await b.receive("q") == []
            await t.at(self.after(vis, edge=0.1))
            t.restart()
            (d2,) = await b.receive("q", visibility_timeout_s=vis)
            assert d2.message_id == d1.message_id
            assert d2.receive_count == 2 and d2.receipt != d1.receipt
            # a stale receipt from the first delivery is rejected
            assert await b.ack("q", [d1.receipt]) == [False]
            assert await b.extend("q", d1.receipt, 60) is False
            assert await b.nack("q", d1.receipt) is False
            assert await b.ack("q", [d2.receipt]) == [True]
            assert await b.ack("q", [d2.receipt]) == [False]  # already gone
            await t.at(self.after(vis, edge=70))  # long past d2's visibility timeout
            assert await b.receive("q") == []
        finally:
            await b.close()

    @async_test
    async def test_ack_rejects_garbage_and_foreign_receipts(
            self, open_broker: Any, clock: SuiteClock) -> None:
        b = await open_broker(clock)
        try:
            await b.send("q", [msg()])
            (d,) = await b.receive("q")
            assert await b.ack("q", ["not-a-receipt", ""]) == [False, False]
            assert await b.ack("other", [d.receipt]) == [False]
            assert await b.ack("q", [d.receipt]) == [True]
        finally:
            await b.close()

    @async_test
    async def test_nack_with_delay_and_error(self, open_broker: Any, clock: SuiteClock) -> None:
        b = await open_broker(clock)
        try:
            await b.send("q", [msg()])
            (d,) = await b.receive("q", visibility_timeout_s=300)
            t = Timeline(clock)
            assert await b.nack("q", d.receipt, delay_s=self.T.retry, error="boom: it failed")
            assert await b.receive("q") == []
            await t.at(self.after(self.T.retry, edge=0.01))
            (again,) = await b.receive("q")
            assert again.receive_count == 2 and again.last_error == "boom: it failed"
        finally:
            await b.close()

    @async_test
    async def test_extend_keeps_a_message_hidden(self, open_broker: Any, clock: SuiteClock) -> None:
        b = await open_broker(clock)
        try:
            await b.send("q", [msg()])
            t = Timeline(clock)
            (d,) = await b.receive("q", visibility_timeout_s=self.T.short)
            await t.at(self.before(self.T.short, edge=1))
            t.restart()
            assert await b.extend("q", d.receipt, self.T.visibility)
            # past the first timeout, within the extended one
            await t.at(self.before(self.T.visibility, edge=10))
            assert await b.receive("q") == []
            await t.at(self.after(self.T.visibility, edge=1))
            assert len(await b.receive("q")) == 1
        finally:
            await b.close()

    @async_test
    async def test_delay_seconds_on_send(self, open_broker: Any, clock: SuiteClock) -> None:
        b = await open_broker(clock)
        try:
            t = Timeline(clock)
            await b.send("q", [msg("later", delay_s=self.T.delay), msg("now")])
            assert [d.body for d in await b.receive("q", 10, visibility_timeout_s=300)] == [b"now"]
            await t.at(self.after(self.T.delay, edge=0.01))
            assert [d.body for d in await b.receive("q", 10)] == [b"later"]
        finally:
            await b.close()

    @async_test
    async def test_dead_letter_and_redrive(self, open_broker: Any, clock: SuiteClock) -> None:
        b = await open_broker(clock)
        try:
            ids = await b.send("q", [msg("1"), msg("2"), msg("3")])
            t = Timeline(clock)
            ds = await b.receive("q", 10, visibility_timeout_s=self.T.visibility)
            for d in ds:
                assert await b.dead_letter("q", d.receipt, dlq="q-dlq", reason="max_receive",
                                           error=f"failed {d.body.decode()}")
            assert await b.dead_letter("q", ds[0].receipt, dlq="q-dlq", reason="x") is False
            await t.at(self.after(self.T.visibility, edge=970))  # none comes back
            assert await b.receive("q", 10) == []
            dead = await b.peek("q-dlq", 10)
            assert [d.message_id for d in dead] == ids
            assert all(d.dead_letter_reason == "max_receive" and d.source_queue == "q"
                       for d in dead)
            assert dead[1].last_error == "failed 2" and dead[1].receive_count == 1
            # redrive one by id, then the rest
            assert await b.redrive("q-dlq", message_ids=[ids[1]]) == 1
            (back,) = await b.receive("q", 10)
            assert back.message_id == ids[1] and back.receive_count == 1
            assert back.dead_letter_reason is None
            assert await b.redrive("q-dlq", to="elsewhere") == 2
            assert len(await b.receive("elsewhere", 10)) == 2
            assert (await b.stats("q-dlq")).total == 0
        finally:
            await b.close()

    @async_test
    async def test_deduplication_window(self, open_broker: Any, clock: SuiteClock) -> None:
        window = self.T.delay
        b = await open_broker(clock, dedup_window_s=window)
        try:
            t = Timeline(clock)
            (a,) = await b.send("q", [msg("x", dedup_key="order-1")])
            (a2,) = await b.send("q", [msg("x again", dedup_key="order-1")])
            assert a2 == a
            (other,) = await b.send("other", [msg("x", dedup_key="order-1")])
            assert other != a  # the window is per queue
            assert len(await b.receive("q", 10)) == 1
            await t.at(self.after(window, edge=1))
            (a3,) = await b.send("q", [msg("x", dedup_key="order-1")])
            assert a3 != a
        finally:
            await b.close()

    @async_test
    async def test_message_size_limit(self, open_broker: Any, clock: SuiteClock) -> None:
        b = await open_broker(clock, max_message_bytes=1024)
        try:
            with pytest.raises(MessageTooLarge, match="1025 bytes is over the 1024-byte limit"):
                await b.send("q", [msg("y" * 10), OutMessage(body=b"z" * 1025)])
            assert (await b.stats("q")).total == 0  # nothing of that call was stored
            await b.send("q", [OutMessage(body=b"z" * 1024)])
        finally:
            await b.close()

    @async_test
    async def test_long_poll_wakes_on_send(self, open_broker: Any, clock: SuiteClock) -> None:
        b = await open_broker(clock)
        try:
            waiter = asyncio.ensure_future(b.receive("q", 1, wait_s=20))
            await asyncio.sleep(0)  # let it start waiting
            t0 = time.monotonic()
            await b.send("q", [msg("wake")])
            (d,) = await asyncio.wait_for(waiter, 5)
            assert d.body == b"wake" and time.monotonic() - t0 < 2
        finally:
            await b.close()

    @async_test
    async def test_long_poll_times_out_empty(self, open_broker: Any, clock: SuiteClock) -> None:
        b = await open_broker(clock)
        try:
            t0 = time.monotonic()
            assert await b.receive("q", 1, wait_s=0.05) == []
            assert 0.04 <= time.monotonic() - t0 < 2
        finally:
            await b.close()

    @async_test
    async def test_competing_consumers_never_share_a_delivery(
            self, open_broker: Any, clock: SuiteClock) -> None:
        b = await open_broker(clock)
        try:
            await b.send("q", [msg(str(i)) for i in range(200)])
            got = await asyncio.gather(*[b.receive("q", 7) for _ in range(40)])
            ids = [d.message_id for batch in got for d in batch]
            assert len(ids) == len(set(ids)) == 200
        finally:
            await b.close()

    @async_test
    async def test_two_nodes_competing_never_share_a_delivery(
            self, open_broker: Any, clock: Any) -> None:
        # Given two nodes (two brokers opened on one backing store) and 500 messages
        a, b = await open_broker(clock), await open_broker(clock)
        try:
            await a.send("q", [msg(str(i)) for i in range(500)])

            async def consume(node: QueueBroker) -> list[str]:
                got = []
                while batch := await node.receive("q", 7, visibility_timeout_s=60):
                    got += [d.message_id for d in batch]
                    assert all(await node.ack("q", [d.receipt for d in batch]))
                return got

            # When 8 consumers on each node take and ack until the queue is empty
            results = await asyncio.gather(*[consume(n) for n in (a, b) for _ in range(8)])
            # Then every message was delivered exactly once, and both nodes took a share
            ids = [i for r in results for i in r]
            assert len(ids) == len(set(ids)) == 500
            if self.NODES_SHARE_WORK:
                assert sum(map(len, results[:8])) and sum(map(len, results[8:]))
            assert (await b.stats("q")).total == 0
        finally:
            await a.close()
            await b.close()

    @async_test
    async def test_concurrent_sends_are_all_stored(self, open_broker: Any,
                                                   clock: SuiteClock) -> None:
        b = await open_broker(clock)
        try:
            results = await asyncio.gather(*[b.send("q", [msg(str(i))]) for i in range(500)])
            ids = [i for r in results for i in r]
            assert len(set(ids)) == 500
            assert (await b.stats("q")).visible == 500
        finally:
            await b.close()

    @async_test
    async def test_stats_peek_update_delete_purge(self, open_broker: Any,
                                                  clock: SuiteClock) -> None:
        b = await open_broker(clock)
        try:
            t = Timeline(clock)
            ids = await b.send("q", [msg("a"), msg("b"), msg("c", delay_s=self.T.visibility),
                                     msg("d")])
            (d,) = await b.receive("q", 1, visibility_timeout_s=300)
            s = await b.stats("q")
            assert (s.visible, s.in_flight, s.delayed) == (2, 1, 1)
            page1 = await b.peek("q", 2)
            page2 = await b.peek("q", 2, after_id=page1[-1].message_id)
            assert [p.message_id for p in page1 + page2] == ids
            assert await b.update_body("q", ids[1], b"B")
            assert await b.update_body("q", d.message_id, b"A") is False  # in flight
            assert await b.delete("q", [ids[3]]) == 1
            await t.at(self.after(self.T.visibility, edge=1))  # c's delay is over
            bodies = sorted(x.body for x in await b.receive("q", 10))
            assert bodies == [b"B", b"c"]
            assert await b.purge("q") == 3
            assert (await b.stats("q")).total == 0
        finally:
            await b.close()

    @async_test
    async def test_sent_messages_survive_reopen(self, open_broker: Any, clock: SuiteClock) -> None:
        b = await open_broker(clock)
        ids = await b.send("q", [msg("durable 1"), msg("durable 2")])
        t = Timeline(clock)
        (d,) = await b.receive("q", 1, visibility_timeout_s=self.T.visibility)
        await b.close()
        b2 = await open_broker(clock)
        try:
            # the in-flight one reappears after its visibility timeout
            await t.at(self.after(self.T.visibility, edge=1))
            got = await b2.receive("q", 10)
            assert sorted(x.message_id for x in got) == sorted(ids)
            assert await b2.ack("q", [d.receipt]) == [False]  # stale after redelivery
        finally:
            await b2.close()

    @async_test
    async def test_send_many_is_one_atomic_fan_out(self, open_broker: Any,
                                                   clock: SuiteClock) -> None:
        b = await open_broker(clock, max_message_bytes=100)
        try:
            ids = await b.send_many({"a": [msg("1"), msg("2")], "b": [msg("3")], "c": []})
            assert len(ids["a"]) == 2 and len(ids["b"]) == 1
            assert (await b.stats("a")).visible == 2 and (await b.stats("b")).visible == 1
            with pytest.raises(MessageTooLarge):
                await b.send_many({"a": [msg("4")], "b": [OutMessage(body=b"x" * 101)]})
            assert (await b.stats("a")).visible == 2  # nothing of the failed fan-out landed
        finally:
            await b.close()

    @async_test
    async def test_publish_archives_and_enqueues_and_replays_by_time(
            self, open_broker: Any, clock: SuiteClock) -> None:
        b = await open_broker(clock)
        try:
            events = [ArchivedEvent(f"e{i}", 1000.0 + i, "shop", "OrderCreated", f'{{"n": {i}}}')
                      for i in range(10)]
            out = await b.publish(events[:5], {"t1": [msg("x")]})
            assert len(out["t1"]) == 1
            await b.publish(events[5:], {})
            await b.publish(events[:1], {})  # an event id is archived once
            window = await b.archived(1002.0, 1007.0)
            assert [e.event_id for e in window] == ["e2", "e3", "e4", "e5", "e6"]
            page1 = await b.archived(0, 2000, limit=4)
            page2 = await b.archived(0, 2000, limit=4, after=page1[-1].event_id)
            assert [e.event_id for e in page1 + page2] == [f"e{i}" for i in range(8)]
            assert page1[0].body == '{"n": 0}' and page1[0].detail_type == "OrderCreated"
        finally:
            await b.close()

    @async_test
    async def test_a_schedule_tick_fires_exactly_once(self, open_broker: Any,
                                                      clock: SuiteClock) -> None:
        b = await open_broker(clock)
        try:
            assert await b.last_tick("every-minute") is None
            assert await b.fire_tick("every-minute", 60.0, "_sched", msg("t60"))
            assert not await b.fire_tick("every-minute", 60.0, "_sched", msg("t60 again"))
            assert not await b.fire_tick("every-minute", 0.0, "_sched", msg("older"))
            assert await b.fire_tick("every-minute", 120.0, "_sched", msg("t120"))
            assert await b.last_tick("every-minute") == 120.0
            assert [d.body for d in await b.receive("_sched", 10)] == [b"t60", b"t120"]
        finally:
            await b.close()
        b2 = await open_broker(clock)
        try:  # the fired tick survives a restart
            assert not await b2.fire_tick("every-minute", 120.0, "_sched", msg("after restart"))
        finally:
            await b2.close()

    @async_test
    async def test_leases_have_one_holder_until_they_expire(self, open_broker: Any,
                                                           clock: SuiteClock) -> None:
        b = await open_broker(clock)
        ttl = self.T.short
        try:
            t = Timeline(clock)
            assert await b.lease("scheduler", "node-a", ttl)
            assert not await b.lease("scheduler", "node-b", ttl)  # a holds it
            assert await b.lease("other", "node-b", ttl)  # leases are independent
            await t.at(self.before(ttl, edge=4))
            t.restart()
            assert await b.lease("scheduler", "node-a", ttl)  # a renews: now + ttl
            await t.at(self.before(ttl, edge=4))  # past the first ttl, within the renewed
            assert not await b.lease("scheduler", "node-b", ttl)  # renewed, not expired
            await t.at(self.after(ttl, edge=0.5))
            assert await b.lease("scheduler", "node-b", ttl)  # a stopped renewing: b takes it
            assert not await b.lease("scheduler", "node-a", ttl)
            await b.release("scheduler", "node-a")  # not a's to give up: no effect
            assert not await b.lease("scheduler", "node-a", ttl)
            await b.release("scheduler", "node-b")
            assert await b.lease("scheduler", "node-a", ttl)  # released: free at once
            got = await asyncio.gather(*[b.lease("race", f"n{i}", ttl) for i in range(20)])
            assert sum(got) == 1  # concurrent takers: exactly one wins
        finally:
            await b.close()
        b2 = await open_broker(clock)
        try:  # a lease survives a reopen
            assert not await b2.lease("scheduler", "node-b", ttl)
        finally:
            await b2.close()

    @async_test
    async def test_idempotency_records(self, open_broker: Any, clock: SuiteClock) -> None:
        b = await open_broker(clock)
        long_lock, lock, expiry = self.T.delay, self.T.visibility, self.T.expiry
        try:
            assert await b.idem_begin("k1", "h1", long_lock) == ("new", None)
            assert await b.idem_begin("k1", "h1", long_lock) == ("in_progress", None)
            assert await b.idem_begin("k1", "other", long_lock) == ("mismatch", None)
            t = Timeline(clock)
            await b.idem_complete("k1", '{"r": 1}', expiry)
            assert await b.idem_begin("k1", "h1", long_lock) == ("done", '{"r": 1}')
            await t.at(self.after(expiry, edge=1))  # the record expired: the work may run again
            assert await b.idem_begin("k1", "h1", long_lock) == ("new", None)
            # a run that died holding the lock is taken over after the lock expires
            t.restart()
            assert await b.idem_begin("k2", "h", lock) == ("new", None)
            await t.at(self.after(lock, edge=1))
            assert await b.idem_begin("k2", "h", lock) == ("new", None)
            # a failed run releases its claim at once
            await b.idem_release("k2")
            assert await b.idem_begin("k2", "h", lock) == ("new", None)
        finally:
            await b.close()

    @async_test
    async def test_streams_keep_order_per_partition_key(self, open_broker: Any,
                                                        clock: SuiteClock) -> None:
        b = await open_broker(clock)
        try:
            placed = await b.append("s", [(f"k{i % 3}", f"{i}".encode()) for i in range(30)],
                                    shards=4)
            by_key: dict[str, set[int]] = {}
            for i, (shard, _) in enumerate(placed):
                by_key.setdefault(f"k{i % 3}", set()).add(shard)
            assert all(len(v) == 1 for v in by_key.values())  # one key, one shard
            for shard in {s for s, _ in placed}:
                got = await b.read("s", shard, 0, 100)
                seqs = [e.seq for e in got]
                assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
                for key in {e.partition_key for e in got}:
                    values = [int(e.data) for e in got if e.partition_key == key]
                    assert values == sorted(values)  # arrival order kept per key
            shard0, seq0 = placed[0]
            later = await b.read("s", shard0, seq0, 2)
            assert all(e.seq > seq0 for e in later)
            assert await b.latest_seq("s", shard0) == max(q for s, q in placed if s == shard0)
        finally:
            await b.close()

    @async_test
    async def test_stream_checkpoints_per_consumer_survive_reopen(
            self, open_broker: Any, clock: SuiteClock) -> None:
        b = await open_broker(clock)
        try:
            assert await b.get_checkpoint("s", "c1", 0) is None
            await b.set_checkpoint("s", "c1", 0, 5)
            await b.set_checkpoint("s", "c1", 0, 3)  # never goes back
            await b.set_checkpoint("s", "c2", 0, 1)
            waiter = asyncio.ensure_future(b.read("s", 1, 0, 10, wait_s=10))
            await asyncio.sleep(0)
            await b.append("s", [("x", b"1")] * 0 + [(k, b"v") for k in
                                                     [str(i) for i in range(40)]], shards=2)
            assert len(await asyncio.wait_for(waiter, 5)) >= 1  # the read woke on append
        finally:
            await b.close()
        b2 = await open_broker(clock)
        try:
            assert await b2.get_checkpoint("s", "c1", 0) == 5
            assert await b2.get_checkpoint("s", "c2", 0) == 1
        finally:
            await b2.close()
