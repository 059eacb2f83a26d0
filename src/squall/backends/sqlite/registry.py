"""The platform registry on SQLite (`DATA_DIR/platform.db`): one machine's apps,
versions, packages (as blobs: a version stays deployable after its upload is gone),
aliases, history and node reports. One connection behind a lock; every write is one
transaction (the queries: squall.backends.registry.SqlRegistry)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable

from ..base import StoreError
from ..registry import SqlRegistry
from .tx import immediate

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (k, v) VALUES ('revision', 0);
CREATE TABLE IF NOT EXISTS apps (
    name TEXT PRIMARY KEY, created_at REAL NOT NULL, quotas TEXT NOT NULL,
    next_version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    app TEXT NOT NULL, version INTEGER NOT NULL, record TEXT NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (app, version)
);
CREATE TABLE IF NOT EXISTS packages (sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS aliases (
    app TEXT NOT NULL, name TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (app, name)
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY, app TEXT NOT NULL, at REAL NOT NULL, action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_app ON history (app, id);
CREATE TABLE IF NOT EXISTS nodes (node TEXT PRIMARY KEY, at REAL NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS grants (
    app TEXT NOT NULL, caller TEXT NOT NULL, functions TEXT NOT NULL, PRIMARY KEY (app, caller)
);
"""


class SqliteRegistry(SqlRegistry):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None,
                                       check_same_thread=False, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the platform registry at {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def _write(self, fn: Callable[[Any], Any], bump: bool = True) -> Any:
        with self._lock, immediate(self._db) as db:
            out = fn(db)
            if bump:
                db.execute("UPDATE meta SET v = v + 1 WHERE k = 'revision'")
            return out

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()
