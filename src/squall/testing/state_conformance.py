"""The state conformance suites: every state backend must pass them unchanged.

A backend's test module subclasses a suite and provides one fixture, a callable that
opens (or re-opens, for the durability checks) the same backing store each time it is
called within a test, with the given clock:

    class TestMyTables(TableConformance):
        @pytest.fixture
        def open_tables(self, tmp_path):
            return lambda clock: MyStateStore(url_for(tmp_path), clock=clock)

    TableConformance  -> open_tables(clock)  -> TableStore (+ FeedStore)
    ObjectConformance -> open_objects(clock) -> ObjectStore (+ FeedStore)
    CacheConformance  -> open_cache(clock)   -> CacheStore

Writes go through the real plans of squall.state.items, so conditions, versions and
change records are checked as the platform uses them. Time is an injected clock: no
test sleeps. Stores are synchronous (see squall.backends.state).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import replace
from typing import Any, Callable

import pytest

from ..backends.state import (ARCHIVE, STANDARD, ConditionFailed, NotAnInteger, SortRange,
                              StoredItem, shard_of)
from ..state import items as I
from ..state.spec import TableConfig
from .conformance import FakeClock

ORDERS = TableConfig("orders", key="id", ttl_attribute="ttl", shards=4)
EVENTS = TableConfig("events", key="user", sort_key="ts", shards=2)


def _put(store: Any, spec: TableConfig, item: dict, clock: FakeClock, **kw: Any) -> Any:
    pk, sk, plan = I.plan_put(spec, item, now=clock(), **kw)
    return store.write_item(spec.name, pk, sk, plan)


def _feed(store: Any, spec: Any, feed: str | None = None) -> list[Any]:
    feed = feed or spec.feed
    out = []
    for shard in range(spec.shards):
        out += store.read_feed(feed, shard, 0, 10_000)
    return out


class _Closing:
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()


class TableConformance(_Closing):
    """Items, versions, plans in transactions, queries, scans, TTL keys and the feed."""

    @pytest.fixture
    def tables(self, open_tables: Callable[[FakeClock], Any], clock: FakeClock) -> Any:
        store = open_tables(clock)
        yield store
        store.close()

    def test_put_get_and_versions(self, tables: Any, clock: FakeClock) -> None:
        assert tables.get_item("orders", I.encode_pk(ORDERS, "o1"), None) is None
        old, new = _put(tables, ORDERS, {"id": "o1", "n": 1}, clock)
        assert old is None and new.version == 1 and new.data == {"id": "o1", "n": 1}
        old, new = _put(tables, ORDERS, {"id": "o1", "n": 2, "nested": {"a": [1, "x"]}}, clock)
        assert old.version == 1 and new.version == 2
        got = tables.get_item("orders", I.encode_pk(ORDERS, "o1"), None)
        assert got == StoredItem({"id": "o1", "n": 2, "nested": {"a": [1, "x"]}}, 2, None)
        # 1 and "1" are different keys; tables are separate
        _put(tables, ORDERS, {"id": 1, "kind": "number"}, clock)
        _put(tables, ORDERS, {"id": "1", "kind": "string"}, clock)
        assert tables.get_item("orders", I.encode_pk(ORDERS, 1), None).data["kind"] == "number"
        assert tables.get_item("orders", I.encode_pk(ORDERS, "1"), None).data["kind"] == "string"
        assert tables.get_item("other", I.encode_pk(ORDERS, "o1"), None) is None

    def test_a_failing_plan_writes_nothing(self, tables: Any, clock: FakeClock) -> None:
        _put(tables, ORDERS, {"id": "o1", "status": "new"}, clock)
        with pytest.raises(ConditionFailed, match="expected version 0, found version 1"):
            _put(tables, ORDERS, {"id": "o1", "status": "dup"}, clock, expected_version=0)
        with pytest.raises(ConditionFailed, match="does not hold"):
            _put(tables, ORDERS, {"id": "o1", "status": "x"}, clock,
                 condition={"status": "paid"})
        got = tables.get_item("orders", I.encode_pk(ORDERS, "o1"), None)
        assert got.data["status"] == "new" and got.version == 1
        assert [r.event for r in _feed(tables, ORDERS)] == ["insert"]  # no phantom change
        _put(tables, ORDERS, {"id": "o1", "status": "paid"}, clock, expected_version=1,
             condition={"status": {"in": ["new", "open"]}})
        assert tables.get_item("orders", I.encode_pk(ORDERS, "o1"), None).version == 2

    def test_every_write_has_its_change_record_in_order(self, tables: Any,
                                                        clock: FakeClock) -> None:
        _put(tables, ORDERS, {"id": "a", "n": 1}, clock)
        clock.advance(1)
        pk, sk, plan = I.plan_update(ORDERS, "a", now=clock(), increment={"n": 2})
        tables.write_item("orders", pk, sk, plan)
        pk, sk, plan = I.plan_delete(ORDERS, "a", now=clock())
        tables.write_item("orders", pk, sk, plan)
        pk, sk, plan = I.plan_delete(ORDERS, "a", now=clock())  # nothing there: no record
        tables.write_item("orders", pk, sk, plan)
        shard = shard_of(I.encode_pk(ORDERS, "a"), ORDERS.shards)
        recs = tables.read_feed("table:orders", shard, 0, 100)
        assert [r.event for r in recs] == ["insert", "modify", "remove"]
        assert [r.seq for r in recs] == sorted(r.seq for r in recs)
        assert len({r.seq for r in recs}) == 3 and all(r.shard == shard for r in recs)
        bodies = [json.loads(r.body) for r in recs]
        assert bodies[0] == {"keys": {"id": "a"}, "old": None, "new": {"id": "a", "n": 1},
                             "version": 1}
        assert bodies[1]["old"] == {"id": "a", "n": 1} and bodies[1]["new"]["n"] == 3
        assert bodies[2]["new"] is None and bodies[2]["old"]["n"] == 3
        assert recs[0].at == clock() - 1 and recs[1].at == clock()
        assert tables.latest_feed_seq("table:orders", shard) == recs[-1].seq
        assert tables.read_feed("table:orders", shard, recs[0].seq, 1)[0].seq == recs[1].seq

    def test_concurrent_increments_are_atomic(self, tables: Any, clock: FakeClock) -> None:
        def work() -> None:
            for _ in range(25):
                pk, sk, plan = I.plan_update(ORDERS, "counter", now=clock(),
                                             increment={"hits": 1})
                tables.write_item("orders", pk, sk, plan)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = tables.get_item("orders", I.encode_pk(ORDERS, "counter"), None)
        assert got.data["hits"] == 200 and got.version == 200
        versions = [json.loads(r.body)["version"] for r in _feed(tables, ORDERS)]
        assert versions == list(range(1, 201))  # feed order = commit order

    def test_query_by_sort_key(self, tables: Any, clock: FakeClock) -> None:
        for ts in (10, 2, 1, 30, 20):
            _put(tables, EVENTS, {"user": "u1", "ts": ts}, clock)
        _put(tables, EVENTS, {"user": "u2", "ts": 5}, clock)
        pk = I.encode_pk(EVENTS, "u1")

        def q(where: SortRange = SortRange(), **kw: Any) -> list[Any]:
            kw.setdefault("after", None)
            kw.setdefault("limit", 100)
            return [i.data["ts"] for i in tables.query_items("events", pk, where, **kw)]

        assert q() == [1, 2, 10, 20, 30]  # numbers order numerically
        assert q(reverse=True) == [30, 20, 10, 2, 1]
        assert q(SortRange(lower=2, upper=20)) == [2, 10, 20]
        assert q(SortRange(lower=2, lower_inclusive=False, upper=20,
                           upper_inclusive=False)) == [10]
        assert q(limit=2) == [1, 2] and q(after=2, limit=2) == [10, 20]
        assert q(reverse=True, after=20, limit=2) == [10, 2]
        for s in ("2024-02-01", "2024-01-15", "2023-12-31", "2024-01-02"):
            _put(tables, EVENTS, {"user": "u3", "ts": s}, clock)
        pk = I.encode_pk(EVENTS, "u3")
        assert q(SortRange(prefix="2024-01")) == ["2024-01-02", "2024-01-15"]
        assert q(SortRange(lower="2024")) == ["2024-01-02", "2024-01-15", "2024-02-01"]

    def test_scan_pages_through_every_item(self, tables: Any, clock: FakeClock) -> None:
        for u in ("a", "b", "c"):
            for ts in (1, 2):
                _put(tables, EVENTS, {"user": u, "ts": ts}, clock)
        _put(tables, ORDERS, {"id": "not-in-events"}, clock)
        seen, after = [], None
        while True:
            page = tables.scan_items("events", after=after, limit=4)
            seen += [(i.data["user"], i.data["ts"]) for _, _, i in page]
            if len(page) < 4:
                break
            after = page[-1][:2]
        assert sorted(seen) == [(u, t) for u in "abc" for t in (1, 2)]
        assert len(seen) == 6

    def test_ttl_keys_and_expired_replacement(self, tables: Any, clock: FakeClock) -> None:
        _put(tables, ORDERS, {"id": "soon", "ttl": clock() + 10}, clock)
        _put(tables, ORDERS, {"id": "later", "ttl": clock() + 100}, clock)
        _put(tables, ORDERS, {"id": "never", "ttl": "not a number"}, clock)
        assert tables.expired_items("orders", clock(), 10) == []
        clock.advance(11)
        assert tables.expired_items("orders", clock(), 10) == [(I.encode_pk(ORDERS, "soon"),
                                                                None)]
        pk = I.encode_pk(ORDERS, "soon")
        old, new = tables.write_item("orders", pk, None, I.plan_expire(ORDERS, pk, None,
                                                                       now=clock()))
        assert new is None and tables.get_item("orders", pk, None) is None
        (rec,) = [r for r in _feed(tables, ORDERS) if r.event == "remove"]
        assert json.loads(rec.body)["user_identity"]["principalId"] == "dynamodb.amazonaws.com"
        assert tables.expired_items("orders", clock(), 10) == []

    def test_feed_checkpoints_and_retention(self, tables: Any, clock: FakeClock) -> None:
        assert tables.feed_checkpoint("table:orders", "c1", 0) is None
        tables.set_feed_checkpoint("table:orders", "c1", 0, 5)
        tables.set_feed_checkpoint("table:orders", "c1", 0, 3)  # never goes back
        tables.set_feed_checkpoint("table:orders", "c2", 0, 1)
        assert tables.feed_checkpoint("table:orders", "c1", 0) == 5
        assert tables.feed_checkpoint("table:orders", "c2", 0) == 1
        single = TableConfig("single", key="id", shards=1)
        for i in range(3):
            _put(tables, single, {"id": f"k{i}"}, clock)
            clock.advance(10)
        assert tables.trim_feed("table:single", 0, 1, clock() - 15) == 1  # upto_seq holds
        assert tables.trim_feed("table:single", 0, 3, clock() - 15) == 1  # so does the time
        assert [r.seq for r in tables.read_feed("table:single", 0, 0, 10)] == [3]
        _put(tables, single, {"id": "k9"}, clock)  # numbers never restart after a trim
        assert tables.latest_feed_seq("table:single", 0) == 4

    def test_change_records_keep_the_writers_trace(self, tables: Any,
                                                   clock: FakeClock) -> None:
        """A record carries its writer's traceparent and loop lineage (FeedEntry.trace),
        so the change event continues that event chain; none stays none."""
        trace = f"00-{'a' * 32}-{'b' * 16}-01;loop=audit:3,notify:1"
        pk, sk, plan = I.plan_put(ORDERS, {"id": "t", "n": 1}, now=clock())

        def traced(current: Any) -> Any:
            planned = plan(current)
            return replace(planned, changes=tuple(replace(c, trace=trace)
                                                  for c in planned.changes))
        tables.write_item("orders", pk, sk, traced)
        _put(tables, ORDERS, {"id": "t", "n": 2}, clock)
        recs = tables.read_feed("table:orders", shard_of(pk, ORDERS.shards), 0, 10)
        assert [(r.event, r.trace) for r in recs] == [("insert", trace), ("modify", None)]

    def test_writes_survive_reopen(self, open_tables: Any, clock: FakeClock) -> None:
        store = open_tables(clock)
        _put(store, ORDERS, {"id": "durable", "n": 1}, clock)
        store.set_feed_checkpoint("table:orders", "c", 1, 7)
        store.close()
        again = open_tables(clock)
        try:
            got = again.get_item("orders", I.encode_pk(ORDERS, "durable"), None)
            assert got is not None and got.data["n"] == 1 and got.version == 1
            assert len(_feed(again, ORDERS)) == 1
            assert again.feed_checkpoint("table:orders", "c", 1) == 7
        finally:
            again.close()


class ObjectConformance(_Closing):
    """Objects, ETags, ranges, listings, copies, tiers, usage and object events."""

    @pytest.fixture
    def objects(self, open_objects: Callable[[FakeClock], Any], clock: FakeClock) -> Any:
        store = open_objects(clock)
        yield store
        store.close()

    def _put(self, store: Any, key: str, data: bytes, bucket: str = "b", **kw: Any) -> Any:
        w = store.begin_put(bucket, key, shard=shard_of(key, 4))
        for i in range(0, len(data), 7):
            w.write(data[i:i + 7])
        return w.commit(kw.get("content_type", "application/octet-stream"),
                        kw.get("metadata", {}))

    def _events(self, store: Any, bucket: str = "b") -> list[Any]:
        recs = []
        for shard in range(4):
            recs += store.read_feed(f"bucket:{bucket}", shard, 0, 1000)
        return sorted(recs, key=lambda r: r.at)

    def test_put_head_read_and_etag(self, objects: Any, clock: FakeClock) -> None:
        data = b"hello world" * 100
        w = objects.begin_put("b", "dir/a.txt", shard=shard_of("dir/a.txt", 4))
        w.write(data[:500])
        w.write(data[500:])
        assert w.size == len(data)
        assert objects.head_object("b", "dir/a.txt") is None  # not visible before commit
        assert self._events(objects) == []
        info = w.commit("text/plain", {"owner": "me"})
        assert info.etag == hashlib.md5(data).hexdigest() and info.size == len(data)
        assert (info.content_type, info.metadata, info.tier) == ("text/plain",
                                                                 {"owner": "me"}, STANDARD)
        assert info.last_modified == clock()
        assert objects.head_object("b", "dir/a.txt") == info
        assert objects.read_object("b", "dir/a.txt") == (info, data)
        assert objects.read_object("b", "dir/a.txt", 6, 5)[1] == b"world"
        assert objects.read_object("b", "dir/a.txt", len(data) - 3)[1] == data[-3:]
        assert objects.read_object("b", "missing") is None
        (ev,) = self._events(objects)
        body = json.loads(ev.body)
        assert ev.event == "created" and ev.key == "dir/a.txt"
        assert body["op"] == "Put" and body["etag"] == info.etag and body["size"] == len(data)

    def test_overwrite_makes_a_new_version_and_abort_leaves_nothing(
            self, objects: Any, clock: FakeClock) -> None:
        first = self._put(objects, "k", b"one")
        second = self._put(objects, "k", b"two!")
        assert second.version != first.version and second.etag != first.etag
        assert objects.read_object("b", "k")[1] == b"two!"
        w = objects.begin_put("b", "k", shard=0)
        w.write(b"never")
        w.abort()
        w2 = objects.begin_put("b", "fresh", shard=0)
        w2.write(b"x")
        w2.abort()
        assert objects.read_object("b", "k")[1] == b"two!"
        assert objects.head_object("b", "fresh") is None
        assert [e.event for e in self._events(objects)] == ["created", "created"]
        assert objects.usage("b")[STANDARD].objects == 1

    def test_empty_and_binary_objects(self, objects: Any, clock: FakeClock) -> None:
        empty = self._put(objects, "empty", b"")
        assert empty.size == 0 and empty.etag == hashlib.md5(b"").hexdigest()
        assert objects.read_object("b", "empty")[1] == b""
        blob = bytes(range(256)) * 300
        info = self._put(objects, "bin", blob)
        assert objects.read_object("b", "bin")[1] == blob and info.size == len(blob)

    def test_list_by_prefix_in_key_order(self, objects: Any, clock: FakeClock) -> None:
        keys = ["a/1", "a/2", "a/10", "b/1", "a", "ab", "a/ü", "a/z"]
        for k in keys:
            self._put(objects, k, k.encode())
        self._put(objects, "a/other-bucket", b"", bucket="c")
        all_keys = [o.key for o in objects.list_objects("b", "", after=None, limit=100)]
        assert all_keys == sorted(keys)  # code point order
        under_a = [o.key for o in objects.list_objects("b", "a/", after=None, limit=100)]
        assert under_a == ["a/1", "a/10", "a/2", "a/z", "a/ü"]
        page1 = objects.list_objects("b", "a/", after=None, limit=2)
        page2 = objects.list_objects("b", "a/", after=page1[-1].key, limit=10)
        assert [o.key for o in page1 + page2] == under_a

    def test_copy_delete_and_their_events(self, objects: Any, clock: FakeClock) -> None:
        src = self._put(objects, "src", b"payload", metadata={"m": "1"},
                        content_type="text/plain")
        clock.advance(5)
        dst = objects.copy_object("b", "src", "c", "dst", shard=shard_of("dst", 4))
        assert dst.etag == src.etag and dst.metadata == {"m": "1"}
        assert dst.content_type == "text/plain" and dst.version != src.version
        assert dst.last_modified == clock()
        assert objects.read_object("c", "dst")[1] == b"payload"
        assert objects.copy_object("b", "nope", "c", "x", shard=0) is None
        (created,) = self._events(objects, "c")
        assert json.loads(created.body)["op"] == "Copy"
        assert objects.delete_object("b", "src", shard=shard_of("src", 4),
                                     version="not-it") is None
        gone = objects.delete_object("b", "src", shard=shard_of("src", 4))
        assert gone is not None and gone.key == "src"
        assert objects.delete_object("b", "src", shard=shard_of("src", 4)) is None
        assert [e.event for e in self._events(objects)] == ["created", "deleted"]
        assert objects.head_object("b", "src") is None
        assert objects.read_object("c", "dst")[1] == b"payload"  # the copy stays

    def test_tiers_and_usage(self, objects: Any, clock: FakeClock) -> None:
        a = self._put(objects, "logs/a", b"x" * 100)
        self._put(objects, "logs/b", b"y" * 50)
        assert objects.usage("b")[STANDARD].bytes == 150
        assert objects.set_tier("b", "logs/a", a.version, ARCHIVE, shard=0)
        assert not objects.set_tier("b", "logs/a", a.version, ARCHIVE, shard=0)  # already
        assert not objects.set_tier("b", "logs/a", "stale-version", ARCHIVE, shard=0)
        usage = objects.usage("b")
        assert (usage[STANDARD].objects, usage[STANDARD].bytes) == (1, 50)
        assert (usage[ARCHIVE].objects, usage[ARCHIVE].bytes) == (1, 100)
        info, data = objects.read_object("b", "logs/a")
        assert info.tier == ARCHIVE and data == b"x" * 100  # still readable
        assert "archived" in [e.event for e in self._events(objects)]
        assert objects.delete_object("b", "logs/a", shard=0) is not None
        assert objects.usage("b")[ARCHIVE].objects == 0

    def test_object_events_keep_the_writers_trace(self, objects: Any,
                                                  clock: FakeClock) -> None:
        """Put, copy and delete records carry the trace they were given; a lifecycle
        move (the platform's own) and a put without one carry none."""
        t1, t2, t3 = (f"00-{'a' * 32}-{c * 16}-01;loop=thumb:{n}"
                      for c, n in (("1", 1), ("2", 2), ("3", 3)))
        w = objects.begin_put("b", "k", shard=shard_of("k", 4))
        w.write(b"data")
        info = w.commit("text/plain", {}, trace=t1)
        objects.copy_object("b", "k", "b", "k2", shard=shard_of("k2", 4), trace=t2)
        objects.set_tier("b", "k2", objects.head_object("b", "k2").version, ARCHIVE,
                         shard=shard_of("k2", 4))
        objects.delete_object("b", "k", shard=shard_of("k", 4), version=info.version,
                              trace=t3)
        self._put(objects, "plain", b"x")
        got = [(e.key, e.event, e.trace) for e in self._events(objects)]
        assert sorted(got, key=str) == sorted([
            ("k", "created", t1), ("k2", "created", t2), ("k2", "archived", None),
            ("k", "deleted", t3), ("plain", "created", None)], key=str)

    def test_objects_survive_reopen(self, open_objects: Any, clock: FakeClock) -> None:
        store = open_objects(clock)
        info = self._put(store, "durable", b"kept")
        store.close()
        again = open_objects(clock)
        try:
            assert again.read_object("b", "durable") == (info, b"kept")
            assert len(self._events(again)) == 1
        finally:
            again.close()


class CacheConformance(_Closing):
    """Values, TTLs by the injected clock, set-if-absent, atomic increments."""

    @pytest.fixture
    def cache(self, open_cache: Callable[[FakeClock], Any], clock: FakeClock) -> Any:
        store = open_cache(clock)
        yield store
        store.cache_clear("ns")
        store.cache_clear("other")
        store.close()

    def test_set_get_delete(self, cache: Any, clock: FakeClock) -> None:
        assert cache.cache_get("ns", "k") is None
        assert cache.cache_set("ns", "k", b'{"a":1}', None)
        assert cache.cache_get("ns", "k") == b'{"a":1}'
        assert cache.cache_get("other", "k") is None  # namespaces are separate
        assert cache.cache_set("ns", "k", b"2", None)
        assert cache.cache_get("ns", "k") == b"2"
        assert cache.cache_delete("ns", "k") is True
        assert cache.cache_delete("ns", "k") is False
        assert cache.cache_get("ns", "k") is None
        assert cache.cache_set("ns", "bin", bytes(range(256)), None)
        assert cache.cache_get("ns", "bin") == bytes(range(256))

    def test_ttl_follows_the_clock(self, cache: Any, clock: FakeClock) -> None:
        cache.cache_set("ns", "k", b"v", 10)
        clock.advance(9.9)
        assert cache.cache_get("ns", "k") == b"v"
        clock.advance(0.2)
        assert cache.cache_get("ns", "k") is None
        assert cache.cache_delete("ns", "k") is False  # expired is gone
        cache.cache_set("ns", "k", b"v", 10)
        cache.cache_set("ns", "k", b"w", None)  # a set without TTL keeps it for good
        clock.advance(1000)
        assert cache.cache_get("ns", "k") == b"w"

    def test_set_if_absent(self, cache: Any, clock: FakeClock) -> None:
        assert cache.cache_set("ns", "lock", b"a", 5, only_if_absent=True)
        assert not cache.cache_set("ns", "lock", b"b", 5, only_if_absent=True)
        assert cache.cache_get("ns", "lock") == b"a"
        clock.advance(6)  # expired counts as absent
        assert cache.cache_set("ns", "lock", b"c", 5, only_if_absent=True)
        assert cache.cache_get("ns", "lock") == b"c"

    def test_incr(self, cache: Any, clock: FakeClock) -> None:
        assert cache.cache_incr("ns", "n", 1, None) == 1
        assert cache.cache_incr("ns", "n", 41, None) == 42
        assert cache.cache_incr("ns", "n", -50, None) == -8
        assert cache.cache_get("ns", "n") == b"-8"
        assert cache.cache_incr("ns", "t", 1, 10) == 1  # the TTL applies on creation
        clock.advance(6)
        assert cache.cache_incr("ns", "t", 1, 10) == 2  # ... and is not pushed back
        clock.advance(5)
        assert cache.cache_get("ns", "t") is None
        assert cache.cache_incr("ns", "t", 5, None) == 5
        cache.cache_set("ns", "s", b'"text"', None)
        with pytest.raises(NotAnInteger, match="'s'"):
            cache.cache_incr("ns", "s", 1, None)
        assert cache.cache_get("ns", "s") == b'"text"'

    def test_concurrent_incr_is_atomic(self, cache: Any, clock: FakeClock) -> None:
        def work() -> None:
            for _ in range(50):
                cache.cache_incr("ns", "hits", 1, None)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert cache.cache_get("ns", "hits") == b"400"

    def test_clear_a_namespace(self, cache: Any, clock: FakeClock) -> None:
        for i in range(5):
            cache.cache_set("ns", f"k{i}", b"v", None)
        cache.cache_set("other", "k0", b"keep", None)
        assert cache.cache_clear("ns") == 5
        assert cache.cache_get("ns", "k1") is None
        assert cache.cache_get("other", "k0") == b"keep"
