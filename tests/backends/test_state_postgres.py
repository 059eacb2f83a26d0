"""The shared state stores on PostgreSQL against the shared state suites, plus what only
they promise: several nodes (store instances) on one schema lose no update, number each
shard's feed records without gaps, wake each other's feed readers, and read each other's
object bytes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time

import psycopg
import pytest
from pg_fixtures import postgres_url, terminate, unique_schema

from squall.backends.base import StoreError
from squall.backends.postgres.cache import PgCache
from squall.backends.postgres.objects import CHUNK_BYTES
from squall.backends.postgres.state import PgStateStore
from squall.backends.state import ConditionFailed, SortRange, shard_of
from squall.backends.state_open import open_cache, open_state
from squall.state import items as I
from squall.state.spec import TableConfig
from squall.testing.conformance import FakeClock
from squall.testing.state_conformance import (CacheConformance, ObjectConformance,
                                              TableConformance)


@pytest.fixture
def schema_url():
    url = postgres_url()
    with unique_schema(url) as schema:
        yield f"{url}?schema={schema}"


class TestPgTables(TableConformance):
    @pytest.fixture
    def open_tables(self, schema_url):
        return lambda clock: PgStateStore(schema_url, clock=clock)


class TestPgObjects(ObjectConformance):
    @pytest.fixture
    def open_objects(self, schema_url):
        return lambda clock: PgStateStore(schema_url, clock=clock)


class TestPgCache(CacheConformance):
    @pytest.fixture
    def open_cache(self, schema_url):
        return lambda clock: PgCache(schema_url, clock=clock)


@pytest.fixture
def nodes(schema_url):
    """Two store instances on one schema, as two nodes would have (server clock)."""
    a, b = PgStateStore(schema_url), PgStateStore(schema_url)
    yield a, b
    a.close()
    b.close()


COUNTERS = TableConfig("counters", key="id", shards=2)
EVENTS = TableConfig("events", key="user", sort_key="ts", shards=1)


def _increment(store, key, by=1):
    pk, sk, plan = I.plan_update(COUNTERS, key, now=time.time(), increment={"n": by})
    return store.write_item("counters", pk, sk, plan)


def _run_threads(*targets):
    errors = []

    def guard(fn):
        try:
            fn()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=guard, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors


def test_two_nodes_never_lose_an_update(nodes):
    a, b = nodes
    # Given two nodes incrementing the same (new) counter at once, 4 threads each
    work = [lambda s=s: [_increment(s, "hits") for _ in range(25)] for s in (a, b) * 4]
    _run_threads(*work)
    # Then every increment counted, and the versions went up one by one
    got = b.get_item("counters", I.encode_pk(COUNTERS, "hits"), None)
    assert got.data["n"] == 200 and got.version == 200
    shard = shard_of(I.encode_pk(COUNTERS, "hits"), COUNTERS.shards)
    recs = a.read_feed("table:counters", shard, 0, 1000)
    assert [json.loads(r.body)["version"] for r in recs] == list(range(1, 201))


def test_a_conditional_insert_on_two_nodes_has_one_winner(nodes):
    a, b = nodes
    wins, losses = [], []

    def insert(store, who):
        pk, sk, plan = I.plan_put(COUNTERS, {"id": "once", "by": who}, now=time.time(),
                                  expected_version=0)
        try:
            store.write_item("counters", pk, sk, plan)
            wins.append(who)
        except ConditionFailed:
            losses.append(who)

    # When 16 writers on two nodes each try to create the same item
    _run_threads(*[lambda i=i: insert((a, b)[i % 2], i) for i in range(16)])
    # Then exactly one succeeded, and the item and its one insert record are its
    assert len(wins) == 1 and len(losses) == 15
    got = a.get_item("counters", I.encode_pk(COUNTERS, "once"), None)
    assert got.data["by"] == wins[0] and got.version == 1
    recs = [r for s in range(2) for r in b.read_feed("table:counters", s, 0, 100)]
    assert [r.event for r in recs] == ["insert"]


def test_feed_seqs_from_two_nodes_are_gap_free_per_shard(nodes):
    a, b = nodes
    # Given writers on two nodes writing many keys (so both shards) concurrently
    def writer(store, tag):
        for i in range(40):
            _increment(store, f"{tag}-{i % 7}")

    _run_threads(*[lambda s=s, t=t: writer(s, t) for t in "wxyz" for s in (a, b)])
    # Then each shard's records are numbered 1..n without gaps, in the order of the
    # versions of each key (commit order)
    total = 0
    for shard in range(COUNTERS.shards):
        recs = b.read_feed("table:counters", shard, 0, 10_000)
        assert [r.seq for r in recs] == list(range(1, len(recs) + 1))
        assert a.latest_feed_seq("table:counters", shard) == len(recs)
        versions: dict[str, list[int]] = {}
        for r in recs:
            versions.setdefault(r.key, []).append(json.loads(r.body)["version"])
        assert all(v == list(range(1, len(v) + 1)) for v in versions.values())
        total += len(recs)
    assert total == 4 * 2 * 40


def _waiting_on_a_lock(store) -> int:
    with psycopg.connect(store.db.target.url) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                            "AND wait_event_type = 'Lock'", (store.db.app_name,)).fetchone()[0]


def test_a_reader_never_sees_a_later_seq_before_an_earlier_one_commits(nodes):
    a, b = nodes
    single = TableConfig("single", key="id", shards=1)
    holding, release = threading.Event(), threading.Event()

    def slow_writer():  # appends k1's record (seq 1) and holds its commit back
        with a.db.transaction("test") as conn:
            a._append(conn, "table:single", I.change_entry(
                single, '"k1"', "insert", {"id": "k1"}, None, {"id": "k1"}, 1), None)
            holding.set()
            release.wait(10)

    def second_writer():
        pk, sk, plan = I.plan_put(single, {"id": "k2"}, now=time.time())
        b.write_item("single", pk, sk, plan)

    # Given a writer on node A holding seq 1 of the shard, uncommitted
    first = threading.Thread(target=slow_writer)
    first.start()
    assert holding.wait(10)
    # When node B writes another key of that shard, it waits for the shard's counter
    second = threading.Thread(target=second_writer)
    second.start()
    deadline = time.monotonic() + 10
    while _waiting_on_a_lock(b) == 0:
        assert time.monotonic() < deadline, "the second writer never waited"
    # Then a reader sees neither record yet: no seq 2 it could read past seq 1
    assert b.read_feed("table:single", 0, 0, 10) == []
    release.set()
    first.join(10)
    second.join(10)
    assert [(r.seq, r.key) for r in b.read_feed("table:single", 0, 0, 10)] == [
        (1, '"k1"'), (2, '"k2"')]


def test_a_write_on_one_node_wakes_a_feed_reader_on_the_other(nodes):
    a, b = nodes

    async def scenario():
        woke = asyncio.Event()
        seen: list[str] = []

        def notify(feed):
            seen.append(feed)
            woke.set()

        # Given node B listening for feed commits
        await b.listen(notify, lambda: None)
        try:
            loop = asyncio.get_running_loop()
            started = time.monotonic()
            # When node A commits a write to table "counters"
            await loop.run_in_executor(None, _increment, a, "wake")
            # Then B hears of it at once, not after a fallback re-read
            await asyncio.wait_for(woke.wait(), 2.0)
            assert time.monotonic() - started < 1.0
            assert seen == ["table:counters"]
            # and a failed (rolled back) write wakes nobody
            woke.clear()
            pk, sk, plan = I.plan_put(COUNTERS, {"id": "wake"}, now=time.time(),
                                      expected_version=0)
            with pytest.raises(ConditionFailed):
                await loop.run_in_executor(None, a.write_item, "counters", pk, sk, plan)
            pk, sk, plan = I.plan_put(EVENTS, {"user": "u", "ts": 1}, now=time.time())
            await loop.run_in_executor(None, a.write_item, "events", pk, sk, plan)
            await asyncio.wait_for(woke.wait(), 2.0)
            assert seen == ["table:counters", "table:events"]  # notes come in commit order
        finally:
            await b.unlisten()

    asyncio.run(scenario())


def test_the_listener_comes_back_after_the_server_dropped_it(nodes):
    a, b = nodes

    async def scenario():
        woke, everyone = asyncio.Event(), asyncio.Event()
        await b.listen(lambda feed: woke.set(), everyone.set)
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, _increment, a, "before")
            await asyncio.wait_for(woke.wait(), 2.0)
            # When the server ends the sessions (as a restart would)
            assert await loop.run_in_executor(None, terminate, a.db.target.url,
                                              a.db.app_name) >= 2
            # Then every consumer is told to look again (a notification may be lost) ...
            await asyncio.wait_for(everyone.wait(), 5.0)
            woke.clear()

            def write_again():
                with contextlib.suppress(StoreError):  # the pool's connections were ended
                    _increment(a, "after")  # too: the first call may fail, the next works

            # ... and a later commit wakes the listener on its new connection
            deadline = time.monotonic() + 10
            while not woke.is_set():
                assert time.monotonic() < deadline, "no wake-up after the reconnect"
                await loop.run_in_executor(None, write_again)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(woke.wait(), 0.5)
        finally:
            await b.unlisten()

    asyncio.run(scenario())


def test_object_bytes_written_by_one_node_are_read_by_the_other(nodes):
    a, b = nodes
    # Given an object of 2.5 chunks written by node A in odd-sized pieces
    data = bytes(range(256)) * (CHUNK_BYTES * 5 // 2 // 256) + b"tail"
    w = a.begin_put("media", "big.bin", shard=0)
    for i in range(0, len(data), 300_001):
        w.write(data[i:i + 300_001])
    assert b.head_object("media", "big.bin") is None  # committed chunks are not visible
    info = w.commit("application/octet-stream", {"by": "a"})
    # Then node B reads it whole and by ranges, including ranges across chunk borders
    assert b.read_object("media", "big.bin") == (info, data)
    for start, length in ((0, 10), (CHUNK_BYTES - 3, 6), (CHUNK_BYTES * 2 - 1, 2),
                          (len(data) - 5, 100), (123_456, CHUNK_BYTES + 7), (len(data), 10)):
        assert b.read_object("media", "big.bin", start, length)[1] == \
            data[start:start + length], (start, length)
    # and a copy made on B is read on A
    b.copy_object("media", "big.bin", "media", "copy.bin", shard=0)
    assert a.read_object("media", "copy.bin", CHUNK_BYTES, 4)[1] == data[CHUNK_BYTES:
                                                                         CHUNK_BYTES + 4]
    # replacing the object drops the old version's chunks
    w = b.begin_put("media", "big.bin", shard=0)
    w.write(b"small now")
    w.commit("text/plain", {})
    assert a.read_object("media", "big.bin")[1] == b"small now"
    with psycopg.connect(a.db.target.url) as conn:
        blobs = conn.execute(f'SELECT count(DISTINCT blob) FROM "{a.schema}".state_chunks'
                             ).fetchone()[0]
    assert blobs == 2  # the new big.bin and copy.bin


def test_an_aborted_or_abandoned_upload_leaves_no_chunks(nodes, schema_url):
    a, b = nodes
    clock = FakeClock()
    store = PgStateStore(schema_url, clock=clock)
    try:
        w = store.begin_put("media", "gone.bin", shard=0)
        w.write(b"x" * (CHUNK_BYTES + 1))
        w.abort()
        crashed = store.begin_put("media", "crashed.bin", shard=0)
        crashed.write(b"y" * (CHUNK_BYTES * 2))  # then its node dies: never committed
        assert store.sweep_uploads(3600) == 0  # still fresh
        clock.advance(3601)
        assert store.sweep_uploads(3600) == 1
        with psycopg.connect(a.db.target.url) as conn:
            left = conn.execute(f'SELECT count(*) FROM "{a.schema}".state_chunks').fetchone()
        assert left == (0,)
        # a commit after its chunks were swept fails instead of publishing a torn object
        with pytest.raises(StoreError, match="swept"):
            crashed.commit("application/octet-stream", {})
        assert b.head_object("media", "crashed.bin") is None
    finally:
        store.close()


def test_delete_and_tier_moves_take_the_expected_version(nodes):
    a, b = nodes
    w = a.begin_put("logs", "x", shard=0)
    w.write(b"v1")
    v1 = w.commit("text/plain", {})
    w = b.begin_put("logs", "x", shard=0)  # another node overwrites it meanwhile
    w.write(b"v2")
    v2 = w.commit("text/plain", {})
    # a lifecycle sweep that looked at v1 acts on nothing
    assert not a.set_tier("logs", "x", v1.version, "archive", shard=0)
    assert a.delete_object("logs", "x", shard=0, version=v1.version) is None
    assert b.read_object("logs", "x")[1] == b"v2"
    assert a.set_tier("logs", "x", v2.version, "archive", shard=0)
    assert b.head_object("logs", "x").tier == "archive"


def test_sort_keys_order_numbers_before_strings_by_code_point(nodes):
    a, _ = nodes
    clock = FakeClock()
    for ts in (2.5, -1, 10, 1e20, "b", "a", "ä", "a\x00z", "B", 0.1 + 0.2, 0.3):
        pk, sk, plan = I.plan_put(EVENTS, {"user": "u", "ts": ts}, now=clock())
        a.write_item("events", pk, sk, plan)
    got = [i.data["ts"] for i in a.query_items("events", I.encode_pk(EVENTS, "u"),
                                               SortRange(), after=None, limit=100)]
    assert got == [-1, 0.3, 0.1 + 0.2, 2.5, 10, 1e20, "B", "a", "a\x00z", "b", "ä"]
    # 1 and 1.0 are one key, as in SQLite
    for ts in (1, 1.0):
        pk, sk, plan = I.plan_put(EVENTS, {"user": "v", "ts": ts}, now=clock())
        a.write_item("events", pk, sk, plan)
    (only,) = a.query_items("events", I.encode_pk(EVENTS, "v"), SortRange(), after=None,
                            limit=10)
    assert only.version == 2


def test_open_by_url_and_server_clock(schema_url):
    # Given stores opened by URL without a clock: the server's clock stamps records
    store = open_state(schema_url.replace("postgresql://", "postgres://"))
    cache = open_cache(schema_url)
    try:
        before = time.time()
        _increment(store, "t")
        (rec,) = [r for s in range(2) for r in store.read_feed("table:counters", s, 0, 10)]
        assert before - 5 < rec.at < time.time() + 5
        assert cache.cache_set("c", "k", b"v", 60) and cache.cache_get("c", "k") == b"v"
        assert cache.cache_incr("c", "n", 2, None) == 2
    finally:
        store.close()
        cache.close()


def test_no_network_in_the_constructor_and_errors_say_where():
    # Given a URL of a server that is not there: opening is fine, the first call fails
    store = PgStateStore("postgresql://postgres@127.0.0.1:1/test?schema=nowhere")
    try:
        with pytest.raises(StoreError, match=r"127\.0\.0\.1:1/test.*pg_ctlcluster"):
            store.get_item("t", '"k"', None)
    finally:
        store.close()
    with pytest.raises(StoreError, match="bad schema name"):
        PgStateStore("postgresql://127.0.0.1/test?schema=no-dashes")
