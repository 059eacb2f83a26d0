"""What tracing and metrics cost on the warm HTTP path: `squall run` with both on (the
default) against the same with SQUALL_TRACING=0 SQUALL_METRICS=0, side by side.
`--trace-all` traces every request (SQUALL_TRACE_SAMPLE=1) instead of the default
sampling (the first 100 new traces each second, then 5 % of the rest).

The same JSON echo as bench/warm_http.py (bench/apps/echoapp.py, POST /echo, wrk with
bench/wrk/post_echo.lua, 127.0.0.1 only), through two servers that stay up for the whole
run. With tracing on every traced request makes two spans (the gateway's server span and
the invocation's), written in batches with the invocation log; with metrics on every result
moves the Prometheus counters and histograms, and /metrics is scraped once a second
during each measured run (what a Prometheus would do, faster). For each rep and
concurrency both configs run back to back in alternating order, each with a wrk warm-up
and a measured run; the throughput ratio on/off is computed inside the rep and the median
over reps reported. Runs during which other processes used more than --max-other % of the
box are repeated (as in warm_http.py). Target: under 10 % throughput loss (ratio >= 0.90).

    .venv/bin/python bench/observe_overhead.py             # 3 reps x c=64,16 (~2 min)
    .venv/bin/python bench/observe_overhead.py --quick     # smoke test (~20 s)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import (APPS_DIR, REPO, free_port, idle_check, log, machine_info, median,
                     print_table, ratio, write_results)
from warm_http import HarnessError, Server, measure

CONFIGS = {"observed": [], "dark": ["env", "SQUALL_TRACING=0", "SQUALL_METRICS=0"]}
TARGET_RATIO = 0.90
SCRAPE_EVERY_S = 1.0


def make(config: str, pin: str, workdir: Path, port: int, trace_all: bool) -> Server:
    prefix = ["taskset", "-c", "0"] if pin == "split" else []
    env = CONFIGS[config] or (["env", "SQUALL_TRACE_SAMPLE=1"] if trace_all else [])
    argv = [*env, *prefix, str(REPO / ".venv" / "bin" / "squall"), "run",
            str(APPS_DIR / "echoapp.py"), "--host", "127.0.0.1", "--port", str(port),
            "--data-dir", str(workdir / f"{config}-data")]
    return Server(config, argv, port, workdir)


class Scraper:
    """GET /metrics every SCRAPE_EVERY_S while a measured run lasts (observed config)."""

    def __init__(self, port: int) -> None:
        self.port, self.count, self.bytes = port, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SCRAPE_EVERY_S):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                self.bytes += len(r.read())
                self.count += 1

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)


def run(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    servers = {c: make(c, args.pin, workdir, free_port(), args.trace_all) for c in CONFIGS}
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + args.max_seconds
    try:
        for s in servers.values():
            s.start()
        for rep in range(args.reps):
            for conns in args.conns:
                order = list(CONFIGS) if rep % 2 == 0 else list(reversed(CONFIGS))
                for attempt in range(args.retries + 1):
                    got = {}
                    for c in order:
                        if c == "observed":
                            with Scraper(servers[c].port) as scraper:
                                got[c] = measure(servers[c], conns, args, args.pin)
                            got[c]["scrapes"] = scraper.count
                        else:
                            got[c] = measure(servers[c], conns, args, args.pin)
                    noisy = max(g["other_cpu_pct"] for g in got.values()) > args.max_other
                    if not noisy or attempt == args.retries:
                        break
                    log(f"rep {rep} c={conns}: other processes used "
                        f"{max(g['other_cpu_pct'] for g in got.values()):.0f} % of the box; again")
                r = ratio(got["observed"]["rps"], got["dark"]["rps"])
                rows.append({"rep": rep, "conns": conns, "noisy": noisy, "ratio": r, **{
                    f"{c}_{k}": got[c][k] for c in CONFIGS
                    for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "cpu_main_us_per_req",
                              "cpu_children_us_per_req", "errors", "other_cpu_pct")},
                    "scrapes": got["observed"]["scrapes"]})
                log(f"rep {rep} c={conns}: observed {got['observed']['rps']:.0f} rps, dark "
                    f"{got['dark']['rps']:.0f} rps, ratio {r:.3f}")
                if time.monotonic() > deadline:
                    log("time budget spent: stopping early")
                    return rows
    finally:
        for s in servers.values():
            s.stop()
    return rows


# -- part 2: the per-request work itself, in this process --------------------------------


def micro(reps: int = 15, n: int = 20000) -> dict[str, float]:
    """Minimum over `reps` of the mean cost (us) of each piece of per-request work: the
    minimum is what the code costs when nothing else steals the CPU, which the HTTP part
    cannot show on a busy box. `span_write` is one span through the log writer's path
    (msgpack, JSON attributes, the SQLite insert), per span, in batches of 600."""
    import msgpack

    from squall.backends.sqlite.store import SqliteStore
    from squall.observe.metrics import Metrics
    from squall.observe.traces import Tracer, enter_span
    from squall.types import HttpResponse, InvocationResult

    def best(fn: Any, count: int = n) -> float:
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(count):
                fn()
            times.append((time.perf_counter() - t0) / count * 1e6)
        return min(times)

    rows: list = []
    sampled = Tracer("bench", rows.append)
    unsampled = Tracer("bench", rows.append, sample=0.0)
    tp, _ = enter_span(None)
    result = InvocationResult(request_id="r" * 36, function="echo", ok=True,
                              value=HttpResponse(200, [], b"{}"), started_at=time.time(),
                              duration_ms=0.4, memory_mb=128, status="ok")
    request = type("R", (), {"method": "POST", "route": "POST /echo", "path": "/echo",
                             "request_id": "r" * 36})()
    metrics = Metrics("bench")

    def traced(tracer: Tracer) -> Any:
        def one() -> None:
            own, parent = tracer.enter(None)
            inner, p2 = enter_span(own)
            tracer.gateway(own, parent, request, "echo", 0.0, result)
            tracer.invocation(inner, p2, result, "http")
        return one

    out = {"enter_span_new": best(lambda: enter_span(None)),
           "enter_span_child": best(lambda: enter_span(tp)),
           "request_unsampled": best(traced(unsampled)),
           "request_sampled": best(traced(sampled)),
           "metrics_observe": best(lambda: metrics.observe(result, "http"))}
    rows.clear()
    traced(sampled)()
    batch = rows * 300  # 600 spans: 100 ms of 3,000 rps, all traced
    with tempfile.TemporaryDirectory() as d:
        store = SqliteStore(Path(d) / "squall.db")
        batches = iter([[(enter_span(None)[0][3:35], *r[1:]) for r in batch]
                        for _ in range(reps)])  # fresh trace ids, made outside the timing

        def write() -> None:
            store.record_spans(msgpack.unpackb(msgpack.packb({"spans": next(batches)}))["spans"])

        out["span_write"] = best(write, 1) / len(batch)
        store.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--conns", default="64,16")
    ap.add_argument("--pin", default="split", choices=["split", "none"])
    ap.add_argument("--max-other", type=float, default=15.0, metavar="PCT")
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--max-seconds", type=float, default=300)
    ap.add_argument("--quick", action="store_true", help="1 rep, c=64, 1 s warm-up, 3 s runs")
    ap.add_argument("--micro", action="store_true",
                    help="only part 2: the per-request work in this process (~30 s)")
    ap.add_argument("--trace-all", action="store_true",
                    help="trace every request (SQUALL_TRACE_SAMPLE=1) instead of the default "
                         "sampling (100 new traces a second, then 5 %%)")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.conns, args.warmup, args.duration = 1, "64", 1.0, 3.0
    args.conns = [int(c) for c in args.conns.split(",") if c]
    if args.micro:
        m = micro()
        print_table("per-request work, us (minimum of 15 reps)", list(m), [
            [f"{v:.2f}" for v in m.values()]])
        added = m["request_unsampled"] + m["metrics_observe"]
        log(f"added per untraced request: {added:.1f} us; per traced request: "
            f"{m['request_sampled'] + m['metrics_observe'] + 2 * m['span_write']:.1f} us")
        write_results("observe_overhead_micro", {"machine": machine_info(), "micro": m})
        return 0
    if not shutil.which("wrk"):
        ap.error("wrk is not installed (apt-get install wrk)")
    before = idle_check()
    workdir = Path(tempfile.mkdtemp(prefix="squall-bench-observe-"))
    try:
        rows = run(args, workdir)
    except HarnessError as exc:
        log(f"harness failure: {exc}")
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    after = idle_check()
    summary = []
    for conns in args.conns:
        mine = [r for r in rows if r["conns"] == conns]
        if not mine:
            continue
        summary.append({
            "conns": conns, "reps": len(mine), "ratio_median": median(r["ratio"] for r in mine),
            "observed_rps": median(r["observed_rps"] for r in mine),
            "dark_rps": median(r["dark_rps"] for r in mine),
            "observed_p99_ms": median(r["observed_p99_ms"] for r in mine),
            "dark_p99_ms": median(r["dark_p99_ms"] for r in mine),
            "observed_cpu_us": median(r["observed_cpu_us_per_req"] for r in mine),
            "dark_cpu_us": median(r["dark_cpu_us_per_req"] for r in mine),
            "cpu_delta_us": median(r["observed_cpu_us_per_req"] - r["dark_cpu_us_per_req"]
                                   for r in mine),
            "main_delta_us": median(r["observed_cpu_main_us_per_req"]
                                    - r["dark_cpu_main_us_per_req"] for r in mine),
            "other_cpu_pct": max(max(r["observed_other_cpu_pct"], r["dark_other_cpu_pct"])
                                 for r in mine),
            "noisy_reps": sum(r["noisy"] for r in mine)})
    print_table("tracing + metrics on (observed"
                + (", every request traced" if args.trace_all else ", default sampling")
                + ") vs off (dark), warm HTTP echo",
                ["c", "reps", "observed rps", "dark rps", "ratio", "p99 on/off ms",
                 "CPU us/req on/off", "CPU delta (supervisor)", "other CPU max %"],
                [[s["conns"], s["reps"], f"{s['observed_rps']:.0f}", f"{s['dark_rps']:.0f}",
                  f"{s['ratio_median']:.3f}", f"{s['observed_p99_ms']:.2f}/{s['dark_p99_ms']:.2f}",
                  f"{s['observed_cpu_us']:.0f}/{s['dark_cpu_us']:.0f}",
                  f"{s['cpu_delta_us']:+.0f} ({s['main_delta_us']:+.0f})",
                  f"{s['other_cpu_pct']:.0f}"] for s in summary])
    ok = all(s["ratio_median"] >= TARGET_RATIO for s in summary)
    log(f"target: observed/dark throughput >= {TARGET_RATIO} -> {'met' if ok else 'MISSED'}")
    path = write_results("observe_overhead", {
        "machine": machine_info(), "args": {k: v for k, v in vars(args).items()},
        "load_before": before, "load_after": after, "runs": rows, "summary": summary,
        "target_ratio": TARGET_RATIO, "target_met": ok})
    log(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
