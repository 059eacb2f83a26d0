"""The crash test's app: a queue whose handler counts each message once, through the
idempotency helper, into a table of its own (COUNT_DB)."""

import os
import sqlite3

from squall import App, BatchResult, RetryPolicy

app = App("crashcount")
_db = None


def db():
    global _db  # opened lazily in each worker, never at import (workers are forks)
    if _db is None:
        _db = sqlite3.connect(os.environ["COUNT_DB"], timeout=30, isolation_level=None)
        _db.execute("PRAGMA journal_mode=WAL")
        _db.execute("CREATE TABLE IF NOT EXISTS counts (n INTEGER PRIMARY KEY)")
        _db.execute("CREATE TABLE IF NOT EXISTS runs (n INTEGER, pid INTEGER)")
    return _db


@app.idempotent(key="n", expires_s=24 * 3600, lock_s=2)
def count(n):
    c = db()
    c.execute("INSERT INTO runs (n, pid) VALUES (?, ?)", (n, os.getpid()))  # every execution
    c.execute("INSERT OR IGNORE INTO counts (n) VALUES (?)", (n,))  # the effect, idempotent
    return n


@app.queue("work", batch_size=50, concurrency=4, max_receive=2, visibility_timeout_s=4,
           retry=RetryPolicy(base_s=0.05, max_s=0.2), timeout_s=4)
def work(batch, ctx):
    failed = []
    for m in batch:
        n = m.data["n"]
        if n % 1000 == 999:  # the poison subset: 10 of 10,000
            failed.append(m.id)
        else:
            count(n)
    return BatchResult(failed=failed)
