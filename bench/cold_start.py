"""Cold start, side by side: Squall's zygote fork vs a fresh interpreter, in one run.

Squall side (in this process, the supervisor): `await Runtime.invoke(fn, "event", json)`
for a function that has no worker, so the pool asks the zygote to fork one. Timed end to
end from the call to the result; the worker's own `init_ms` (fork request -> READY) is
reported too. After each cold sample the same worker is invoked again (`--warm` times,
the warm path), then retired the way the idle reaper does it (`WorkerConn.close()`), and
we wait until its process is gone before the next sample. The app registers one handler
as 50 functions f0..f49, used in turn.

Peer (what a naive runner does): `subprocess.run` of a fresh venv interpreter that imports
the same module (bench/apps/coldmod.py), calls the handler and prints the JSON result.
PYTHONSTARTUP is unset; bytecode caches go to a private PYTHONPYCACHEPREFIX (warmed first),
so neither side pays compilation. Reference rows: `python -c pass` and the bare stdlib
imports.

Reps are interleaved (the order alternates per rep); percentiles are over all samples, and
the ratio is also given per rep (median over reps). A rep during which other processes
(other engineers' test suites) used more than --max-other % of the box is run again.

    .venv/bin/python bench/cold_start.py            # full: 250 Squall, 125 fresh samples
    .venv/bin/python bench/cold_start.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    begin_measurement,
    REPO,
    APPS_DIR,
    VENV_PYTHON,
    clean_env,
    drop_snapshot,
    idle_check,
    snapshot_src,
    src_fingerprint,
    wait_quiet,
    log,
    machine_info,
    median,
    NoiseWindow,
    pct,
    print_table,
    ratio,
    summary,
    write_results,
)

APP_FILE = APPS_DIR / "coldmod.py"
FUNCTIONS = 50
PAYLOAD = json.dumps({"amount": "21.5", "user": "ada"})
RUNNER = (
    "import sys, json; sys.path.insert(0, {d!r}); import coldmod; "
    "print(json.dumps(coldmod.handler(json.loads(sys.argv[1]))))"
).format(d=str(APPS_DIR))
REFERENCES = {
    "python -c pass": ["-c", "pass"],
    "python -c 'import json, email, http.client, decimal, uuid'": [
        "-c", "import json, email, http.client, decimal, uuid"],
}
TARGET_RATIO = 1 / 20
TARGET_P50_MS = 5.0


class HarnessError(RuntimeError):
    pass


# What the worker itself said about each invocation: (cold, init_ms) by request id.
# `InvocationResult.cold` comes from the supervisor's view instead, which misses a cold
# start when the new worker's READY frame arrives before the request is queued on it
# (pool.py: `pending.cold = self.next_id == 0 and not self.ready`), and then drops init_ms.
# This observer only records; it does not change what the pool does.
WORKER_VIEW: dict[str, tuple[bool, float | None]] = {}


def observe_worker_frames() -> None:
    from squall.runtime import pool as pool_mod

    original = pool_mod.FunctionPool.completed

    def completed(self: Any, w: Any, pending: Any, frame: list) -> None:
        WORKER_VIEW[pending.request_id] = (frame[9], frame[10])
        original(self, w, pending, frame)

    pool_mod.FunctionPool.completed = completed  # type: ignore[method-assign]


# -- Squall --------------------------------------------------------------------------------

async def _gone(pid: int, timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while os.path.exists(f"/proc/{pid}"):
        if time.monotonic() > deadline:
            raise HarnessError(f"worker {pid} did not exit within {timeout_s} s after close()")
        await asyncio.sleep(0.001)


async def squall_samples(rt: Any, names: list[str], start: int, n: int, warm: int,
                         deadline: float, out: dict[str, list]) -> int:
    """`n` cold samples (plus `warm` warm ones each) on functions names[start...]."""
    done = 0
    for i in range(n):
        if time.monotonic() > deadline:
            break
        name = names[(start + i) % len(names)]
        pool = rt.pools[name]
        if pool.workers:
            raise HarnessError(f"function {name} still has a worker; the sample would be warm")
        t0 = time.perf_counter()
        res = await rt.invoke(name, "event", PAYLOAD)
        dt = (time.perf_counter() - t0) * 1000.0
        worker_cold, worker_init_ms = WORKER_VIEW.pop(res.request_id, (None, None))
        if not res.ok or not worker_cold or worker_init_ms is None:
            raise HarnessError(f"cold invoke of {name} failed or its worker was not new: {res}")
        if not res.cold:
            out["misreported_warm"].append(res.request_id)
        if res.output["echo"] != json.loads(PAYLOAD):
            raise HarnessError(f"unexpected output from {name}: {res.output}")
        out["cold_ms"].append(dt)
        out["init_ms"].append(worker_init_ms)
        out["cold_duration_ms"].append(res.duration_ms)
        for _ in range(warm):
            t0 = time.perf_counter()
            r = await rt.invoke(name, "event", PAYLOAD)
            out["warm_ms"].append((time.perf_counter() - t0) * 1000.0)
            out["warm_duration_ms"].append(r.duration_ms)
            WORKER_VIEW.pop(r.request_id, None)
            if not r.ok or r.cold:
                raise HarnessError(f"warm invoke of {name} failed or was cold: {r}")
        # retire the worker as the idle reaper does, and wait until its process is gone
        pids = [w.pid for w in pool.workers]
        for w in list(pool.workers):
            w.close()
        for pid in pids:
            await _gone(pid)
        t_end = time.monotonic() + 3.0
        while pool.workers and time.monotonic() < t_end:
            await asyncio.sleep(0.001)
        if pool.workers:
            raise HarnessError(f"function {name}: closed worker still listed after 3 s")
        done += 1
    return done


# -- fresh interpreter -----------------------------------------------------------------

def spawn_samples(argv: list[str], n: int, env: dict[str, str], deadline: float,
                  out: list[float], check: bool) -> int:
    import subprocess

    done = 0
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, env=env, timeout=30)
        dt = (time.perf_counter() - t0) * 1000.0
        if proc.returncode != 0:
            raise HarnessError(f"{argv[:2]} exited {proc.returncode}: {proc.stderr[-500:]!r}")
        if check:
            result = json.loads(proc.stdout)
            if result["echo"] != json.loads(PAYLOAD):
                raise HarnessError(f"fresh interpreter printed {proc.stdout!r}")
        out.append(dt)
        done += 1
    return done


# -- the run -------------------------------------------------------------------------------

def new_bucket() -> dict[str, list]:
    return {"cold_ms": [], "init_ms": [], "cold_duration_ms": [], "warm_ms": [],
            "warm_duration_ms": [], "misreported_warm": []}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from squall.runtime.runtime import Runtime

    py = str(VENV_PYTHON)
    pycache = tempfile.mkdtemp(prefix="squall-bench-pycache-")
    env = clean_env(PYTHONPYCACHEPREFIX=pycache)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # let the fresh interpreter cache bytecode
    fresh_argv = [py, "-c", RUNNER, PAYLOAD]
    # warm the bytecode cache and the page cache for every peer command
    for _ in range(3):
        spawn_samples(fresh_argv, 1, env, float("inf"), [], check=True)
        for ref in REFERENCES.values():
            spawn_samples([py, *ref], 1, env, float("inf"), [], check=False)

    observe_worker_frames()
    rt = Runtime(str(APP_FILE))
    t0 = time.perf_counter()
    await rt.start()
    zygote_boot_ms = (time.perf_counter() - t0) * 1000.0
    names = rt.function_names()
    if len(names) != FUNCTIONS:
        raise HarnessError(f"expected {FUNCTIONS} functions, the app has {len(names)}")

    reps = args.reps
    per_rep_sq = -(-args.n_squall // reps)
    per_rep_fresh = -(-args.n_fresh // reps)
    per_rep_ref = -(-args.n_ref // reps) if args.n_ref else 0
    deadline = time.monotonic() + args.max_seconds
    sq: dict[str, list] = new_bucket()
    fresh: list[float] = []
    refs: dict[str, list[float]] = {k: [] for k in REFERENCES}
    per_rep: list[dict[str, Any]] = []
    cursor = 0
    try:
        # one untimed cold start per function family member is not needed; do a few to
        # fault in the supervisor's code paths
        await squall_samples(rt, names, 0, 3, 1, float("inf"),
                             new_bucket())
        cursor = 3
        for rep in range(reps):
            order = ["squall", "fresh"] if rep % 2 == 0 else ["fresh", "squall"]
            for attempt in range(args.retries + 1):
                rep_sq = new_bucket()
                rep_fresh: list[float] = []
                rep_refs: dict[str, list[float]] = {k: [] for k in REFERENCES}
                noise = NoiseWindow()
                noise.start()
                for side in order:
                    if side == "squall":
                        cursor += await squall_samples(rt, names, cursor, per_rep_sq, args.warm,
                                                       deadline, rep_sq)
                    else:
                        spawn_samples(fresh_argv, per_rep_fresh, env, deadline, rep_fresh, True)
                for label, ref in REFERENCES.items():
                    if per_rep_ref:
                        spawn_samples([py, *ref], per_rep_ref, env, deadline, rep_refs[label],
                                      False)
                other_pct = noise.stop()["other_cpu_pct"]
                if (other_pct <= args.max_other or attempt == args.retries
                        or time.monotonic() > deadline):
                    break
                log(f"rep {rep + 1}: other processes used {other_pct:.1f}% of the box; "
                    "discarding it and running it again")
                wait_quiet(60)
            for k in sq:
                sq[k].extend(rep_sq[k])
            fresh.extend(rep_fresh)
            for k in refs:
                refs[k].extend(rep_refs[k])
            r = {
                "rep": rep, "order": order, "attempts": attempt + 1,
                "n_squall": len(rep_sq["cold_ms"]), "n_fresh": len(rep_fresh),
                "squall_p50_ms": pct(rep_sq["cold_ms"], 50), "fresh_p50_ms": pct(rep_fresh, 50),
                "other_cpu_pct": other_pct, "noisy": other_pct > args.max_other,
            }
            r["ratio_p50"] = ratio(r["squall_p50_ms"], r["fresh_p50_ms"])
            per_rep.append(r)
            log(f"rep {rep + 1}/{reps}: squall p50 {r['squall_p50_ms']:.2f} ms "
                f"(n={r['n_squall']}), fresh p50 {r['fresh_p50_ms']:.1f} ms "
                f"(n={r['n_fresh']}), ratio {r['ratio_p50']:.4f}, other CPU {other_pct:.1f}%")
            if time.monotonic() > deadline:
                log("time budget reached; stopping early")
                break
    finally:
        await rt.stop()
        shutil.rmtree(pycache, ignore_errors=True)

    s_cold = summary(sq["cold_ms"])
    s_fresh = summary(fresh)
    return {
        "zygote_boot_ms": zygote_boot_ms,
        "squall": {
            "cold_end_to_end_ms": s_cold,
            "init_ms": summary(sq["init_ms"]),
            "first_invocation_duration_ms": summary(sq["cold_duration_ms"]),
            "warm_end_to_end_ms": summary(sq["warm_ms"]),
            "warm_invocation_duration_ms": summary(sq["warm_duration_ms"]),
            "cold_reported_as_warm": len(sq["misreported_warm"]),
        },
        "fresh_interpreter_ms": s_fresh,
        "references_ms": {k: summary(v) for k, v in refs.items()},
        "ratios_squall_over_fresh": {
            "p50": ratio(s_cold["p50"], s_fresh["p50"]),
            "p90": ratio(s_cold["p90"], s_fresh["p90"]),
            "p99": ratio(s_cold["p99"], s_fresh["p99"]),
            "p50_median_of_reps": median(r["ratio_p50"] for r in per_rep),
            "p50_worst_rep": max((r["ratio_p50"] for r in per_rep), default=float("nan")),
        },
        "per_rep": per_rep,
        "fresh_command": fresh_argv,
    }


def report(res: dict[str, Any]) -> dict[str, Any]:
    sq = res["squall"]
    fresh = res["fresh_interpreter_ms"]
    rows = [
        ["Squall cold start, invoke -> result", sq["cold_end_to_end_ms"]],
        ["  of which worker init (fork req -> READY)", sq["init_ms"]],
        ["  first invocation's handler duration", sq["first_invocation_duration_ms"]],
        ["fresh interpreter (import coldmod, call, print)", fresh],
    ]
    rows += [[f"  ref: {k}", v] for k, v in res["references_ms"].items()]
    rows += [["Squall warm invoke (same worker again)", sq["warm_end_to_end_ms"]],
             ["  warm handler duration", sq["warm_invocation_duration_ms"]]]
    print_table(
        "Cold start (ms)",
        ["path", "n", "p50", "p90", "p99", "mean", "min", "max"],
        [[name, s["n"], s["p50"], s["p90"], s["p99"], s["mean"], s["min"], s["max"]]
         for name, s in rows],
    )
    r = res["ratios_squall_over_fresh"]
    print_table(
        "Squall / fresh interpreter",
        ["ratio", "p50", "p90", "p99", "p50 median of reps", "p50 worst rep"],
        [["Squall cold / fresh", f"{r['p50']:.4f} (1/{1 / r['p50']:.0f})",
          f"{r['p90']:.4f}", f"{r['p99']:.4f}", f"{r['p50_median_of_reps']:.4f}",
          f"{r['p50_worst_rep']:.4f}"]],
    )
    n_mis = sq["cold_reported_as_warm"]
    print(f"\nSquall's own InvocationResult said cold=False (init_ms=None) for {n_mis} of "
          f"{sq['cold_end_to_end_ms']['n']} cold starts (new worker per sample; init_ms above "
          "is the worker's own figure).")
    print(f"zygote boot: {res['zygote_boot_ms']:.1f} ms (once per app version)")
    others = [r["other_cpu_pct"] for r in res["per_rep"]]
    if others:
        print(f"other processes' CPU during the reps: {min(others):.1f}-{max(others):.1f}% of "
              "the box (noise indicator)")
    p50 = sq["cold_end_to_end_ms"]["p50"]
    targets = {
        "p50 ratio <= 1/20": {"value": r["p50"], "met": r["p50"] <= TARGET_RATIO},
        "p50 ratio <= 1/20 in every rep": {"value": r["p50_worst_rep"],
                                           "met": r["p50_worst_rep"] <= TARGET_RATIO},
        "Squall p50 < 5 ms": {"value": p50, "met": p50 < TARGET_P50_MS},
    }
    print_table("Targets", ["target", "measured", "met"],
                [[k, f"{v['value']:.4f}", "yes" if v["met"] else "NO"] for k, v in targets.items()])
    return targets


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="interleaved reps (>= 3)")
    ap.add_argument("--n-squall", type=int, default=250, help="Squall cold samples in total")
    ap.add_argument("--n-fresh", type=int, default=125, help="fresh-interpreter samples")
    ap.add_argument("--n-ref", type=int, default=50, help="samples per reference command")
    ap.add_argument("--warm", type=int, default=5, help="warm invokes after each cold one")
    ap.add_argument("--duration", "--max-seconds", dest="max_seconds", type=float, default=300,
                    help="time budget for the measured loops, seconds")
    ap.add_argument("--quick", action="store_true", help="a smoke test: 3 reps, few samples")
    ap.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop",
                    help="the supervisor's event loop (squall run uses uvloop)")
    ap.add_argument("--max-other", type=float, default=15.0, metavar="PCT",
                    help="a rep during which other processes used more than PCT%% of the box "
                         "is discarded and run again (up to --retries times)")
    ap.add_argument("--retries", type=int, default=3)
    ap.add_argument("--src-ref", default=None, metavar="COMMIT",
                    help="measure Squall as of this git commit (git archive into a temporary "
                         "directory) instead of the working tree")
    ap.add_argument("--no-snapshot", action="store_true",
                    help="import Squall where Python finds it (src/, or PYTHONPATH) instead "
                         "of from a copy of src/ taken at the start (other engineers may edit "
                         "src/ during a run)")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="first wait up to S seconds for the box to be under 15%% CPU")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.n_squall, args.n_fresh, args.n_ref = 3, 30, 15, 6
        args.max_seconds = min(args.max_seconds, 60)
    if args.reps < 1:
        ap.error("--reps must be >= 1")

    snapshot = None if args.no_snapshot and not args.src_ref else snapshot_src(args.src_ref)
    try:
        return measure_and_report(args, snapshot)
    finally:
        drop_snapshot(snapshot)


def measure_and_report(args: argparse.Namespace, snapshot: Path | None) -> int:
    code, live_src_at_start, before = begin_measurement(args, snapshot)
    t0 = time.time()
    try:
        if args.loop == "uvloop":
            import uvloop

            res = uvloop.run(run(args))
        else:
            res = asyncio.run(run(args))
    except HarnessError as exc:
        log(f"harness failure: {exc}")
        return 2
    after = idle_check()
    targets = report(res)
    data = {
        "benchmark": "cold_start",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t0)),
        "elapsed_s": round(time.time() - t0, 1),
        "args": vars(args),
        "machine": machine_info(),
        "squall_code": code,
        # src/ edited by someone while this ran (harmless when a snapshot was measured)
        "src_changed_during_run": src_fingerprint(REPO / "src")["src_sha1"] != live_src_at_start,
        "load_before": before,
        "load_after": after,
        "results": res,
        "targets": targets,
    }
    path = write_results("cold_start", data)
    log(f"load after: loadavg {after['loadavg']}, CPU busy {after['busy_pct']}%")
    log(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
