"""The event store conformance suite: every EventStore backend must pass it unchanged.

    class TestMyEventStore(EventStoreConformance):
        @pytest.fixture
        def open_events(self, tmp_path):
            return lambda clock: MyEventStore(url_for(tmp_path), clock=clock)

`open_events(clock)` opens (or re-opens, for the durability checks) the same store each
time it is called within a test. Time is an injected clock.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ..backends.event_store import ConcurrencyError, NewEvent
from .conformance import FakeClock


def ev(t: str, **data: Any) -> NewEvent:
    return NewEvent(t, data)


class EventStoreConformance:
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def es(self, open_events: Any, clock: FakeClock) -> Any:
        store = open_events(clock)
        yield store
        store.close()

    def test_append_and_read_a_stream(self, es: Any) -> None:
        out = es.append("acc-1", [ev("Created", owner="ann"), ev("Deposited", amount=5)], 0)
        assert [(e.version, e.position) for e in out] == [(1, 1), (2, 2)]
        got = es.read_stream("acc-1")
        assert [(e.type, e.data, e.version) for e in got] == [
            ("Created", {"owner": "ann"}, 1), ("Deposited", {"amount": 5}, 2)]
        assert es.stream_version("acc-1") == 2 and es.stream_version("nope") == 0
        assert es.read_stream("acc-1", after_version=1)[0].type == "Deposited"
        assert [e.version for e in es.read_stream("acc-1", to_version=1)] == [1]

    def test_expected_version_conflict_writes_nothing(self, es: Any) -> None:
        es.append("s", [ev("A")], 0)
        with pytest.raises(ConcurrencyError, match="'s' is at version 1, the append expected 0"):
            es.append("s", [ev("B"), ev("C")], 0)
        with pytest.raises(ConcurrencyError):
            es.append("s", [ev("B")], 5)
        assert [e.type for e in es.read_all()] == ["A"] and es.head() == 1
        es.append("s", [ev("B")], None)  # any version
        assert es.stream_version("s") == 2

    def test_global_order_has_no_gaps(self, es: Any) -> None:
        for i in range(5):
            es.append(f"s{i % 2}", [ev("E", i=i)])
            try:
                es.append("s0", [ev("X")], 999)
            except ConcurrencyError:
                pass  # a failed append must not burn a position
        positions = [e.position for e in es.read_all()]
        assert positions == [1, 2, 3, 4, 5] and es.head() == 5
        assert [e.position for e in es.read_all(after=2, limit=2)] == [3, 4]

    def test_append_many_is_all_or_nothing(self, es: Any) -> None:
        es.append("b", [ev("A")])
        with pytest.raises(ConcurrencyError):
            es.append_many([("a", [ev("A")], 0), ("b", [ev("B")], 0)])
        assert es.head() == 1
        out = es.append_many([("a", [ev("A")], 0), ("b", [ev("B")], 1)])
        assert [(e.stream, e.version, e.position) for e in out] == [("a", 1, 2), ("b", 2, 3)]

    def test_two_writers_race_and_one_wins(self, open_events: Any, clock: FakeClock) -> None:
        a, b = open_events(clock), open_events(clock)
        try:
            a.append("acc", [ev("Created")], 0)
            wins, conflicts = [], []
            barrier = threading.Barrier(2)

            def writer(store: Any, name: str) -> None:
                for _ in range(50):
                    barrier.wait()
                    v = store.stream_version("acc")
                    try:
                        store.append("acc", [ev("Deposited", by=name)], v)
                        wins.append(name)
                    except ConcurrencyError:
                        conflicts.append(name)

            threads = [threading.Thread(target=writer, args=(s, n))
                       for s, n in ((a, "a"), (b, "b"))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            events = a.read_stream("acc")
            assert len(events) == 1 + len(wins)
            assert [e.version for e in events] == list(range(1, len(events) + 1))
            assert len(wins) + len(conflicts) == 100 and len(wins) >= 50
            assert [e.position for e in a.read_all(limit=1000)] == list(range(1, a.head() + 1))
        finally:
            a.close()
            b.close()

    def test_time_travel_and_snapshots(self, es: Any, clock: FakeClock) -> None:
        t0 = clock()
        es.append("acc", [ev("Deposited", amount=10)])
        clock.advance(60)
        es.append("acc", [ev("Deposited", amount=5)])
        es.save_snapshot("acc", 2, {"balance": 15})
        clock.advance(60)
        es.append("acc", [ev("Withdrew", amount=3)])
        assert [e.version for e in es.read_stream("acc", until=t0 + 30)] == [1]
        assert es.load_snapshot("acc").state == {"balance": 15}
        assert es.load_snapshot("acc", max_version=1) is None
        assert es.load_snapshot("acc", until=t0 + 30) is None
        assert es.load_snapshot("acc", until=t0 + 61).version == 2

    def test_checkpoints_and_projection_rows(self, es: Any) -> None:
        assert es.get_checkpoint("p") == 0
        es.apply("bal@v1", {"a": 1, "ab": 2, "b": 3}, [], "p", 7)
        assert es.get_checkpoint("p") == 7 and es.row_get("bal@v1", "a") == 1
        es.apply("bal@v1", {"a": 5}, ["b"], "p", 9)
        assert es.row_query("bal@v1", "a") == [("a", 5), ("ab", 2)]
        assert es.row_get("bal@v1", "b") is None and es.get_checkpoint("p") == 9
        es.drop_rows("bal@v1")
        assert es.row_query("bal@v1") == []
        es.set_meta("m", {"active": 2})
        assert es.get_meta("m") == {"active": 2} and es.get_meta("x") is None
        es.set_checkpoint("q", 3)
        assert es.get_checkpoint("q") == 3

    def test_durable_across_reopen(self, open_events: Any, clock: FakeClock) -> None:
        s = open_events(clock)
        s.append("x", [NewEvent("E", {"n": 1}, {"by": "t"}, 2)])
        s.close()
        s = open_events(clock)
        try:
            (e,) = s.read_all()
            assert (e.type, e.data, e.metadata, e.schema_version, e.recorded_at) == (
                "E", {"n": 1}, {"by": "t"}, 2, clock())
        finally:
            s.close()
