"""Group commit in the embedded event store: appends waiting at a commit go in one
transaction, each with its own expected-version check and its own answer."""

from __future__ import annotations

import threading
import time

import pytest

from squall.backends.event_store import ConcurrencyError, NewEvent
from squall.backends.sqlite.eventstore import SqliteEventStore


def _wait_until(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.001)


def _run(store: SqliteEventStore, stream: str, n: int, expected, out: dict) -> threading.Thread:
    def go() -> None:
        try:
            out[stream] = store.append(stream, [NewEvent("E", {"i": i}) for i in range(n)],
                                       expected)
        except Exception as exc:  # the answer this caller gets
            out[stream] = exc

    t = threading.Thread(target=go)
    t.start()
    return t


def test_waiting_appends_share_one_commit_and_conflicts_stay_their_own(tmp_path):
    # Given a store with stream "b" at version 1, and a first append committing while the
    # connection is busy (we hold its lock), so three more appends queue up behind it
    s = SqliteEventStore(tmp_path / "es.db")
    s.append("b", [NewEvent("E")], 0)
    base = s.groups
    out: dict = {}
    with s._lock:
        first = _run(s, "a", 2, 0, out)
        _wait_until(lambda: s._committing)
        waiting = [_run(s, "b", 1, 1, out),      # right expectation
                   _run(s, "c", 3, 5, out),      # wrong: c does not exist
                   _run(s, "d", 2, None, out)]   # any version
        _wait_until(lambda: len(s._queue) == 3)
    # When the connection is free again
    for t in [first, *waiting]:
        t.join(timeout=10)
    # Then the first commit held "a" alone and the next one the other three appends
    assert s.groups - base == 2
    assert isinstance(out["c"], ConcurrencyError)
    assert (out["c"].expected, out["c"].actual) == (5, 0)
    assert [e.version for e in out["a"]] == [1, 2]
    assert [e.version for e in out["b"]] == [2]
    assert [e.version for e in out["d"]] == [1, 2]
    # the conflicting append wrote nothing and left no gap in the global order
    events = s.read_all(0)
    assert [e.position for e in events] == list(range(1, len(events) + 1)) == list(range(1, 7))
    assert s.stream_version("c") == 0
    assert sorted(e.position for k in "abd" for e in out[k]) == list(range(2, 7))
    s.close()


def test_two_writers_one_stream_in_one_group(tmp_path):
    # Given two appends to the same new stream, both expecting version 0, in one group
    s = SqliteEventStore(tmp_path / "es.db")
    out: dict = {}
    results: list = []
    with s._lock:
        blocker = _run(s, "x", 1, None, out)
        _wait_until(lambda: s._committing)
        for _ in range(2):
            t = threading.Thread(target=lambda: results.append(_try(s)))
            t.start()
            waiting = t
        _wait_until(lambda: len(s._queue) == 2)
    blocker.join(timeout=10)
    waiting.join(timeout=10)
    _wait_until(lambda: len(results) == 2)
    # Then exactly one wins; the other hears of the conflict with the winner's version
    errors = [r for r in results if isinstance(r, ConcurrencyError)]
    wins = [r for r in results if not isinstance(r, Exception)]
    assert len(errors) == 1 and len(wins) == 1
    assert errors[0].actual == 1 and [e.version for e in wins[0]] == [1]
    assert s.stream_version("acc") == 1 and s.head() == 2
    s.close()


def _try(s: SqliteEventStore):
    try:
        return s.append("acc", [NewEvent("Opened")], 0)
    except Exception as exc:
        return exc


def test_many_concurrent_writers_lose_nothing(tmp_path):
    s = SqliteEventStore(tmp_path / "es.db", max_group=8)
    per, writers = 50, 6

    def work(w: int) -> None:
        for i in range(per):
            s.append(f"s{w}", [NewEvent("E", {"i": i})], i)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert s.head() == per * writers
    for w in range(writers):
        assert [e.data["i"] for e in s.read_stream(f"s{w}")] == list(range(per))
    assert s.groups <= per * writers
    s.close()


def test_max_group_is_checked(tmp_path):
    with pytest.raises(ValueError, match="max_group"):
        SqliteEventStore(tmp_path / "es.db", max_group=0)
