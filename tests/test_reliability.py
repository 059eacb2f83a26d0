"""Reliability scenarios that need no chaos run (see bench/chaos for those): durability
settings, a full disk, wall-clock jumps and DST, retry-policy conformance, and the
recursive-loop stop at hop 16."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pytest

from squall import App, BatchResult, RetryPolicy
from squall.backends.event_store import NewEvent
from squall.backends.sqlite.broker import SqliteBroker
from squall.backends.sqlite.deadlines import DeadlineClock
from squall.backends.sqlite.eventstore import SqliteEventStore
from squall.backends.sqlite.workflows import SqliteWorkflowStore
from squall.config import FunctionConfig, QueueTrigger
from squall.events.lineage import MAX_HOPS
from squall.events.schedule import parse_schedule
from squall.sources.queue import QueueConsumer
from squall.sources.scheduler import Scheduler
from squall.testing import TestClient
from squall.testing.conformance import FakeClock, async_test, msg
from squall.types import InvocationResult

# -- durability mode ------------------------------------------------------------------


def test_acknowledged_writes_are_fsynced_by_default(tmp_path):
    # queue broker, event store and workflow store: synchronous=FULL (2) unless opted out
    broker = SqliteBroker(tmp_path / "broker.db")
    try:
        assert broker._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        asyncio.run(broker.close())
    for store in (SqliteEventStore(tmp_path / "events.db"),
                  SqliteWorkflowStore(tmp_path / "workflows.db")):
        conns = [v for v in vars(store).values() if isinstance(v, sqlite3.Connection)]
        assert conns and all(c.execute("PRAGMA synchronous").fetchone()[0] == 2 for c in conns)
        store.close()
    # the faster mode is an explicit opt-in
    fast = SqliteBroker(tmp_path / "fast.db", synchronous="NORMAL")
    try:
        assert fast._db.execute("PRAGMA synchronous").fetchone()[0] == 1
    finally:
        asyncio.run(fast.close())


# -- disk full ------------------------------------------------------------------------

# The writers: a store in a process whose files may not grow past a limit (RLIMIT_FSIZE;
# SIGXFSZ ignored, so a write past it fails with EFBIG). Each writes one record at a time
# and prints what was acknowledged, and keeps trying after the first failure.
LIMITED = textwrap.dedent("""
    import os, resource, signal, sys

    def limit(path, extra):
        size = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + extra, size + extra))

    def attempts(write, error):
        failures = 0
        for i in range(5000):
            try:
                print("ACK", write(i), flush=True)
            except error as exc:
                failures += 1
                print("FAIL", str(exc).replace(chr(10), " "), flush=True)
                if failures >= 20:
                    return
""")
BROKER_WRITER = LIMITED + textwrap.dedent("""
    import asyncio
    from squall.backends.broker import BrokerError, OutMessage
    from squall.backends.sqlite.broker import SqliteBroker

    loop = asyncio.new_event_loop()
    b = SqliteBroker(sys.argv[1])
    loop.run_until_complete(b.send("q", [OutMessage(body=b"warm-up")]))
    limit(sys.argv[1], int(sys.argv[2]))
    attempts(lambda i: loop.run_until_complete(
        b.send("q", [OutMessage(body=b"x" * 1000 + str(i).encode())]))[0], BrokerError)
""")
EVENTS_WRITER = LIMITED + textwrap.dedent("""
    from squall.backends.event_store import EventStoreError, NewEvent
    from squall.backends.sqlite.eventstore import SqliteEventStore

    es = SqliteEventStore(sys.argv[1])
    es.append("s-warm", [NewEvent("Warm")])
    limit(sys.argv[1], int(sys.argv[2]))
    attempts(lambda i: es.append(f"s-{i}", [NewEvent("E", {"pad": "x" * 1000})])[0].position,
             EventStoreError)
""")


def _fill_the_disk(script: str, db) -> tuple[list[str], list[str]]:
    out = subprocess.run([sys.executable, "-c", script, str(db), str(64 * 1024)],
                         capture_output=True, text=True, timeout=60)
    lines = out.stdout.splitlines()
    acked = [ln.split()[1] for ln in lines if ln.startswith("ACK ")]
    failed = [ln for ln in lines if ln.startswith("FAIL ")]
    assert acked and len(failed) == 20, out.stdout[-2000:] + out.stderr[-2000:]
    c = sqlite3.connect(db)
    try:  # no corruption
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        c.close()
    return acked, failed


def test_a_full_disk_acknowledges_no_unstored_message_and_corrupts_nothing(tmp_path):
    # Given a broker whose files may grow by only 64 KiB more, sending until that is full
    db = tmp_path / "broker.db"
    acked, failed = _fill_the_disk(BROKER_WRITER, db)
    # Then sends fail with a clear error, and keep failing; the file is intact
    assert "broker commit failed" in failed[0]

    async def after() -> None:
        b = SqliteBroker(db)
        try:  # every acknowledged message is there, nothing else
            stored = [d.message_id for d in await b.peek("q", 10_000)]
            assert set(acked) <= set(stored)
            assert len(stored) == len(acked) + 1  # + the warm-up
            # and once space is back, it works again
            (mid,) = await b.send("q", [msg("after")])
            assert mid in [d.message_id for d in await b.peek("q", 10_000)]
        finally:
            await b.close()

    asyncio.run(after())


def test_a_full_disk_acknowledges_no_unstored_event_and_corrupts_nothing(tmp_path):
    db = tmp_path / "events.db"
    acked, failed = _fill_the_disk(EVENTS_WRITER, db)
    es = SqliteEventStore(db)
    try:
        # the acknowledged events are there, gap-free, and nothing unacknowledged
        positions = [e.position for e in es.read_all(0, 100_000)]
        assert positions == list(range(1, len(acked) + 2))  # + the warm-up
        assert {int(p) for p in acked} <= set(positions)
        (again,) = es.append("after", [NewEvent("E")])  # space is back: it works
        assert again.position == len(positions) + 1
    finally:
        es.close()


# -- wall-clock jumps and DST ---------------------------------------------------------

def _scheduled_app(expr: str, tz: str) -> dict[str, FunctionConfig]:
    app = App("clock")
    app.schedule(expr, timezone=tz, name="tick")(lambda e, c: None)
    return {n: f.config for n, f in app.functions.items()}


async def _fired(broker: SqliteBroker) -> list[datetime]:
    got = [json.loads(d.body)["time"] for d in await broker.peek("_async.tick", 10_000)]
    return [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in got]


@pytest.mark.parametrize("day", ["2026-03-29", "2026-10-25"])  # Berlin: spring, autumn
@async_test
async def test_each_cron_slot_fires_once_across_dst_and_clock_jumps(tmp_path, day):
    # Given a quarter-hourly Berlin schedule and a clock around a DST transition
    configs = _scheduled_app("cron(0/15 * * * ? *)", "Europe/Berlin")
    start = datetime.fromisoformat(day).replace(tzinfo=timezone.utc) - timedelta(hours=3)
    clock = FakeClock(start.timestamp())
    broker = SqliteBroker(tmp_path / "b.db", clock=clock)
    sched = Scheduler(broker, configs, clock=clock)
    try:
        # When the scheduler wakes every 5 minutes, and the wall clock jumps back an hour
        # once and forward 2 hours (landing on a slot) once
        for i in range(12 * 8):
            if i == 30:
                clock.advance(-3600)
            if i == 60:
                clock.advance(7200 - (clock.now % 900))
            await sched.fire_due()
            clock.advance(300)
        fired = await _fired(broker)
    finally:
        await broker.close()
    # Then no slot fired twice, slots fired in order, and every slot in the run's span
    # fired except those the forward jump skipped (policy "skip": only the one it landed on)
    assert len(fired) == len(set(fired)) and fired == sorted(fired)
    slots = set(parse_schedule("cron(0/15 * * * ? *)", "Europe/Berlin").firings_between(
        start, fired[-1]))
    missing = sorted(slots - set(fired))
    assert set(fired) <= slots
    assert 0 < len(missing) <= 8  # the 2 h jump: 8 slots skipped, the landing slot fired
    assert max(missing) - min(missing) <= timedelta(hours=2)


@async_test
async def test_wall_clock_jumps_move_no_visibility_timeout_or_delay(tmp_path):
    # Given an embedded broker whose wall clock we can step, and whose monotonic clock
    # (where its deadlines live) only moves forward, as the machine's does
    wall, mono = FakeClock(), FakeClock(1000.0)
    b = SqliteBroker(tmp_path / "b.db", clock=wall, timer=DeadlineClock(mono, "boot-1"))
    try:
        await b.send("q", [msg("a"), msg("b")])
        await b.send("q", [msg("later", delay_s=60)])
        d1, d2 = await b.receive("q", 2, visibility_timeout_s=30)
        assert d1.sent_at == wall.now  # user-facing times stay on the wall clock
        # When the wall clock jumps forward an hour
        wall.advance(3600)
        # Then the leases and the delay still hold
        assert await b.receive("q", 10) == []
        assert (await b.stats("q")).in_flight == 2 and (await b.stats("q")).delayed == 1
        # and when it jumps back two hours, the leases are not stretched: they end 30 s
        # after the receive, measured on the monotonic clock
        wall.advance(-7200)
        mono.advance(29.9)
        assert await b.receive("q", 10) == []
        mono.advance(0.2)
        again = await b.receive("q", 10, visibility_timeout_s=30)
        assert sorted(d.body for d in again) == [b"a", b"b"]
        assert await b.ack("q", [d1.receipt]) == [False]  # stale after the redelivery
        # a retry backoff is immune as well
        assert await b.nack("q", again[0].receipt, delay_s=5)
        wall.advance(86_400)
        assert [d.body for d in await b.receive("q", 10)] == []
        mono.advance(5.0)
        assert [d.body for d in await b.receive("q", 10)] == [again[0].body]
        # and the send delay ends 60 s after the send, however the wall clock went
        mono.now = 1000.0 + 59.9
        assert [d.body for d in await b.receive("q", 10)] == []
        mono.now = 1000.0 + 60.0
        assert [d.body for d in await b.receive("q", 10)] == [b"later"]
    finally:
        await b.close()


# -- retry-policy conformance ---------------------------------------------------------

@pytest.mark.parametrize("policy", [RetryPolicy(base_s=1.0, factor=2.0, max_s=5.0, jitter=False),
                                    RetryPolicy(base_s=2.0, factor=3.0, max_s=30.0)])
@async_test
async def test_retry_delays_and_attempts_match_the_policy(tmp_path, policy):
    # Given a queue function that always fails, max_receive=5
    clock = FakeClock()
    rand = iter([0.9, 0.25, 0.5, 0.75, 0.1] * 2)
    trigger = QueueTrigger("q", max_receive=5, retry=policy, visibility_timeout_s=60)
    cfg = FunctionConfig(name="f", kind="queue", queue=trigger)
    calls = []

    async def invoke(name, kind, payload, trace=None):
        calls.append(clock())
        return InvocationResult(request_id=f"r{len(calls)}", function=name, ok=False,
                                error_type="Boom",
                                error_message="it failed")

    broker = SqliteBroker(tmp_path / "b.db", clock=clock)
    consumer = QueueConsumer(broker, invoke, cfg, clock=clock, rand=lambda: next(rand))
    try:
        await broker.send("q", [msg("x")])
        delays = []
        # When it is retried until it is dead-lettered, each attempt as soon as visible
        for attempt in range(1, 10):
            batch = await consumer.next_batch(0, window=False)
            assert len(batch) == 1 and batch[0].receive_count == attempt
            await consumer.process(batch)
            if await broker.peek("q-dlq"):
                break
            expected = policy.delay(attempt, [0.9, 0.25, 0.5, 0.75, 0.1][attempt - 1])
            # Then the message stays hidden for exactly the policy's delay
            if expected > 0.01:
                clock.advance(expected - 0.01)
                assert await consumer.next_batch(0, window=False) == []
                clock.advance(0.01)
            delays.append(expected)
        (dead,) = await broker.peek("q-dlq")
        # and the attempts are the policy's: max_receive, then the DLQ with the reason
        assert len(calls) == 5 and dead.receive_count == 5
        assert dead.dead_letter_reason == "max_receive" and "it failed" in dead.last_error
        measured = [b - a for a, b in zip(calls, calls[1:])]
        assert measured == pytest.approx(delays, abs=1e-6)
        caps = [min(policy.max_s, policy.base_s * policy.factor ** (n - 1)) for n in range(1, 5)]
        assert all(0 <= d <= cap + 1e-9 for d, cap in zip(measured, caps))
        if not policy.jitter:
            assert measured == pytest.approx(caps)  # 1, 2, 4, 5 (capped)
    finally:
        await broker.close()


@async_test
async def test_idempotency_waits_do_not_use_up_max_receive(tmp_path):
    # Given a message whose run was killed, then found its key held by the dead run's
    # claim five times (IdempotencyInProgress), then failed twice more; max_receive=3
    clock = FakeClock()
    outcomes = iter(["Runtime.ExitError"] + ["IdempotencyInProgress"] * 5
                    + ["Runtime.ExitError", "Runtime.ExitError"])
    cfg = FunctionConfig(name="f", kind="queue", queue=QueueTrigger(
        "q", max_receive=3, retry=RetryPolicy(base_s=0.1, max_s=1.0, jitter=False),
        visibility_timeout_s=60))

    async def invoke(name, kind, payload, trace=None):
        return InvocationResult(request_id="r", function=name, ok=False,
                                error_type=next(outcomes), error_message="x")

    broker = SqliteBroker(tmp_path / "b.db", clock=clock)
    consumer = QueueConsumer(broker, invoke, cfg, clock=clock, rand=lambda: 0.5)
    try:
        await broker.send("q", [msg("x")])
        receives = 0
        while not await broker.peek("q-dlq"):
            clock.advance(5)
            batch = await consumer.next_batch(0, window=False)
            assert batch and receives < 8, "dead-lettered too late, or never"
            receives += 1
            await consumer.process(batch)
        # Then it was dead-lettered at its third real failure (the eighth receive), not at
        # the third receive of any kind
        (dead,) = await broker.peek("q-dlq")
        assert receives == 8 and dead.receive_count == 8
    finally:
        await broker.close()


# -- recursive loops ------------------------------------------------------------------

def _loop_app() -> App:
    app = App("loops")

    @app.queue("ping", batch_size=1, max_receive=3)
    def ping(batch, ctx):  # sends its own trigger again: a recursive loop
        for m in batch:
            app.send("ping", {"n": m.data["n"] + 1})
        return BatchResult(failed=[])

    @app.queue("fan", batch_size=1)
    def fan(batch, ctx):  # a legitimate deep chain: 31 hops, each function at most 16 times
        for m in batch:
            level = m.data["level"]
            if level < 30:
                app.send("fan2" if level % 2 == 0 else "fan", {"level": level + 1})
        return BatchResult(failed=[])

    @app.queue("fan2", batch_size=1)
    def fan2(batch, ctx):
        for m in batch:
            for child in range(3 if m.data["level"] < 3 else 1):  # and a little fan-out
                app.send("fan", {"level": m.data["level"] + 1, "child": child})
        return BatchResult(failed=[])

    return app


def test_a_recursive_loop_is_stopped_at_hop_16_and_dead_lettered():
    with TestClient(_loop_app(), clock=FakeClock()) as client:
        client.send("ping", {"n": 0})
        client.drain()
        runs = client.invocations("ping")
        (dead,) = client.dead_letters("ping")
        assert sum(1 for r in runs if r.ok) == MAX_HOPS  # 16 runs went through
        assert dead.dead_letter_reason == "recursive_loop"
        assert json.loads(dead.body)["n"] == MAX_HOPS  # the 17th hop
        assert "recursive loop" in (dead.last_error or "")


def test_a_legitimate_deep_chain_is_not_stopped():
    with TestClient(_loop_app(), clock=FakeClock()) as client:
        client.send("fan", {"level": 0})
        client.drain()
        assert client.dead_letters("fan") == [] and client.dead_letters("fan2") == []
        assert all(r.ok for r in client.invocations())
