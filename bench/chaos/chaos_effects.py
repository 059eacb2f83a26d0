"""The chaos apps' side ledger (CHAOS_DB: SQLite, WAL, synchronous=FULL), imported by
app.py and wf_app.py (the app loader puts their directory on sys.path):

* `deliveries` — one row per handler invocation per message (duplicate deliveries);
* `effects` — one row per execution of an effect, with its time and the worker's pid
  (not keyed: a second execution of one effect shows as a second row);
* `done` — one row per idempotent run that returned (its record is complete), so the
  harness tells a run repeated after it completed (a broken guarantee) from one repeated
  because its worker was killed between the effect and the record's completion.
"""

import os
import sqlite3
import time

_db = None


def db() -> sqlite3.Connection:
    global _db  # opened lazily in each worker, never at import (workers are forks)
    if _db is None:
        _db = sqlite3.connect(os.environ["CHAOS_DB"], timeout=60, isolation_level=None)
        _db.execute("PRAGMA journal_mode=WAL")
        _db.execute("PRAGMA synchronous=FULL")
        _db.execute("CREATE TABLE IF NOT EXISTS deliveries (n INTEGER, pid INTEGER)")
        _db.execute("CREATE TABLE IF NOT EXISTS effects (n INTEGER, at REAL, pid INTEGER)")
        _db.execute("CREATE TABLE IF NOT EXISTS done (n INTEGER, pid INTEGER)")
    return _db


def delivered(ns: list[int]) -> None:
    db().executemany("INSERT INTO deliveries (n, pid) VALUES (?, ?)",
                     [(n, os.getpid()) for n in ns])


def effect(n: int) -> None:
    db().execute("INSERT INTO effects (n, at, pid) VALUES (?, ?, ?)",
                 (n, time.time(), os.getpid()))


def done(n: int) -> None:
    db().execute("INSERT INTO done (n, pid) VALUES (?, ?)", (n, os.getpid()))
