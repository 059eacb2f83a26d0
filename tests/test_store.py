"""The embedded store behind `open_store("sqlite:///…")`: the invocation log (metering rows
and captured output), written in batches and read back with filters, in a WAL-mode file
that outlives the process."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from squall.backends import InvocationRecord, LogLine, StoreError, open_store


def rec(request_id: str, *, app: str = "shop", function: str = "quote", started_at: float = 1.0,
        logs: str = "", **kw) -> InvocationRecord:
    fields = dict(trigger="event", duration_ms=1.25, billed_ms=2, memory_mb=128,
                  max_memory_mb=31, cold=False, init_ms=None, status="ok", error_type=None,
                  error_message=None)
    fields.update(kw)
    return InvocationRecord(request_id=request_id, app=app, function=function,
                            started_at=started_at, logs=logs, **fields)


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'squall.db'}")
    yield s
    s.close()


# -- opening -------------------------------------------------------------------------------

def test_absolute_url(tmp_path):
    path = tmp_path / "abs" / "squall.db"  # the parent folder is made
    s = open_store(f"sqlite:///{path}")  # "sqlite:///" + "/tmp/…" = four slashes
    try:
        for method in ("record", "invocations", "logs", "close"):  # the InvocationLog Protocol
            assert callable(getattr(s, method))
        s.record([rec("r1")])
    finally:
        s.close()
    assert path.is_file()


def test_relative_url_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = open_store("sqlite:///data/squall.db")
    try:
        s.record([rec("r1")])
    finally:
        s.close()
    assert (tmp_path / "data" / "squall.db").is_file()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://host/squall.db",
                                 "sqlite://squall.db"])
def test_bad_sqlite_url(url):
    with pytest.raises(StoreError, match=r"bad SQLite URL .*sqlite:///relative\.db"):
        open_store(url)


def test_sqlite_url_without_slashes_is_a_store_error():
    with pytest.raises(StoreError):
        open_store("sqlite:squall.db")


@pytest.mark.parametrize("url", ["mysql://localhost/squall", "redis://x", "nats://x",
                                 "", "squall.db", "/tmp/squall.db", "file:///tmp/squall.db"])
def test_unknown_scheme(url):
    with pytest.raises(StoreError, match=r"unsupported store URL .* known schemes are sqlite://"):
        open_store(url)


def test_a_directory_is_not_a_database(tmp_path):
    with pytest.raises(StoreError, match="cannot open the store at"):
        open_store(f"sqlite:///{tmp_path}")


def test_a_file_in_the_way_of_the_folder(tmp_path):
    (tmp_path / "plain").write_text("not a folder")
    with pytest.raises(StoreError, match="cannot open the store"):
        open_store(f"sqlite:///{tmp_path / 'plain' / 'squall.db'}")


def test_a_file_that_is_not_sqlite(tmp_path):
    path = tmp_path / "squall.db"
    path.write_bytes(b"this is not a database, just some text long enough" * 100)
    with pytest.raises(StoreError, match="cannot open the store"):
        open_store(f"sqlite:///{path}")


def test_wal_mode_is_on(tmp_path, store):
    store.record([rec("r1")])
    other = sqlite3.connect(tmp_path / "squall.db")
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


# -- recording and reading ---------------------------------------------------------------------

def test_round_trip_keeps_every_field_and_type(store):
    cold = rec("r-cold", cold=True, init_ms=12.5, started_at=100.25, duration_ms=3.5,
               billed_ms=4, memory_mb=512, max_memory_mb=40, trigger="http")
    failed = rec("r-fail", status="error", error_type="KeyError", error_message="'sku'",
                 started_at=101.0)
    store.record([cold, failed])
    got = store.invocations("shop")
    # the logs live in their own table; invocations() carries none
    assert got == [replace(cold, logs=""), replace(failed, logs="")]
    first = got[0]
    assert first.cold is True and type(first.cold) is bool
    assert type(first.init_ms) is float and first.init_ms == 12.5
    assert type(first.billed_ms) is int and type(first.memory_mb) is int
    assert type(first.started_at) is float
    assert got[1].cold is False and got[1].init_ms is None


def test_recording_nothing_is_a_no_op(store):
    store.record([])
    assert store.invocations("shop") == [] and store.logs("shop") == []


def test_apps_are_separate(store):
    store.record([rec("a1", app="shop"), rec("b1", app="blog", logs="hi\n")])
    assert [r.request_id for r in store.invocations("shop")] == ["a1"]
    assert [r.request_id for r in store.invocations("blog")] == ["b1"]
    assert store.logs("shop") == []
    assert store.invocations("nope") == []


def test_filter_by_function_and_request_id(store):
    store.record([
        rec("r1", function="quote", started_at=1),
        rec("r2", function="create_order", started_at=2),
        rec("r3", function="quote", started_at=3),
    ])
    assert [r.request_id for r in store.invocations("shop", "quote")] == ["r1", "r3"]
    assert [r.request_id for r in store.invocations("shop", "create_order")] == ["r2"]
    assert [r.request_id for r in store.invocations("shop", request_id="r2")] == ["r2"]
    assert store.invocations("shop", "quote", request_id="r2") == []
    assert store.invocations("shop", "nope") == []


def test_limit_gives_the_newest_n_oldest_first(store):
    # recorded out of order: the order comes from started_at, not insertion
    store.record([rec(f"r{i}", started_at=float(i)) for i in (5, 1, 4, 2, 3)])
    assert [r.request_id for r in store.invocations("shop")] == ["r1", "r2", "r3", "r4", "r5"]
    assert [r.request_id for r in store.invocations("shop", limit=2)] == ["r4", "r5"]
    assert [r.request_id for r in store.invocations("shop", limit=1)] == ["r5"]
    assert store.invocations("shop", limit=0) == []


def test_default_limit_is_50(store):
    store.record([rec(f"r{i:03}", started_at=float(i)) for i in range(60)])
    got = store.invocations("shop")
    assert len(got) == 50
    assert got[0].request_id == "r010" and got[-1].request_id == "r059"


def test_logs_are_split_into_lines_per_invocation(store):
    store.record([
        rec("r1", function="quote", started_at=10.0, logs="first\nsecond\n"),
        rec("r2", function="create_order", started_at=11.0, logs="order 1 created"),
        rec("r3", function="quote", started_at=12.0, logs=""),  # no output, no lines
    ])
    assert store.logs("shop") == [
        LogLine("r1", "quote", 10.0, "first"),
        LogLine("r1", "quote", 10.0, "second"),
        LogLine("r2", "create_order", 11.0, "order 1 created"),
    ]
    assert [l.line for l in store.logs("shop", "quote")] == ["first", "second"]
    assert [l.line for l in store.logs("shop", request_id="r2")] == ["order 1 created"]
    assert store.logs("shop", request_id="r3") == []


def test_blank_lines_inside_the_output_are_kept(store):
    store.record([rec("r1", logs="a\n\nb\n")])
    assert [l.line for l in store.logs("shop")] == ["a", "", "b"]


def test_logs_limit_gives_the_newest_lines_oldest_first(store):
    store.record([rec("r1", logs="1\n2\n3\n", started_at=1.0)])
    store.record([rec("r2", logs="4\n5\n", started_at=2.0)])
    assert [l.line for l in store.logs("shop", limit=3)] == ["3", "4", "5"]
    assert [l.line for l in store.logs("shop", limit=200)] == ["1", "2", "3", "4", "5"]


def test_batches_from_separate_calls_accumulate(store):
    store.record([rec("r1", started_at=1.0)])
    store.record([rec("r2", started_at=2.0), rec("r3", started_at=3.0)])
    assert [r.request_id for r in store.invocations("shop")] == ["r1", "r2", "r3"]


def test_recording_a_request_id_again_replaces_the_row(store):
    store.record([rec("r1", status="timeout")])
    store.record([rec("r1", status="ok")])
    got = store.invocations("shop")
    assert [(r.request_id, r.status) for r in got] == [("r1", "ok")]


def test_recording_a_request_id_again_does_not_duplicate_its_logs(store):
    store.record([rec("r1", logs="once\n")])
    store.record([rec("r1", logs="once\n")])
    assert [l.line for l in store.logs("shop")] == ["once"]


def test_text_survives_exactly(store):
    text = "emoji 🌧️, tabs\tand 'quotes' \"double\"; DROP TABLE logs; --"
    store.record([rec("r1", error_message=text, logs=text + "\n")])
    assert store.invocations("shop")[0].error_message == text
    assert store.logs("shop")[0].line == text


# -- durability ------------------------------------------------------------------------------------

def test_the_file_survives_reopening(tmp_path):
    url = f"sqlite:///{tmp_path / 'squall.db'}"
    first = open_store(url)
    first.record([rec("r1", cold=True, init_ms=2.0, logs="hello\n")])
    first.close()
    again = open_store(url)
    try:
        assert [r.request_id for r in again.invocations("shop")] == ["r1"]
        assert again.invocations("shop")[0].cold is True
        assert [l.line for l in again.logs("shop")] == ["hello"]
        again.record([rec("r2", started_at=2.0)])  # and it can still be written
        assert [r.request_id for r in again.invocations("shop")] == ["r1", "r2"]
    finally:
        again.close()


def test_a_second_store_on_the_same_file_sees_committed_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'squall.db'}"
    writer, reader = open_store(url), open_store(url)
    try:
        writer.record([rec("r1", logs="x\n")])
        assert [r.request_id for r in reader.invocations("shop")] == ["r1"]
        assert [l.line for l in reader.logs("shop")] == ["x"]
    finally:
        writer.close()
        reader.close()


def test_a_write_error_is_a_store_error(tmp_path, store):
    store.record([rec("r1")])
    other = sqlite3.connect(tmp_path / "squall.db")
    other.execute("DROP TABLE logs")
    other.commit()
    other.close()
    with pytest.raises(StoreError, match="cannot write the invocation log"):
        store.record([rec("r2", logs="lost\n")])
    # the batch was rolled back as a whole
    assert [r.request_id for r in store.invocations("shop")] == ["r1"]


def test_a_read_error_is_a_store_error(tmp_path, store):
    other = sqlite3.connect(tmp_path / "squall.db")
    other.execute("DROP TABLE invocations")
    other.execute("DROP TABLE logs")
    other.commit()
    other.close()
    with pytest.raises(StoreError, match="cannot read the invocation log"):
        store.invocations("shop")
    with pytest.raises(StoreError, match="cannot read the invocation log"):
        store.logs("shop")
