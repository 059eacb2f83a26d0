"""Feed records keep their writer's trace (loop lineage) in a `trace` column: stores made
before that column existed get it when opened, keeping every record (which then has no
trace: its consumer starts a new chain)."""

from __future__ import annotations

import sqlite3

import psycopg
from pg_fixtures import postgres_url, unique_schema
from psycopg import sql

from squall.backends.postgres.state import PgStateStore
from squall.backends.sqlite.state import SqliteStateStore
from squall.backends.state import FeedEntry
from squall.testing.conformance import FakeClock

TRACE = f"00-{'a' * 32}-{'b' * 16}-01;loop=audit:2"

_OLD_FEED = """
CREATE TABLE feed (
    feed TEXT NOT NULL, shard INTEGER NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL,
    event TEXT NOT NULL, body TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (feed, shard, seq)) WITHOUT ROWID;
INSERT INTO feed VALUES ('table:orders', 0, 1, 'k', 'insert', '{}', 1.0);
CREATE TABLE feed_heads (feed TEXT NOT NULL, shard INTEGER NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (feed, shard)) WITHOUT ROWID;
INSERT INTO feed_heads VALUES ('table:orders', 0, 1);
"""


def _append(store, entry: FeedEntry, at: float) -> None:
    with store._tx() as db:  # the writing transaction every feed write goes through
        store._append(db, "table:orders", entry, at)


def test_sqlite_adds_the_trace_column_to_an_older_database(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.executescript(_OLD_FEED)
    store = SqliteStateStore(path, tmp_path / "objects", clock=FakeClock())
    try:
        (old,) = store.read_feed("table:orders", 0, 0, 10)
        assert old.key == "k" and old.trace is None  # kept, without a trace
        _append(store, FeedEntry(0, "k", "modify", "{}", TRACE), 2.0)
        assert [r.trace for r in store.read_feed("table:orders", 0, 0, 10)] == [None, TRACE]
    finally:
        store.close()
    again = SqliteStateStore(path, tmp_path / "objects", clock=FakeClock())  # no-op now
    try:
        assert [r.seq for r in again.read_feed("table:orders", 0, 0, 10)] == [1, 2]
    finally:
        again.close()


def test_postgres_adds_the_trace_column_to_an_older_schema():
    url = postgres_url()
    with unique_schema(url) as schema:
        first = PgStateStore(f"{url}?schema={schema}", clock=FakeClock())
        try:
            with first.db.transaction("seed") as conn:
                first._append(conn, "table:orders", FeedEntry(0, "k", "insert", "{}"), 1.0)
        finally:
            first.close()
        with psycopg.connect(url, autocommit=True) as admin:  # as an older Squall made it
            admin.execute(sql.SQL("ALTER TABLE {}.state_feed DROP COLUMN trace").format(
                sql.Identifier(schema)))
        store = PgStateStore(f"{url}?schema={schema}", clock=FakeClock())
        try:
            (old,) = store.read_feed("table:orders", 0, 0, 10)
            assert old.key == "k" and old.trace is None
            with store.db.transaction("write") as conn:
                store._append(conn, "table:orders",
                              FeedEntry(0, "k", "modify", "{}", TRACE), 2.0)
            assert [r.trace for r in store.read_feed("table:orders", 0, 0, 10)] == [
                None, TRACE]
        finally:
            store.close()

