"""The embedded SQLite broker against the shared conformance suite, plus what only it has."""

from __future__ import annotations

import pytest

from squall.backends.sqlite.broker import SqliteBroker
from squall.testing.conformance import BrokerConformance, FakeClock, async_test, msg
from squall.testing.stream_conformance import StreamConformance


class TestSqliteBroker(BrokerConformance, StreamConformance):
    NODES_SHARE_WORK = False  # one file lock: see BrokerConformance

    @pytest.fixture
    def open_broker(self, tmp_path):
        async def open_(clock, **opts):
            return SqliteBroker(tmp_path / "broker.db", clock=clock, **opts)

        return open_


def test_durability_settings(tmp_path):
    b = SqliteBroker(tmp_path / "b.db")
    try:
        assert b._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert b._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        import asyncio

        asyncio.run(b.close())


@async_test
async def test_a_send_from_another_process_wakes_a_waiting_receiver(tmp_path):
    # Given a consumer long-polling the broker of a running app
    b = SqliteBroker(tmp_path / "b.db")
    try:
        import asyncio

        waiter = asyncio.ensure_future(b.receive("q", 1, wait_s=10))
        await asyncio.sleep(0.01)
        # When another connection (another process: `squall send`) commits a message
        other = SqliteBroker(tmp_path / "b.db")
        await other.send("q", [msg("from outside")])
        await other.close()
        # Then the waiting receiver sees it within the external-check interval
        (d,) = await asyncio.wait_for(waiter, 3)
        assert d.body == b"from outside"
    finally:
        await b.close()


@async_test
async def test_sends_are_group_committed(tmp_path):
    import asyncio

    b = SqliteBroker(tmp_path / "b.db")
    commits = []
    b._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    try:
        await asyncio.gather(*[b.send("q", [msg(str(i))]) for i in range(1000)])
        assert (await b.stats("q")).visible == 1000
        # 1000 concurrent sends, each durable on return, share far fewer commits
        assert 1 <= len(commits) < 200, len(commits)
    finally:
        await b.close()


def test_fake_clock_advances():
    c = FakeClock(10)
    c.advance(5)
    assert c() == 15


@async_test
async def test_a_stream_database_from_before_traces_gets_the_trace_column(tmp_path):
    import sqlite3

    # Given a broker database whose stream records have no trace column (made before it)
    db = sqlite3.connect(tmp_path / "b.db")
    db.executescript("""
        CREATE TABLE stream_records (stream TEXT NOT NULL, shard INTEGER NOT NULL,
            seq INTEGER NOT NULL, partition_key TEXT NOT NULL, data BLOB NOT NULL,
            arrival REAL NOT NULL, PRIMARY KEY (stream, shard, seq)) WITHOUT ROWID;
        INSERT INTO stream_records VALUES ('s', 0, 1, 'k', X'6f6c64', 1.0);""")
    db.commit()
    db.close()
    b = SqliteBroker(tmp_path / "b.db")
    try:
        # When the broker reads and appends
        (old,) = await b.read("s", 0, 0, 10)
        trace = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
        ((shard, seq),) = await b.append("s", [("k", b"new")], shards=1, trace=trace)
        # Then the old record is kept (without a trace) and the new one has its trace
        assert (old.data, old.trace) == (b"old", None)
        (new,) = await b.read("s", shard, seq - 1, 1)
        assert (new.seq, new.data, new.trace) == (2, b"new", trace)
    finally:
        await b.close()
