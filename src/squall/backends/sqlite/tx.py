"""One write transaction on an SQLite connection opened in autocommit mode
(isolation_level=None), shared by the embedded stores."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Iterator


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
