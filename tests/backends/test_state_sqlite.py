"""The embedded state stores (SQLite + files) against the shared state suites, plus what
only they have: where bytes live on disk."""

from __future__ import annotations

import os

import pytest

from squall.backends.sqlite.cache import SqliteCache
from squall.backends.sqlite.state import SqliteStateStore
from squall.backends.state import shard_of
from squall.testing.conformance import FakeClock
from squall.testing.state_conformance import (CacheConformance, ObjectConformance,
                                              TableConformance)


def _open_state(tmp_path):
    return lambda clock: SqliteStateStore(tmp_path / "state.db", tmp_path / "objects",
                                          clock=clock, synchronous="NORMAL")


class TestSqliteTables(TableConformance):
    @pytest.fixture
    def open_tables(self, tmp_path):
        return _open_state(tmp_path)


class TestSqliteObjects(ObjectConformance):
    @pytest.fixture
    def open_objects(self, tmp_path):
        return _open_state(tmp_path)


class TestSqliteCache(CacheConformance):
    @pytest.fixture
    def open_cache(self, tmp_path):
        return lambda clock: SqliteCache(tmp_path / "cache.db", clock=clock)


def test_object_files_are_named_by_version_never_by_key(tmp_path):
    # Given a store and an object whose key looks like a path
    store = SqliteStateStore(tmp_path / "state.db", tmp_path / "objects", clock=FakeClock())
    try:
        w = store.begin_put("b", "photos/2024/cat.jpg", shard=shard_of("x", 4))
        w.write(b"meow")
        # While the upload runs its bytes are only in the temp area
        (part,) = (tmp_path / "objects" / "tmp").iterdir()
        assert part.suffix == ".part"
        info = w.commit("image/jpeg", {})
        # Then the file is objects/<tier>/<bucket>/<vv>/<version>, temp area empty
        files = [p for p in (tmp_path / "objects").rglob("*") if p.is_file()]
        assert [p.relative_to(tmp_path / "objects").parts for p in files] == [
            ("standard", "b", info.version[:2], info.version)]
        assert not any("cat" in str(p) for p in files)
        # and a replaced version's file is removed after the new one is published
        w = store.begin_put("b", "photos/2024/cat.jpg", shard=0)
        w.write(b"purr")
        store_info = w.commit("image/jpeg", {})
        files = [p for p in (tmp_path / "objects").rglob("*") if p.is_file()]
        assert [p.name for p in files] == [store_info.version]
    finally:
        store.close()


def test_the_state_store_is_durable_by_default(tmp_path):
    store = SqliteStateStore(tmp_path / "s.db")
    try:
        db = store._db()
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert os.path.isdir(tmp_path / "objects" / "tmp")
    finally:
        store.close()
