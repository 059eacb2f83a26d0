"""The embedded event store's batched append path: the per-batch encoding and the fast
event construction give back exactly what a read gives, and the WAL size is configurable
and checked."""

from __future__ import annotations

import dataclasses

import pytest

from squall.backends.event_store import NewEvent, RecordedEvent, recorded_event
from squall.backends.sqlite.eventstore import WAL_PAGES, SqliteEventStore


def test_recorded_event_is_the_same_frozen_event():
    args = (7, "acc-1", 3, "Deposited", {"amount": 5}, {"by": "me"}, 2, 1.5)

    fast = recorded_event(*args)

    assert fast == RecordedEvent(*args)
    assert type(fast) is RecordedEvent
    assert dataclasses.astuple(fast) == args
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.version = 4  # type: ignore[misc]


def test_a_batch_returns_what_a_read_gives_back(tmp_path):
    # Given a batch mixing metadata and none, and data orjson refuses (an integer over
    # 64 bits: the whole batch takes the json fallback)
    s = SqliteEventStore(tmp_path / "es.db", clock=lambda: 42.0)
    s.append("other", [NewEvent("Opened")])
    meta = {"correlation": "c-1"}
    batch = [NewEvent("Deposited", {"amount": i}) for i in range(5)]
    batch[2] = NewEvent("Tagged", {"big": 2 ** 70}, meta, schema_version=3)

    # When it is appended at the version the stream has
    out = s.append("acc-1", batch, 0)

    # Then positions follow the other stream's, versions start at 1, and the events
    # returned equal the ones read back, field for field
    assert [(e.position, e.version) for e in out] == [(p, p - 1) for p in range(2, 7)]
    assert out == s.read_stream("acc-1")
    assert out[2].data == {"big": 2 ** 70} and out[2].metadata == meta
    assert out[2].schema_version == 3 and out[0].metadata == {}
    # and the returned metadata is the event's own copy, not the caller's dict
    meta["correlation"] = "changed"
    assert out[2].metadata == {"correlation": "c-1"}
    assert s.read_all() == s.read_stream("other") + out
    s.close()


def test_a_batch_larger_than_one_insert_keeps_every_event_in_order(tmp_path):
    # 203 events: INSERTs of 64, 64, 64, 8, 2 and 1 rows
    s = SqliteEventStore(tmp_path / "es.db")

    out = s.append_many([("a", [NewEvent("E", {"i": i}) for i in range(150)], 0),
                         ("b", [NewEvent("E", {"i": i}) for i in range(53)], None)])

    assert [e.position for e in out] == list(range(1, 204))
    assert [e.version for e in out] == list(range(1, 151)) + list(range(1, 54))
    assert s.read_all(0, 1000) == out
    assert (s.stream_version("a"), s.stream_version("b"), s.head()) == (150, 53, 203)
    s.close()


def test_events_may_come_from_a_generator(tmp_path):
    s = SqliteEventStore(tmp_path / "es.db")

    out = s.append("acc-1", (NewEvent("Deposited", {"amount": i}) for i in range(3)), 0)

    assert [e.data["amount"] for e in out] == [0, 1, 2]
    assert s.read_stream("acc-1") == out
    s.close()


def test_wal_pages_is_applied_and_checked(tmp_path):
    s = SqliteEventStore(tmp_path / "a.db")
    assert s._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_PAGES
    s.close()
    s = SqliteEventStore(tmp_path / "b.db", wal_pages=64)
    assert s._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 64
    s.close()
    with pytest.raises(ValueError, match="wal_pages must be >= 1, got 0"):
        SqliteEventStore(tmp_path / "c.db", wal_pages=0)
