"""API keys, daily counts and secret ciphertexts in an SQLite store file
(squall.backends.security_store), for nodes on one machine that share `--store
sqlite:///path`: tables `security_*` beside the invocation log, each write one
BEGIN IMMEDIATE transaction, so processes never lose a count."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable

from ..base import StoreError
from ..security_store import TABLES, SqlSecurityRecords
from .tx import immediate


class SqliteSecurityRecords(SqlSecurityRecords):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        db = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 timeout=10.0)
            db.execute("PRAGMA journal_mode=WAL")
            with immediate(db):
                for stmt in TABLES:
                    db.execute(stmt)
        except (sqlite3.Error, OSError) as exc:
            if db is not None:
                db.close()
            raise StoreError(f"cannot open the security tables in {self.path}: {exc}") from exc
        self._db = db
        self._lock = threading.Lock()

    def _write(self, what: str, fn: Callable[[Any], Any]) -> Any:
        with self._lock:
            try:
                with immediate(self._db):
                    return fn(self._db)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot {what} in {self.path}: {exc}") from exc

    def _read(self, what: str, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot {what} in {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()
