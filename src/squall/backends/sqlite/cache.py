"""The embedded cache: SQLite in WAL mode, its own file (a cache need not survive power
loss, so `synchronous=NORMAL`). Expired entries are invisible at once and removed by the
sweeper; the expiry clock is injectable."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

from ..base import StoreError
from ..state import NotAnInteger
from .tx import immediate

_INT = re.compile(rb"^-?[0-9]+$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (
    ns TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    expires_at REAL,
    PRIMARY KEY (ns, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cache_expiry ON cache(expires_at) WHERE expires_at IS NOT NULL;
"""
_LIVE = "(expires_at IS NULL OR expires_at > ?)"


class SqliteCache:
    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time,
                 synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        self.clock = clock
        self.synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db().executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the cache at {self.path}: {exc}") from exc

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 timeout=30.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return immediate(self._db())

    def cache_get(self, ns: str, key: str) -> bytes | None:
        try:
            row = self._db().execute(f"SELECT value FROM cache WHERE ns = ? AND key = ? AND "
                                     f"{_LIVE}", (ns, key, self.clock())).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cache {self.path}: {exc}") from exc
        return bytes(row[0]) if row else None

    def cache_set(self, ns: str, key: str, value: bytes, ttl_s: float | None, *,
                  only_if_absent: bool = False) -> bool:
        now = self.clock()
        expires = now + ttl_s if ttl_s is not None else None
        try:
            with self._tx() as db:
                if only_if_absent and db.execute(
                        f"SELECT 1 FROM cache WHERE ns = ? AND key = ? AND {_LIVE}",
                        (ns, key, now)).fetchone():
                    return False
                db.execute("INSERT OR REPLACE INTO cache (ns, key, value, expires_at) "
                           "VALUES (?,?,?,?)", (ns, key, value, expires))
                return True
        except sqlite3.Error as exc:
            raise StoreError(f"cache {self.path}: {exc}") from exc

    def cache_delete(self, ns: str, key: str) -> bool:
        try:
            with self._tx() as db:
                live = db.execute(f"SELECT 1 FROM cache WHERE ns = ? AND key = ? AND {_LIVE}",
                                  (ns, key, self.clock())).fetchone()
                db.execute("DELETE FROM cache WHERE ns = ? AND key = ?", (ns, key))
                return live is not None
        except sqlite3.Error as exc:
            raise StoreError(f"cache {self.path}: {exc}") from exc

    def cache_incr(self, ns: str, key: str, by: int, ttl_s: float | None) -> int:
        now = self.clock()
        try:
            with self._tx() as db:
                row = db.execute(f"SELECT value, expires_at FROM cache WHERE ns = ? AND "
                                 f"key = ? AND {_LIVE}", (ns, key, now)).fetchone()
                if row is None:
                    value, expires = by, (now + ttl_s if ttl_s is not None else None)
                else:
                    raw = bytes(row[0])
                    if not _INT.match(raw):
                        raise NotAnInteger(f"cache {ns!r}: key {key!r} holds {raw[:40]!r}, "
                                           "not a whole number; incr cannot add to it")
                    value, expires = int(raw) + by, row[1]
                db.execute("INSERT OR REPLACE INTO cache (ns, key, value, expires_at) "
                           "VALUES (?,?,?,?)", (ns, key, str(value).encode(), expires))
                return value
        except sqlite3.Error as exc:
            raise StoreError(f"cache {self.path}: {exc}") from exc

    def cache_clear(self, ns: str) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM cache WHERE ns = ?", (ns,)).rowcount

    def cache_sweep(self) -> int:
        """Drop expired entries (the sweeper calls this; reads never see them anyway)."""
        with self._tx() as db:
            return db.execute("DELETE FROM cache WHERE expires_at IS NOT NULL AND "
                              "expires_at <= ?", (self.clock(),)).rowcount

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for db in conns:
            try:
                db.close()
            except sqlite3.Error:
                pass
