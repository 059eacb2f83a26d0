"""Event store: Squall's embedded SQLite store against the `eventsourcing` library's SQLite
application recorder, same machine, same durability (WAL, synchronous=FULL: checked and
printed), one run. Also the durable workflow step checkpoint on the embedded backend.

    .venv/bin/python bench/eventstore.py [--events 10000] [--streams 100] [--batch 100]
                                         [--writers 8] [--rounds 3] [--kinds batched,...]

Each measurement runs --rounds times, the two sides alternating, each time on fresh
database files in one temporary directory; the table shows the medians and the ratio of
each round (a shared machine's load changes from second to second). Measured:
- single append: one event per call, round-robin over --streams aggregates, each with
  the version it expects (Squall checks it in the transaction; eventsourcing relies on
  its unique (originator_id, version) index). One sequential writer: one transaction
  and one fsync per event on both sides;
- single append, --writers threads: the same appends from concurrent writers (each its
  own streams), as a server's concurrent commands make them. Squall's group commit
  writes the appends waiting at a commit in one transaction; eventsourcing's recorder
  takes its writer lock and commits each insert on its own;
- batched append: --batch events of one aggregate per call (sequential, then from
  --writers threads);
- full replay: read every event in global order, 1,000 per page (Squall `read_all`,
  eventsourcing `select_notifications`), decoding each event's JSON, after --events
  events were appended in batches;
- the disk's ceiling (BareSide): the single appends as bare one-row SQLite transactions;
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
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable


def threaded(writers: int, work: Callable[[int], None]) -> float:
    """Seconds for `writers` threads to each run work(thread_index)."""
    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return time.perf_counter() - t0


PAYLOAD = {"amount": 10, "note": "x" * 40}


class SquallSide:
    """Squall's embedded event store (`SqliteEventStore`, its defaults: WAL, FULL)."""

    name = "squall"

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        from squall.backends.event_store import NewEvent
        from squall.backends.sqlite.eventstore import SqliteEventStore

        self.new = NewEvent
        self.s = SqliteEventStore(path, synchronous=synchronous)

    def synchronous(self) -> int:
        return self.s._db.execute("PRAGMA synchronous").fetchone()[0]

    def wal_pages(self) -> int:
        return self.s._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]

    def appender(self, prefix: str) -> Callable[[int, int], None]:
        """append(stream index, count): `count` events at the version it expects."""
        versions: dict[int, int] = {}
        new, append = self.new, self.s.append

        def go(k: int, count: int) -> None:
            v = versions.get(k, 0)
            append(f"{prefix}-{k}", [new("Deposited", PAYLOAD)] * count, v)
            versions[k] = v + count

        return go

    def replay(self) -> int:
        after, seen = 0, 0
        while page := self.s.read_all(after, 1000):
            seen += len(page)
            after = page[-1].position
        return seen

    def close(self) -> None:
        self.s.close()


class EventsourcingSide:
    """eventsourcing's `SQLiteApplicationRecorder` (its defaults: WAL, FULL)."""

    name = "eventsourcing"

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        from eventsourcing.persistence import StoredEvent
        from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

        self.stored = StoredEvent
        self.ds = SQLiteDatastore(str(path))
        if synchronous != "FULL":  # every pooled connection, as Squall's one connection
            make = self.ds.pool._create_connection

            def create() -> Any:
                conn = make()
                conn._sqlite_conn.execute(f"PRAGMA synchronous={synchronous}")
                return conn

            self.ds.pool._create_connection = create  # type: ignore[method-assign]
        self.r = SQLiteApplicationRecorder(self.ds)
        self.r.create_table()

    def synchronous(self) -> int:
        with self.ds.transaction(commit=False) as c:
            c.execute("PRAGMA synchronous")
            return c.fetchone()[0]

    def wal_pages(self) -> int:
        with self.ds.transaction(commit=False) as c:
            c.execute("PRAGMA wal_autocheckpoint")
            return c.fetchone()[0]

    def appender(self, prefix: str) -> Callable[[int, int], None]:
        ids: dict[int, uuid.UUID] = {}
        versions: dict[int, int] = {}
        stored, insert = self.stored, self.r.insert_events

        def go(k: int, count: int) -> None:
            oid = ids.setdefault(k, uuid.uuid4())
            v = versions.get(k, 0)
            # each event's JSON encoded per call, as Squall does
            insert([stored(oid, v + i + 1, "bank:Deposited", json.dumps(PAYLOAD).encode())
                    for i in range(count)])
            versions[k] = v + count

        return go

    def replay(self) -> int:
        start, seen = 1, 0
        while page := self.r.select_notifications(start, 1000):
            seen += len(page)
            start = page[-1].id + 1
            for p in page:  # decode, as Squall's read does
                json.loads(p.state)
        return seen

    def close(self) -> None:
        self.ds.close()


class BareSide:
    """The disk's ceiling for one sequential writer's single appends: a bare loop of
    `BEGIN IMMEDIATE; INSERT one row; COMMIT` on Squall's schema and pragmas (the same
    row, no version check, no Python around it). Any store that fsyncs each append costs
    at least this, so rate(bare) / rate(eventsourcing) is the highest ratio an fsync'd
    sequential single append can reach on this machine."""

    name = "bare"

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        from squall.backends.sqlite.eventstore import _SCHEMA, WAL_PAGES

        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
        self.db.executescript(_SCHEMA)

    def synchronous(self) -> int:
        return self.db.execute("PRAGMA synchronous").fetchone()[0]

    def wal_pages(self) -> int:
        return self.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]

    def appender(self, prefix: str) -> Callable[[int, int], None]:
        versions: dict[int, int] = {}
        execute, data = self.db.execute, json.dumps(PAYLOAD)
        position = [0]

        def go(k: int, count: int) -> None:
            assert count == 1, "the bare loop measures single appends only"
            v = versions.get(k, 0) + 1
            position[0] += 1
            execute("BEGIN IMMEDIATE")
            execute("INSERT INTO es_events VALUES (?,?,?,?,?,?,?,?)",
                    (position[0], f"{prefix}-{k}", v, "Deposited", data, "{}", 1, 0.0))
            execute("COMMIT")
            versions[k] = v

        return go

    def close(self) -> None:
        self.db.close()


def measure(side: Any, kind: str, n: int, streams: int, batch: int, writers: int
            ) -> float:
    """Events per second of one measurement on a fresh store `side`."""
    if kind == "replay":
        append = side.appender("acc")
        for i in range(n // batch):
            append(i, batch)
        t0 = time.perf_counter()
        seen = side.replay()
        assert seen == n // batch * batch
        return seen / (time.perf_counter() - t0)
    count = 1 if kind.startswith("single") else batch
    calls = n // count
    if kind.endswith("_mt"):
        per = calls // writers

        def work(w: int) -> None:
            append = side.appender(f"w{w}")
            for i in range(per):
                append(i % streams if count == 1 else i, count)

        return per * writers * count / threaded(writers, work)
    append = side.appender("acc")
    t0 = time.perf_counter()
    for i in range(calls):
        append(i % streams if count == 1 else i, count)
    return calls * count / (time.perf_counter() - t0)


KINDS = ("single", "single_mt", "batched", "batched_mt", "replay")


def compare(d: Path, n: int, streams: int, batch: int, writers: int, rounds: int,
            kinds: tuple[str, ...] = KINDS, synchronous: str = "FULL"
            ) -> tuple[dict[str, dict[str, list[float]]], dict[str, int]]:
    """Each measurement `rounds` times, the two sides alternating (so a load change on a
    shared machine hits both), each time on fresh database files."""
    rates: dict[str, dict[str, list[float]]] = {"squall": {}, "eventsourcing": {},
                                                "bare": {}}
    sync: dict[str, int] = {}
    for r in range(rounds):
        for kind in kinds:
            order: tuple[Any, ...] = (SquallSide, EventsourcingSide) if r % 2 == 0 else (
                EventsourcingSide, SquallSide)
            if kind == "single":  # the disk's ceiling, in the same round
                order = (BareSide, *order) if r % 2 else (*order, BareSide)
            for cls in order:
                side = cls(d / f"{cls.name}-{kind}-{r}.db", synchronous)
                try:
                    sync[cls.name] = side.synchronous()
                    sync[f"{cls.name}_wal"] = side.wal_pages()
                    rates[cls.name].setdefault(kind, []).append(
                        measure(side, kind, n, streams, batch, writers))
                    if kind == "single_mt" and cls is SquallSide:
                        sync["groups"] = sync.get("groups", 0) + side.s.groups
                finally:
                    side.close()
    return rates, sync


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
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--steps", type=int, default=2_000)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help="measure only these (comma-separated); the workflow figures only "
                         "with all of them")
    ap.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL", "OFF"),
                    help="SQLite's synchronous setting on both sides (FULL: an append is "
                         "fsync'd before it returns; NORMAL/OFF show what the code costs "
                         "when the disk's flush is not the bound)")
    a = ap.parse_args()
    kinds = tuple(k for k in a.kinds.split(",") if k)
    if not kinds or set(kinds) - set(KINDS):
        ap.error(f"--kinds takes a comma-separated subset of {', '.join(KINDS)}; "
                 f"got {a.kinds!r}")
    every = set(kinds) == set(KINDS)
    from importlib import metadata

    with tempfile.TemporaryDirectory(prefix="squall-es-bench-") as tmp:
        d = Path(tmp)
        rates, sync = compare(d, a.events, a.streams, a.batch, a.writers, a.rounds, kinds,
                              a.synchronous)
        cp = checkpoint_bench(d, a.steps) if every else None
    eng = engine_bench(100) if every else None
    print(f"machine: {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, eventsourcing "
          f"{metadata.version('eventsourcing')}; synchronous squall={sync['squall']} "
          f"eventsourcing={sync['eventsourcing']} (2 = FULL, 1 = NORMAL, 0 = OFF); "
          f"wal_autocheckpoint squall={sync['squall_wal']} eventsourcing={sync['eventsourcing_wal']} pages; medians of "
          f"{a.rounds} alternating rounds")
    w = a.writers
    print(f"{'events/s':<36}{'squall':>12}{'eventsourcing':>15}{'ratio':>8}   per round")
    for key, label in (("single", f"append, single ({a.events}), 1 writer"),
                       ("single_mt", f"append, single, {w} writers"),
                       ("batched", f"append, batches of {a.batch}, 1 writer"),
                       ("batched_mt", f"append, batches of {a.batch}, {w} writers"),
                       ("replay", "full replay (read all)")):
        if key not in kinds:
            continue
        sq, es = rates["squall"][key], rates["eventsourcing"][key]
        ms, me = statistics.median(sq), statistics.median(es)
        rounds = " ".join(f"{x / y:.2f}" for x, y in zip(sq, es))
        print(f"{label:<36}{ms:>12,.0f}{me:>15,.0f}{ms / me:>7.2f}x   {rounds}")
    if "single" in kinds:
        bare = statistics.median(rates["bare"]["single"])
        es = statistics.median(rates["eventsourcing"]["single"])
        print(f"(the disk's ceiling for one writer's single appends: a bare SQLite loop of "
              f"one-row transactions, same schema, made {bare:,.0f}/s, "
              f"{bare / es:.2f}x eventsourcing; Squall ran at "
              f"{statistics.median(rates['squall']['single']) / bare:.0%} of it)")
    if "single_mt" in kinds:
        print(f"(group commits: {a.events * a.rounds / max(sync['groups'], 1):.1f} appends "
              f"per commit in Squall's {w}-writer single appends)")
    if cp is None or eng is None:
        return
    print(f"workflow step checkpoint (SQLite, FULL, {a.steps} appends): p50 "
          f"{cp['p50_ms']:.3f} ms, p99 {cp['p99_ms']:.3f} ms, mean {cp['mean_ms']:.3f} ms")
    print(f"workflow engine, in-process, 100 steps: sequential {eng['seq']:.2f} ms/step, "
          f"parallel (wf.all) {eng['par']:.2f} ms/step")


if __name__ == "__main__":
    main()
