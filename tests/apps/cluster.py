"""The multi-node test's app: work arrives through a queue and through a bus rule; each
handler counts each item once through the idempotency helper into a table of its own
(COUNT_DB, shared by every node on this machine), and records every execution."""

import os
import sqlite3
import time

from squall import App, BatchResult, RetryPolicy

app = App("cluster")
_db = None


def db():
    global _db  # opened lazily in each worker, never at import (workers are forks)
    if _db is None:
        _db = sqlite3.connect(os.environ["COUNT_DB"], timeout=60, isolation_level=None)
        _db.execute("PRAGMA journal_mode=WAL")
        _db.execute("CREATE TABLE IF NOT EXISTS counts (kind TEXT, n INTEGER, node TEXT, "
                    "PRIMARY KEY (kind, n))")
        _db.execute("CREATE TABLE IF NOT EXISTS runs (kind TEXT, n INTEGER, pid INTEGER)")
    return _db


ITEM_S = float(os.environ.get("CLUSTER_ITEM_MS", "1")) / 1000


def _effect(kind: str, n: int) -> int:
    time.sleep(ITEM_S)  # the item's work: long enough that a kill finds some in flight
    c = db()
    c.execute("INSERT INTO runs (kind, n, pid) VALUES (?, ?, ?)", (kind, n, os.getpid()))
    c.execute("INSERT OR IGNORE INTO counts (kind, n, node) VALUES (?, ?, ?)",
              (kind, n, os.environ.get("SQUALL_NODE_ID", "")))
    return n


@app.idempotent(key=lambda kind, n: f"{kind}:{n}", expires_s=24 * 3600, lock_s=3)
def count(kind: str, n: int) -> int:
    return _effect(kind, n)


@app.http("POST", "/load", timeout_s=60)
def load(request):
    """Inject work: {"start": s, "n": k} sends k queue messages and publishes k events."""
    body = request.json()
    items = [{"n": i} for i in range(body["start"], body["start"] + body["n"])]
    app.send_batch("work", items)
    for item in items:
        app.publish("cluster.load", "Item", item)
    return 202, {"accepted": len(items)}


@app.queue("work", batch_size=25, concurrency=4, max_receive=5, visibility_timeout_s=4,
           retry=RetryPolicy(base_s=0.05, max_s=0.2), timeout_s=4)
def work(batch, ctx):
    for m in batch:
        count("queue", m.data["n"])
    return BatchResult(failed=[])


@app.on_event(source=["cluster.load"], detail_type=["Item"], timeout_s=1)
def on_item(event, ctx):
    count("event", event["detail"]["n"])
