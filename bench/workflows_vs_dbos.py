"""Durable workflows: Squall's workflow engine against DBOS Transact, same machine, same
database server, one run.

    .venv/bin/pip install -e '.[bench]'        # dbos (it brings SQLAlchemy)
    .venv/bin/python bench/workflows_vs_dbos.py [--steps 20] [--runs 50] [--reps 5]
                                                [--backend postgres,sqlite] [--rounds 3]
                                                [--no-crash]

Both run in-process with no-op steps, so what is measured is the orchestration: the
durable checkpoint of each step and the engine's own work.
- Squall: `WorkflowEngine` on its workflow store (PostgreSQL: `PgWorkflowStore`; SQLite:
  `SqliteWorkflowStore`, WAL, synchronous=FULL) with the app's functions called in the
  same process (as `squall.testing` does; `squall run` puts each step in a worker
  process on top of this). Each step is one append; a sequential step costs one replay
  of the workflow function with its history.
- DBOS (`@DBOS.workflow`, `@DBOS.step`) on its system database: PostgreSQL, or SQLite
  (DBOS keeps SQLite's default rollback journal, synchronous=FULL).
Durability is the servers' defaults on both sides: PostgreSQL synchronous_commit=on.

Measured:
- start latency: the call that starts a workflow durably and returns its id/handle
  (Squall `engine.start`, DBOS `start_workflow`), p50 over --runs;
- start → result: a one-step workflow started and run to completion, p50/p99 over --runs;
- steps/s: a workflow of --steps sequential steps, --reps times;
- resume after a crash: a child process runs a --steps workflow, is SIGKILLed while step
  --steps/2 runs, and a new process recovers it: the time from recovery's start to the
  result, and how many of the finished steps ran again (0 expected on both).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
DB = "squall_bench_workflows"


# -- the workflows, the same on both sides --------------------------------------------

def effect(i: int) -> int:
    """A step: record it (for the crash run), block at the crash point until released."""
    log = os.environ.get("BENCH_EFFECTS")
    if log:
        with open(log, "a") as f:
            f.write(f"{i}\n")
        if str(i) == os.environ.get("BENCH_CRASH_AT") and not os.path.exists(log + ".go"):
            while True:  # the parent kills this process here
                time.sleep(0.05)
    return i


def squall_app() -> Any:
    from squall import App

    app = App("wfbench")
    app.function(name="noop")(lambda x: effect(x))

    @app.workflow()
    def seq(wf, n):
        for i in range(n):
            wf.step("noop", i)
        return n

    @app.workflow()
    def one(wf, x):
        return wf.step("noop", x)

    return app


class _Result:
    __slots__ = ("ok", "output", "status", "error_type", "error_message")

    def __init__(self, ok: bool, output: Any, error: BaseException | None = None) -> None:
        self.ok, self.output, self.status = ok, output, "ok" if ok else "error"
        self.error_type = type(error).__name__ if error else None
        self.error_message = str(error) if error else None


def squall_engine(store: Any) -> Any:
    from squall.workflows import WorkflowEngine

    app = squall_app()

    async def invoke(function: str, kind: str, payload: str, *, request_id: str,
                     **_: Any) -> _Result:
        fn = app.functions[function]
        event = json.loads(payload)
        try:
            out = fn.handler(event, None) if fn.takes_context else fn.handler(event)
        except Exception as exc:
            return _Result(False, None, exc)
        return _Result(True, json.loads(json.dumps(out)))  # the wire, as in-process

    return WorkflowEngine(store, invoke, workflows={
        w["name"]: w for w in app.workflow_manifest()})


def squall_store(backend: str, d: Path) -> Any:
    if backend == "postgres":
        from squall.backends.postgres.workflows import PgWorkflowStore

        return PgWorkflowStore(f"{PG}/{DB}", schema="squall_bench")
    from squall.backends.sqlite.workflows import SqliteWorkflowStore

    return SqliteWorkflowStore(d / "squall-wf.db")


def dbos_launch(backend: str, d: Path) -> Any:
    from dbos import DBOS

    @DBOS.step()
    def noop(i: int) -> int:
        return effect(i)

    @DBOS.workflow()
    def seq(n: int) -> int:
        for i in range(n):
            noop(i)
        return n

    @DBOS.workflow()
    def one(x: int) -> int:
        return noop(x)

    url = f"{PG}/{DB}" if backend == "postgres" else f"sqlite:///{d / 'dbos.sqlite'}"
    DBOS(config={"name": "squall-bench", "system_database_url": url,
                 "log_level": "WARNING", "console_log_level": "WARNING"})
    DBOS.launch()
    return DBOS, seq, one


# -- measurements -----------------------------------------------------------------------

def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


def measure_squall(backend: str, d: Path, steps: int, runs: int, reps: int
                   ) -> dict[str, float]:
    store = squall_store(backend, d)
    engine = squall_engine(store)

    async def go() -> dict[str, float]:
        await engine.run("one", -1)  # warm
        lat, starts = [], []
        for i in range(runs):
            t0 = time.perf_counter()
            assert await engine.run("one", i) == i
            lat.append((time.perf_counter() - t0) * 1000)
        for i in range(runs):
            t0 = time.perf_counter()
            ex = await engine.start("one", i)  # durable: the execution is recorded
            starts.append((time.perf_counter() - t0) * 1000)
            await engine.result(ex.id, 60)
        t0 = time.perf_counter()
        for _ in range(reps):
            assert await engine.run("seq", steps) == steps
        sps = steps * reps / (time.perf_counter() - t0)
        await engine.stop()
        return {"start_ms": statistics.median(starts), "p50_ms": statistics.median(lat),
                "p99_ms": pct(lat, 0.99), "steps_s": sps}

    try:
        return asyncio.run(go())
    finally:
        store.close()


def measure_dbos(backend: str, d: Path, steps: int, runs: int, reps: int
                 ) -> dict[str, float]:
    dbos, seq, one = dbos_launch(backend, d)
    try:
        one(-1)
        lat, starts = [], []
        for i in range(runs):
            t0 = time.perf_counter()
            assert one(i) == i
            lat.append((time.perf_counter() - t0) * 1000)
        for i in range(runs):
            t0 = time.perf_counter()
            handle = dbos.start_workflow(one, i)  # durable: the status row is written
            starts.append((time.perf_counter() - t0) * 1000)
            handle.get_result()
        t0 = time.perf_counter()
        for _ in range(reps):
            assert seq(steps) == steps
        sps = steps * reps / (time.perf_counter() - t0)
    finally:
        dbos.destroy()
    return {"start_ms": statistics.median(starts), "p50_ms": statistics.median(lat),
            "p99_ms": pct(lat, 0.99), "steps_s": sps}


# -- crash and resume (child processes) ---------------------------------------------------

def child(side: str, backend: str, d: Path, phase: str, steps: int, wid: str) -> None:
    """phase "crash": start workflow `wid` and block at the crash step (killed there);
    phase "resume": recover it, print the seconds recovery took to its result."""
    if side == "squall":
        t0 = time.perf_counter()  # (as for DBOS: opening the store is part of it)
        store = squall_store(backend, d)
        engine = squall_engine(store)

        async def go() -> float:
            if phase == "crash":
                await engine.start("seq", steps, id=wid)
                await asyncio.Event().wait()  # killed
            await engine.recover()
            ex = await engine.result(wid, 120)
            assert ex.output == steps, ex
            return time.perf_counter() - t0

        print(json.dumps({"resume_s": asyncio.run(go())}), flush=True)
        return
    from dbos import SetWorkflowID

    if phase == "crash":
        dbos, seq, _ = dbos_launch(backend, d)
        with SetWorkflowID(wid):
            seq(steps)  # killed inside
        return
    t0 = time.perf_counter()
    dbos, seq, _ = dbos_launch(backend, d)  # launch() recovers pending workflows
    assert dbos.retrieve_workflow(wid).get_result() == steps
    took = time.perf_counter() - t0
    print(json.dumps({"resume_s": took}), flush=True)
    os._exit(0)  # (DBOS's background threads)


def crash_run(side: str, backend: str, d: Path, steps: int) -> dict[str, float]:
    effects = d / f"{side}-{backend}-effects.log"
    env = {**os.environ, "BENCH_EFFECTS": str(effects), "BENCH_CRASH_AT": str(steps // 2)}
    wid = f"crash-{uuid.uuid4().hex[:12]}"
    cmd = [sys.executable, __file__, "--child", side, "--backend", backend, "--dir", str(d),
           "--steps", str(steps), "--wid", wid]
    proc = subprocess.Popen(cmd + ["--phase", "crash"], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if effects.exists() and str(steps // 2) in effects.read_text().split():
            break
        time.sleep(0.01)
    else:
        proc.kill()
        raise RuntimeError(f"{side}: the crash step never ran")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    Path(str(effects) + ".go").touch()
    out = subprocess.run(cmd + ["--phase", "resume"], env=env, capture_output=True, text=True,
                         timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"{side} resume failed: {out.stderr[-2000:]}")
    took = json.loads(out.stdout.strip().splitlines()[-1])["resume_s"]
    ran = [int(x) for x in effects.read_text().split()]
    repeated = sum(1 for i in range(steps // 2) if ran.count(i) > 1)
    return {"resume_s": took, "repeated": repeated,
            "complete": all(ran.count(i) >= 1 for i in range(steps))}


def ensure_database() -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone():
            c.execute(f"CREATE DATABASE {DB}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--backend", default="postgres,sqlite")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-crash", action="store_true")
    ap.add_argument("--child")
    ap.add_argument("--phase")
    ap.add_argument("--dir")
    ap.add_argument("--wid")
    a = ap.parse_args()
    if a.child:
        child(a.child, a.backend, Path(a.dir), a.phase, a.steps, a.wid)
        return
    from importlib import metadata

    backends = [b for b in a.backend.split(",") if b]
    if "postgres" in backends:
        ensure_database()
    rows = []
    with tempfile.TemporaryDirectory(prefix="squall-dbos-bench-") as tmp:
        for backend in backends:
            d = Path(tmp) / backend
            d.mkdir()
            # each side in its own process (DBOS keeps a process-global registry), the
            # sides alternating round by round (the load of a shared machine drifts)
            runs: dict[str, list[dict[str, float]]] = {"squall": [], "dbos": []}
            for r in range(a.rounds):
                for side in (("squall", "dbos") if r % 2 == 0 else ("dbos", "squall")):
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", f"measure-{side}", "--backend",
                         backend, "--dir", str(d), "--steps", str(a.steps), "--phase",
                         f"{a.runs},{a.reps}"], capture_output=True, text=True, timeout=600)
                    if out.returncode != 0:
                        raise SystemExit(f"{side} on {backend} failed:\n{out.stderr[-3000:]}")
                    runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
            res = {side: {k: statistics.median(x[k] for x in rs) for k in rs[0]}
                   for side, rs in runs.items()}
            if not a.no_crash:
                for side in ("squall", "dbos"):
                    res[side].update(crash_run(side, backend, d, a.steps))
            rows.append((backend, res))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, dbos {metadata.version('dbos')}; "
          f"{a.steps}-step workflows, {a.runs} one-step runs, {a.reps} reps; medians of "
          f"{a.rounds} alternating rounds (one crash run each)")
    print(f"{'figure':<34}{'squall':>10}{'dbos':>10}{'squall/dbos':>13}")
    for backend, res in rows:
        s, b = res["squall"], res["dbos"]
        print(f"[{backend}]")
        for key, label, better_low in (("start_ms", "start (returns the id), p50 ms", True),
                                       ("p50_ms", "start->result, 1 step, p50 ms", True),
                                       ("p99_ms", "start->result, 1 step, p99 ms", True),
                                       ("steps_s", f"steps/s ({a.steps} sequential)", False),
                                       ("resume_s", "resume after kill -9, s", True)):
            if key not in s:
                continue
            ratio = b[key] / s[key] if better_low else s[key] / b[key]
            print(f"  {label:<32}{s[key]:>10.2f}{b[key]:>10.2f}{ratio:>12.2f}x")
        if "repeated" in s:
            print(f"  finished steps run again after the crash: squall {s['repeated']}, "
                  f"dbos {b['repeated']}; all steps done: squall {s['complete']}, "
                  f"dbos {b['complete']}")
    print("ratios: >1 means Squall is better (faster, or higher throughput)")


def _measure_child() -> None:
    side, backend, d = sys.argv[sys.argv.index("--child") + 1][8:], \
        sys.argv[sys.argv.index("--backend") + 1], Path(sys.argv[sys.argv.index("--dir") + 1])
    steps = int(sys.argv[sys.argv.index("--steps") + 1])
    runs, reps = map(int, sys.argv[sys.argv.index("--phase") + 1].split(","))
    fn = measure_squall if side == "squall" else measure_dbos
    print(json.dumps(fn(backend, d, steps, runs, reps)), flush=True)
    if side == "dbos":
        os._exit(0)


if __name__ == "__main__":
    if "--child" in sys.argv and sys.argv[sys.argv.index("--child") + 1].startswith("measure-"):
        _measure_child()
    else:
        main()
