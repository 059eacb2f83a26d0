"""The PostgreSQL broker against the shared conformance suite, plus what only a shared
database has to show: several nodes (broker instances) on one schema competing for
messages, waking each other's long polls, and appending to one stream."""

from __future__ import annotations

import asyncio
import time

import pytest
from pg_fixtures import postgres_url, terminate, unique_schema

from squall.backends import BrokerError, open_broker
from squall.backends.postgres.broker import PgBroker
from squall.testing.conformance import BrokerConformance, async_test, msg
from squall.testing.stream_conformance import StreamConformance


@pytest.fixture
def pg_url() -> str:
    return postgres_url()


@pytest.fixture
def schema(pg_url):
    with unique_schema(pg_url) as name:
        yield name


async def waiting(node: PgBroker, key: str) -> None:
    """Until a long poll waits on `key` (a peek inside: no public API says so)."""
    while key not in node._waker._waiters:
        await asyncio.sleep(0.001)


class TestPgBroker(BrokerConformance, StreamConformance):
    @pytest.fixture
    def open_broker(self, pg_url, schema):
        async def open_(clock, **opts):
            return PgBroker(pg_url, clock=clock, schema=schema, **opts)

        return open_


# -- several nodes on one database -------------------------------------------------------


@async_test
async def test_a_receive_waiting_on_one_node_wakes_when_another_sends(pg_url, schema):
    a, b = PgBroker(pg_url, schema=schema), PgBroker(pg_url, schema=schema)
    try:
        # Given a consumer long-polling node A
        waiter = asyncio.ensure_future(a.receive("q", 1, wait_s=20))
        await waiting(a, "q:q")
        # When node B sends
        t0 = time.monotonic()
        await b.send("q", [msg("from b")])
        # Then A's consumer has it at once: woken by NOTIFY, not by a poll
        (d,) = await asyncio.wait_for(waiter, 5)
        assert d.body == b"from b" and time.monotonic() - t0 < 1
    finally:
        await a.close()
        await b.close()


@async_test
async def test_a_stream_read_waiting_on_one_node_wakes_when_another_appends(pg_url, schema):
    a, b = PgBroker(pg_url, schema=schema), PgBroker(pg_url, schema=schema)
    try:
        waiter = asyncio.ensure_future(a.read("s", 0, 0, 10, wait_s=20))
        await waiting(a, "s:s")
        t0 = time.monotonic()
        await b.append("s", [("k", b"v")], shards=1)
        (entry,) = await asyncio.wait_for(waiter, 5)
        assert entry.data == b"v" and time.monotonic() - t0 < 1
    finally:
        await a.close()
        await b.close()


@async_test
async def test_concurrent_appenders_on_two_nodes_keep_seqs_unique_and_increasing(pg_url, schema):
    a, b = PgBroker(pg_url, schema=schema), PgBroker(pg_url, schema=schema)
    try:
        # Given 40 appends of 5 records over 3 shards, racing from two nodes
        async def append(node: PgBroker, i: int) -> list[tuple[int, int]]:
            return await node.append("s", [(f"k{(i + j) % 7}", f"{i}.{j}".encode())
                                           for j in range(5)], shards=3)

        placed = await asyncio.gather(*[append((a, b)[i % 2], i) for i in range(40)])
        # Then each call got increasing seqs per shard, and no seq was given twice
        for call in placed:
            for shard in {s for s, _ in call}:
                seqs = [q for s, q in call if s == shard]
                assert seqs == sorted(seqs)
        by_shard: dict[int, list[int]] = {}
        for shard, seq in (p for call in placed for p in call):
            by_shard.setdefault(shard, []).append(seq)
        for shard, seqs in by_shard.items():
            # the shard holds exactly 1..n, read back in order, with no gap
            assert sorted(seqs) == list(range(1, len(seqs) + 1))
            got = await b.read("s", shard, 0, 1000)
            assert [e.seq for e in got] == sorted(seqs)
            assert await a.latest_seq("s", shard) == len(seqs)
    finally:
        await a.close()
        await b.close()


@async_test
async def test_the_server_clock_is_used_when_no_clock_is_given(pg_url, schema):
    b = PgBroker(pg_url, schema=schema)
    try:
        await b.send("q", [msg("now"), msg("later", delay_s=30)])
        (d,) = await b.receive("q", 10, visibility_timeout_s=30)
        assert d.body == b"now" and abs(d.sent_at - time.time()) < 5
        s = await b.stats("q")
        assert (s.visible, s.in_flight, s.delayed) == (0, 1, 1)
        assert await b.lease("leader", "node-a", 30)
        assert not await b.lease("leader", "node-b", 30)
    finally:
        await b.close()


@async_test
async def test_the_url_may_name_the_schema(pg_url, schema):
    a = open_broker(f"{pg_url}?schema={schema}")
    b = PgBroker(pg_url, schema=schema)
    try:
        assert a.schema == schema
        await a.send("q", [msg("x")])
        assert [d.body for d in await b.receive("q")] == [b"x"]
    finally:
        await a.close()
        await b.close()


@async_test
async def test_nodes_opening_one_schema_at_once_all_succeed(pg_url, schema):
    nodes = [PgBroker(pg_url, schema=schema) for _ in range(6)]
    try:
        # each first call creates the schema under the advisory lock
        await asyncio.gather(*[n.stats("q") for n in nodes])
    finally:
        for n in nodes:
            await n.close()


# -- errors ------------------------------------------------------------------------------

@async_test
async def test_an_unreachable_server_is_a_clear_broker_error_at_first_use():
    b = open_broker("postgresql://postgres:hunter2@127.0.0.1:1/test")  # no I/O yet
    t0 = time.monotonic()
    try:
        with pytest.raises(BrokerError) as info:
            await b.send("q", [msg()])
    finally:
        await b.close()
    text = str(info.value)
    assert time.monotonic() - t0 < 5
    assert "cannot send to queue 'q'" in text and "127.0.0.1:1/test" in text
    assert "pg_ctlcluster 15 main start" in text and "hunter2" not in text


@pytest.mark.parametrize("url", ["postgresql://u:hunter2@[::1/test", "postgresql://h:port/db",
                                 "postgresql://h/db?nonsense=1"])
def test_a_malformed_url_is_a_broker_error(url):
    with pytest.raises(BrokerError, match="bad PostgreSQL URL") as info:
        PgBroker(url)
    assert "hunter2" not in str(info.value)


def test_a_bad_schema_name_is_a_broker_error():
    with pytest.raises(BrokerError, match="bad schema name"):
        PgBroker("postgresql://postgres@127.0.0.1:5432/test", schema="x; DROP TABLE y")


@async_test
async def test_a_closed_broker_refuses_calls_and_wakes_its_waiters(pg_url, schema):
    b = PgBroker(pg_url, schema=schema)
    waiter = asyncio.ensure_future(b.receive("q", 1, wait_s=20))
    await waiting(b, "q:q")
    await b.close()
    with pytest.raises(BrokerError, match="closed"):
        await asyncio.wait_for(waiter, 5)
    with pytest.raises(BrokerError, match="closed"):
        await b.send("q", [msg()])


@async_test
async def test_the_broker_recovers_after_its_connections_are_killed(pg_url, schema):
    b = PgBroker(pg_url, schema=schema, pool_size=3)
    try:
        await asyncio.gather(*[b.send("q", [msg(f"before {i}")]) for i in range(6)])
        # When every connection of this broker is terminated, the listening one too, as a
        # server restart would
        assert terminate(pg_url, b.app_name) >= 2
        # Then a call works, at the latest when retried once after a "lost the connection"
        got = []
        for _ in range(2):
            try:
                got = await b.receive("q", 10)
                break
            except BrokerError as exc:
                assert "lost the connection to PostgreSQL at 127.0.0.1:5432/test" in str(exc)
        assert sorted(d.body for d in got) == [f"before {i}".encode() for i in range(6)]
        # and a long poll is woken by a later send (through the new listening connection,
        # or by the wake-up that reconnecting it gives every waiter)
        waiter = asyncio.ensure_future(b.receive("q", 1, wait_s=20))
        await waiting(b, "q:q")
        await b.send("q", [msg("after")])
        (d,) = await asyncio.wait_for(waiter, 5)
        assert d.body == b"after"
    finally:
        await b.close()


@async_test
async def test_a_stream_schema_from_before_traces_gets_the_trace_column(pg_url, schema):
    import psycopg
    from psycopg import sql

    # Given a schema whose stream records have no trace column (made before it)
    a = PgBroker(pg_url, schema=schema)
    try:
        await a.append("s", [("k", b"old")], shards=1)
    finally:
        await a.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER TABLE {}.stream_records DROP COLUMN trace").format(
            sql.Identifier(schema)))
    # When a broker reads and appends there
    b = PgBroker(pg_url, schema=schema)
    try:
        (old,) = await b.read("s", 0, 0, 10)
        trace = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
        await b.append("s", [("k", b"new")], shards=1, trace=trace)
        # Then the old record is kept (without a trace) and the new one has its trace
        assert (old.data, old.trace) == (b"old", None)
        (new,) = await b.read("s", 0, old.seq, 1)
        assert (new.data, new.trace) == (b"new", trace)
    finally:
        await b.close()
