"""Leases across nodes: one scheduler leader, one reader per stream shard, take-over when
a holder stops renewing. Two "nodes" here are two keepers/consumers on one broker file,
each with its own connection, as two processes would be."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace

from squall.backends.sqlite.broker import SqliteBroker
from squall.config import FunctionConfig, StreamTrigger
from squall.sources.leases import LeaseKeeper, new_node_id
from squall.sources.stream import StreamConsumer
from squall.testing.conformance import async_test


@async_test
async def test_one_holder_and_release_hands_over_at_once(tmp_path):
    a, b = SqliteBroker(tmp_path / "b.db"), SqliteBroker(tmp_path / "b.db")
    n1, n2 = LeaseKeeper(a, "n1", ttl_s=5), LeaseKeeper(b, "n2", ttl_s=5)
    try:
        assert await n1.acquire("scheduler") and n1.holds("scheduler")
        assert not await n2.acquire("scheduler") and not n2.holds("scheduler")
        await n1.release_all()
        assert not n1.holds("scheduler")
        assert await n2.acquire("scheduler")
    finally:
        await n1.release_all()
        await n2.release_all()
        await a.close()
        await b.close()


@async_test
async def test_a_dead_holder_is_taken_over_after_its_ttl(tmp_path):
    a, b = SqliteBroker(tmp_path / "b.db"), SqliteBroker(tmp_path / "b.db")
    n1, n2 = LeaseKeeper(a, "n1", ttl_s=0.3), LeaseKeeper(b, "n2", ttl_s=0.3)
    try:
        assert await n1.acquire("scheduler")
        t0 = time.monotonic()
        await asyncio.sleep(0.25)  # n1 renews in the background while alive
        assert not await n2.acquire("scheduler")
        n1._task.cancel()  # n1 "dies": it stops renewing
        deadline = time.monotonic() + 5
        while not await n2.acquire("scheduler"):
            assert time.monotonic() < deadline, "the lease was never taken over"
            await n2.wait_turn()
        assert time.monotonic() - t0 >= 0.3  # not before the dead holder's lease expired
        assert not n1.holds("scheduler")  # n1's local deadline passed, too
    finally:
        await n2.release_all()
        await a.close()
        await b.close()


def test_node_ids_are_unique_per_process_start():
    assert len({new_node_id() for _ in range(100)}) == 100


@async_test
async def test_each_stream_shard_is_read_by_one_node_only(tmp_path):
    cfg = FunctionConfig(name="reader", kind="stream",
                         stream=StreamTrigger(stream="clicks", shards=4, batch_size=10))
    brokers = [SqliteBroker(tmp_path / "b.db") for _ in range(2)]
    seen: list[tuple[str, int, str, int]] = []
    done = asyncio.Event()

    def invoker(node: str):
        async def invoke(function: str, trigger: str, payload: str, trace: str | None = None):
            for r in json.loads(payload)["records"]:
                seen.append((node, r["shard"], r["partition_key"], int(r["data"])))
            if len(seen) >= 200:
                done.set()
            return SimpleNamespace(ok=True, value=json.dumps({"failed": []}))
        return invoke

    consumers = [StreamConsumer(b, invoker(f"n{i}"), cfg,
                                leases=LeaseKeeper(b, f"n{i}", ttl_s=3))
                 for i, b in enumerate(brokers)]
    try:
        for c in consumers:
            c.start()
        await brokers[0].append("clicks", [(f"k{i % 13}", str(i).encode()) for i in range(200)],
                                shards=4)
        await asyncio.wait_for(done.wait(), 10)
        assert sorted(v for *_, v in seen) == list(range(200))  # each record once
        owners: dict[int, set[str]] = {}
        for node, shard, _, _ in seen:
            owners.setdefault(shard, set()).add(node)
        assert all(len(nodes) == 1 for nodes in owners.values()), owners
        for key in {k for _, _, k, _ in seen}:
            values = [v for _, _, k, v in seen if k == key]
            assert values == sorted(values)
    finally:
        for c in consumers:
            await c.stop()
            await c.leases.release_all()
        for b in brokers:
            await b.close()


@async_test
async def test_one_scheduler_leads_and_each_tick_fires_once_across_nodes(tmp_path):
    from squall.config import ScheduleTrigger
    from squall.sources.scheduler import Scheduler
    from squall.testing.conformance import FakeClock

    clock = FakeClock(start=1_750_000_000.0)  # the broker's clock: lease expiry and ticks
    cfg = FunctionConfig(name="tick", kind="function",
                         schedule=ScheduleTrigger(expression="rate(1 minute)"))
    brokers = [SqliteBroker(tmp_path / "b.db", clock=clock) for _ in range(2)]
    nodes = [Scheduler(b, {"tick": cfg}, clock=clock, leases=LeaseKeeper(b, f"n{i}", ttl_s=10))
             for i, b in enumerate(brokers)]
    try:
        assert await nodes[0].step() and not await nodes[1].step()  # n0 leads
        for _ in range(3):  # three minutes pass; the leader fires each tick once
            clock.advance(60)
            assert await nodes[0].step() and not await nodes[1].step()
        nodes[0].leases._task.cancel()  # n0 dies: no more renewals
        clock.advance(60)  # past its lease (10 s) and one more tick
        assert await nodes[1].step()  # n1 takes over and fires the tick n0 missed
        assert not await nodes[0].step()
        fired = await brokers[0].receive("_async.tick", 100)
        times = [json.loads(d.body)["time"] for d in fired]
        assert len(times) == 4 and len(set(times)) == 4  # one firing per tick, no repeats
    finally:
        for s in nodes:
            await s.leases.release_all()
        for b in brokers:
            await b.close()
