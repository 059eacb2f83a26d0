"""The invocation log on PostgreSQL (`open_store("postgresql://…")`): the behaviours
tests/test_store.py specifies for SQLite, run here unchanged against a PgStore, plus what
differs: opening by URL, errors that name the server, and several stores on one schema."""

from __future__ import annotations

import psycopg
import pytest
import test_store as sqlite_spec
from pg_fixtures import postgres_url, terminate, unique_schema
from psycopg import sql
from test_store import rec

from squall.backends import StoreError, open_store
from squall.backends.postgres.store import PgStore


@pytest.fixture
def pg_url() -> str:
    return postgres_url()


@pytest.fixture
def schema(pg_url):
    with unique_schema(pg_url) as name:
        yield name


@pytest.fixture
def store(pg_url, schema):
    s = PgStore(pg_url, schema=schema)
    yield s
    s.close()


# -- the engine-independent behaviours, exactly as written for SQLite ----------------------
# (each runs with this module's `store` fixture: a PgStore on a fresh schema)

test_round_trip_keeps_every_field_and_type = sqlite_spec.test_round_trip_keeps_every_field_and_type
test_recording_nothing_is_a_no_op = sqlite_spec.test_recording_nothing_is_a_no_op
test_apps_are_separate = sqlite_spec.test_apps_are_separate
test_filter_by_function_and_request_id = sqlite_spec.test_filter_by_function_and_request_id
test_limit_gives_the_newest_n_oldest_first = sqlite_spec.test_limit_gives_the_newest_n_oldest_first
test_default_limit_is_50 = sqlite_spec.test_default_limit_is_50
test_logs_are_split_into_lines_per_invocation = (
    sqlite_spec.test_logs_are_split_into_lines_per_invocation)
test_blank_lines_inside_the_output_are_kept = (
    sqlite_spec.test_blank_lines_inside_the_output_are_kept)
test_logs_limit_gives_the_newest_lines_oldest_first = (
    sqlite_spec.test_logs_limit_gives_the_newest_lines_oldest_first)
test_batches_from_separate_calls_accumulate = (
    sqlite_spec.test_batches_from_separate_calls_accumulate)
test_recording_a_request_id_again_replaces_the_row = (
    sqlite_spec.test_recording_a_request_id_again_replaces_the_row)
test_recording_a_request_id_again_does_not_duplicate_its_logs = (
    sqlite_spec.test_recording_a_request_id_again_does_not_duplicate_its_logs)
test_text_survives_exactly = sqlite_spec.test_text_survives_exactly


# -- opening -------------------------------------------------------------------------------

@pytest.mark.parametrize("query", ["?schema={}", "?connect_timeout=3&schema={}&sslmode=disable"])
def test_open_store_by_url_with_its_schema(pg_url, schema, query):
    # the URL names the schema (libpq's own parameters pass through); another store
    # opened on it sees the same rows
    s = open_store(pg_url + query.format(schema))
    try:
        assert isinstance(s, PgStore) and s.schema == schema
        s.record([rec("r1")])
        other = PgStore(pg_url, schema=schema)
        assert [r.request_id for r in other.invocations("shop")] == ["r1"]
        other.close()
    finally:
        s.close()


def test_a_bad_schema_in_the_url_is_a_store_error(pg_url):
    with pytest.raises(StoreError, match="bad schema name"):
        open_store(pg_url + "?schema=no%20spaces")


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_an_unreachable_server_is_a_store_error_naming_it(scheme):
    with pytest.raises(StoreError) as info:
        open_store(f"{scheme}://postgres:hunter2@127.0.0.1:1/test")
    text = str(info.value)
    assert "cannot open the store: cannot connect to PostgreSQL at 127.0.0.1:1/test" in text
    assert "pg_ctlcluster 15 main start" in text and "hunter2" not in text


@pytest.mark.parametrize("url", ["postgresql://u:hunter2@[::1/test", "postgresql://h:port/db",
                                 "postgresql://h/db?nonsense=1"])
def test_a_malformed_url_is_a_store_error(url):
    with pytest.raises(StoreError, match="bad PostgreSQL URL") as info:
        open_store(url)
    assert "hunter2" not in str(info.value)


def test_a_database_that_does_not_exist(pg_url):
    url = pg_url.rsplit("/", 1)[0] + "/squall_no_such_database"
    with pytest.raises(StoreError, match="cannot open the store.*squall_no_such_database.*"
                                         "check the user, password and database in the URL"):
        open_store(url)


def test_stores_opening_one_schema_at_once_all_succeed(pg_url, schema):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        stores = list(pool.map(lambda _: PgStore(pg_url, schema=schema), range(8)))
    for s in stores:
        s.close()


# -- several stores, one database ------------------------------------------------------------

def test_rows_survive_reopening(pg_url, schema):
    first = PgStore(pg_url, schema=schema)
    first.record([rec("r1", cold=True, init_ms=2.0, logs="hello\n")])
    first.close()
    again = PgStore(pg_url, schema=schema)
    try:
        assert [r.request_id for r in again.invocations("shop")] == ["r1"]
        assert again.invocations("shop")[0].cold is True
        assert [line.line for line in again.logs("shop")] == ["hello"]
    finally:
        again.close()


def test_a_second_store_sees_committed_rows(pg_url, schema):
    writer, reader = PgStore(pg_url, schema=schema), PgStore(pg_url, schema=schema)
    try:
        writer.record([rec("r1", logs="x\n")])
        assert [r.request_id for r in reader.invocations("shop")] == ["r1"]
        assert [line.line for line in reader.logs("shop")] == ["x"]
    finally:
        writer.close()
        reader.close()


def test_a_big_batch_and_the_fast_path(store):
    rows = [[f"r{i:05}", "shop", "quote", "event", float(i), 1.0, 1, 128, 30, False, None,
             "ok", None, None, f"line {i}\n"] for i in range(3000)]
    store.record_rows(rows)
    assert len(store.invocations("shop", limit=5000)) == 3000
    assert store.logs("shop", limit=1)[0].line == "line 2999"


def test_a_request_id_twice_in_one_batch_keeps_the_last(store):
    store.record([rec("r1", status="timeout", logs="first\n"), rec("r1", logs="second\n")])
    assert [(r.request_id, r.status) for r in store.invocations("shop")] == [("r1", "ok")]
    assert [line.line for line in store.logs("shop")] == ["second"]


def test_a_nul_in_the_output_does_not_lose_the_batch(store):
    store.record([rec("r1", error_message="a\x00b", logs="c\x00d\n")])
    assert store.invocations("shop")[0].error_message == "a\ufffdb"
    assert store.logs("shop")[0].line == "c\ufffdd"


# -- errors after opening ---------------------------------------------------------------------

def _drop(pg_url: str, schema: str, *tables: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for table in tables:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, table)))


def test_a_write_error_is_a_store_error(pg_url, schema, store):
    store.record([rec("r1")])
    _drop(pg_url, schema, "logs")
    with pytest.raises(StoreError, match="cannot write the invocation log: PostgreSQL at "
                                         "127.0.0.1:5432/test said"):
        store.record([rec("r2", logs="lost\n")])
    # the batch was rolled back as a whole
    assert [r.request_id for r in store.invocations("shop")] == ["r1"]


def test_a_read_error_is_a_store_error(pg_url, schema, store):
    _drop(pg_url, schema, "invocations", "logs")
    with pytest.raises(StoreError, match="cannot read the invocation log"):
        store.invocations("shop")
    with pytest.raises(StoreError, match="cannot read the invocation log"):
        store.logs("shop")


def test_a_broken_connection_fails_one_call_then_reconnects(pg_url, store):
    store.record([rec("r1")])
    assert terminate(pg_url, f"squall-store:{store.schema}") == 1
    with pytest.raises(StoreError, match="lost the connection"):
        store.invocations("shop")
    assert [r.request_id for r in store.invocations("shop")] == ["r1"]


def test_a_closed_store_refuses_calls(store):
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.invocations("shop")
