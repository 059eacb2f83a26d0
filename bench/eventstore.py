"""Event store: Squall's embedded SQLite store against the `eventsourcing` library's SQLite
application recorder, same machine, same durability (WAL, synchronous=FULL: checked and
printed), one run. Also the durable workflow step checkpoint on the embedded backend.

    .venv/bin/python bench/eventstore.py [--events 20000] [--streams 100] [--batch 100]

Measured, each on a fresh database file in one temporary directory:
- single append: one event per call, round-robin over --streams aggregates, each with
  the version it expects (Squall checks it in the transaction; eventsourcing relies on
  its unique (originator_id, version) index): one transaction and one fsync per event;
- batched append: --batch events of one aggregate per call;
- full replay: read every event in global order, 1,000 per page (Squall `read_all`,
  eventsourcing `select_notifications`), after the batched run;
- workflow checkpoint: one `SqliteWorkflowStore.append` of a StepCompleted event (the
  write a step's completion costs), synchronous=FULL;
- workflow engine end to end, in-process (TestClient): 100 sequential and 100 parallel
  no-op steps, milliseconds per step (includes the replays).
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path


def squall_bench(d: Path, n: int, streams: int, batch: int) -> dict[str, float]:
    from squall.backends.event_store import NewEvent
    from squall.backends.sqlite.eventstore import SqliteEventStore

    payload = {"amount": 10, "note": "x" * 40}
    s = SqliteEventStore(d / "squall-single.db")
    versions = [0] * streams
    t0 = time.perf_counter()
    for i in range(n):
        k = i % streams
        s.append(f"acc-{k}", [NewEvent("Deposited", payload)], versions[k])
        versions[k] += 1
    single = n / (time.perf_counter() - t0)
    sync = s._db.execute("PRAGMA synchronous").fetchone()[0]
    s.close()
    s = SqliteEventStore(d / "squall-batch.db")
    t0 = time.perf_counter()
    for i in range(n // batch):
        s.append(f"acc-{i}", [NewEvent("Deposited", payload)] * batch, 0)
    batched = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    after, seen = 0, 0
    while True:
        page = s.read_all(after, 1000)
        if not page:
            break
        seen += len(page)
        after = page[-1].position
    replay = seen / (time.perf_counter() - t0)
    s.close()
    assert seen == n // batch * batch
    return {"single": single, "batched": batched, "replay": replay, "synchronous": sync}


def es_bench(d: Path, n: int, streams: int, batch: int) -> dict[str, float]:
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

    payload = {"amount": 10, "note": "x" * 40}  # encoded per event, as Squall does
    topic = "bank:Deposited"

    def recorder(name: str) -> tuple[SQLiteApplicationRecorder, SQLiteDatastore]:
        ds = SQLiteDatastore(str(d / name))
        r = SQLiteApplicationRecorder(ds)
        r.create_table()
        return r, ds

    r, ds = recorder("es-single.db")
    ids = [uuid.uuid4() for _ in range(streams)]
    versions = [0] * streams
    t0 = time.perf_counter()
    for i in range(n):
        k = i % streams
        versions[k] += 1
        r.insert_events([StoredEvent(ids[k], versions[k], topic, json.dumps(payload).encode())])
    single = n / (time.perf_counter() - t0)
    with ds.transaction(commit=False) as c:
        c.execute("PRAGMA synchronous")
        sync = c.fetchone()[0]
    r, ds = recorder("es-batch.db")
    t0 = time.perf_counter()
    for i in range(n // batch):
        oid = uuid.uuid4()
        r.insert_events([StoredEvent(oid, v + 1, topic, json.dumps(payload).encode())
                         for v in range(batch)])
    batched = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    start, seen = 1, 0
    while True:
        page = r.select_notifications(start, 1000)
        if not page:
            break
        seen += len(page)
        start = page[-1].id + 1
        for p in page:  # decode, as Squall's read does
            json.loads(p.state)
    replay = seen / (time.perf_counter() - t0)
    assert seen == n // batch * batch
    return {"single": single, "batched": batched, "replay": replay, "synchronous": sync}


def checkpoint_bench(d: Path, steps: int) -> dict[str, float]:
    from squall.backends.sqlite.workflows import SqliteWorkflowStore
    from squall.backends.workflow_store import Execution

    ws = SqliteWorkflowStore(d / "wf.db")
    ws.create(Execution("e", "wf", "workflow", "running", {}), [("WorkflowStarted", {})])
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        ws.append("e", [("StepCompleted", {"op": i + 1, "name": "charge",
                                           "output": {"ok": True}, "attempts": 1})])
        times.append((time.perf_counter() - t0) * 1000)
    ws.close()
    times.sort()
    return {"p50_ms": statistics.median(times), "p99_ms": times[int(len(times) * 0.99)],
            "mean_ms": statistics.fmean(times)}


def engine_bench(steps: int) -> dict[str, float]:
    """End to end, in-process (squall.testing, store at synchronous=NORMAL): a workflow of
    `steps` sequential no-op steps and one of `steps` parallel ones; ms per step."""
    from squall import App
    from squall.testing import TestClient

    app = App("wfbench")
    app.function(name="noop")(lambda x: x)

    @app.workflow()
    def seq(wf, n):
        for i in range(n):
            wf.step("noop", i)

    @app.workflow()
    def par(wf, n):
        wf.all([wf.call("noop", i) for i in range(n)])

    out = {}
    with TestClient(app) as c:
        c.invoke("seq", 1, check=True)  # warm
        for name in ("seq", "par"):
            t0 = time.perf_counter()
            c.invoke(name, steps, check=True)
            out[name] = (time.perf_counter() - t0) * 1000 / steps
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--steps", type=int, default=5_000)
    a = ap.parse_args()
    from importlib import metadata

    with tempfile.TemporaryDirectory(prefix="squall-es-bench-") as tmp:
        d = Path(tmp)
        sq = squall_bench(d, a.events, a.streams, a.batch)
        es = es_bench(d, a.events, a.streams, a.batch)
        cp = checkpoint_bench(d, a.steps)
    eng = engine_bench(100)
    print(f"machine: {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, eventsourcing "
          f"{metadata.version('eventsourcing')}; synchronous squall="
          f"{sq['synchronous']} eventsourcing={es['synchronous']} (2 = FULL)")
    print(f"{'events/s':<28}{'squall':>12}{'eventsourcing':>15}{'ratio':>8}")
    for key, label in (("single", f"append, single ({a.events})"),
                       ("batched", f"append, batches of {a.batch}"),
                       ("replay", "full replay (read all)")):
        print(f"{label:<28}{sq[key]:>12,.0f}{es[key]:>15,.0f}{sq[key] / es[key]:>7.2f}x")
    print(f"workflow step checkpoint (SQLite, FULL, {a.steps} appends): p50 "
          f"{cp['p50_ms']:.3f} ms, p99 {cp['p99_ms']:.3f} ms, mean {cp['mean_ms']:.3f} ms")
    print(f"workflow engine, in-process, 100 steps: sequential {eng['seq']:.2f} ms/step, "
          f"parallel (wf.all) {eng['par']:.2f} ms/step")


if __name__ == "__main__":
    main()
