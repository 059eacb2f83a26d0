"""One write transaction on an SQLite connection opened in autocommit mode
(isolation_level=None), shared by the embedded stores."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE (the write lock up front, so no upgrade deadlock), COMMIT when the
    block ends, ROLLBACK if the block or the COMMIT raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def run_immediate(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """`fn(db)` inside `immediate(db)`, without a context manager's generator: for hot
    paths (a sequential writer's single event append spends ~3 us less)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        out = fn(db)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return out
