"""Where does a warm `Runtime.invoke` round trip go? CPU split and py-spy samples.

Runs sequential `Runtime.invoke("noop", "event", "null")` calls on uvloop (as
warm_http.py's dispatch part does) for --seconds, and reports per call: wall time, the
supervisor's CPU (this process) and the worker's CPU (psutil), plus the handler duration
the worker reports. With --py-spy it samples both processes meanwhile and prints the top
frames (py-spy's own overhead then inflates the wall times).

    .venv/bin/python bench/profile_dispatch.py --seconds 4 --py-spy
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import psutil

from _common import APPS_DIR, RESULTS_DIR, drop_snapshot, log, pct, snapshot_src
from profile_http import PY_SPY, analyse


async def run(args: argparse.Namespace) -> None:
    from squall.runtime.runtime import Runtime

    rt = Runtime(str(APPS_DIR / "echoapp.py"))
    await rt.start()
    spies = []
    try:
        for _ in range(500):
            await rt.invoke("noop", "event", "null")
        worker = rt.pools["noop"].workers[0]
        wproc = psutil.Process(worker.pid)
        if args.pin != "none":
            os.sched_setaffinity(0, {0})
            os.sched_setaffinity(worker.pid, {0} if args.pin == "same" else {1})
        if args.py_spy:
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%dT%H%M%S")
            for name, pid in (("supervisor", os.getpid()), ("worker", worker.pid)):
                out = RESULTS_DIR / f"profile-dispatch-{name}-{stamp}.txt"
                spies.append((name, out, subprocess.Popen(
                    [str(PY_SPY), "record", "--pid", str(pid), "--duration",
                     str(int(args.seconds)), "--rate", "500", "--format", "raw",
                     "--nonblocking", "-o", str(out)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
            await asyncio.sleep(0.5)
        wall: list[float] = []
        durations: list[float] = []
        c0, w0 = time.process_time(), sum(wproc.cpu_times()[:2])
        t_end = time.monotonic() + args.seconds
        t_start = time.perf_counter()
        while time.monotonic() < t_end:
            t0 = time.perf_counter_ns()
            r = await rt.invoke("noop", "event", "null")
            wall.append((time.perf_counter_ns() - t0) / 1000)
            durations.append(r.duration_ms * 1000)
        elapsed = time.perf_counter() - t_start
        c1, w1 = time.process_time(), sum(wproc.cpu_times()[:2])
        n = len(wall)
        print(f"{n} calls in {elapsed:.2f} s: wall p50 {pct(wall, 50):.1f} us, "
              f"p99 {pct(wall, 99):.1f} us, mean {elapsed / n * 1e6:.1f} us")
        print(f"CPU per call: supervisor {1e6 * (c1 - c0) / n:.1f} us, "
              f"worker {1e6 * (w1 - w0) / n:.1f} us; "
              f"handler duration (worker-reported) p50 {pct(durations, 50):.1f} us")
    finally:
        await rt.stop()
    for name, out, spy in spies:
        try:
            spy.wait(args.seconds + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)
        analyse(out, f"dispatch {name}", args.top)
        log(f"collapsed stacks: {out}")


def micro() -> None:
    """Per-call cost of the pure-Python pieces on each side of one warm invocation."""
    import asyncio as aio
    import io
    import resource
    import timeit
    import uuid

    from squall.app import App
    from squall.runtime import adapters, protocol as P
    from squall.runtime.pool import Pending
    from squall.types import Context, InvocationResult

    app = App("micro")

    @app.function()
    def noop(event, ctx):
        return None

    fn = app.functions["noop"]
    loop = aio.new_event_loop()
    result_frame = P.pack([P.RESULT, 1, "ok", "null", None, None, None, 0.006, 18, False, None, ""])
    unp = P.unpacker()
    buf = io.StringIO()

    def unpack_result() -> None:
        unp.feed(result_frame)
        for _ in unp:
            pass

    def call_at_cancel() -> None:
        loop.call_at(loop.time() + 3.0, int).cancel()

    def drain_like() -> None:  # Worker._drain_logs on an empty log: 2 flushes and an fstat
        sys.stdout.flush()
        sys.stderr.flush()
        os.fstat(1).st_size

    cases = {
        "supervisor: str(uuid.uuid4()) (request id)": lambda: str(uuid.uuid4()),
        "supervisor: future + Pending()": lambda: Pending("r", "event", "null", loop.create_future()),
        "supervisor: pack INVOKE frame": lambda: P.pack([P.INVOKE, 1, "r" * 36, "event", "null"]),
        "supervisor: loop.call_at + cancel (timeout timer)": call_at_cancel,
        "supervisor: unpack RESULT frame": unpack_result,
        "supervisor: InvocationResult(...) (frozen dataclass, 16 fields)": lambda: InvocationResult(
            request_id="r", function="noop", ok=True, value="null", error_type=None,
            error_message=None, stack_trace=None, started_at=1.0, duration_ms=0.01, memory_mb=128,
            max_memory_mb=18, cold=False, init_ms=None, logs="", status="ok"),
        "worker: Context(...)": lambda: Context(request_id="r", function_name="noop", app_name="a",
                                                memory_mb=128, timeout_s=3.0, cold_start=False),
        "worker: adapters.call(noop)": lambda: adapters.call(fn, "event", "null", None, lambda: loop),
        "worker: resource.getrusage": lambda: resource.getrusage(resource.RUSAGE_SELF),
        "worker: _drain_logs-like flush x2 + fstat": drain_like,
        "worker: pack RESULT frame": lambda: P.pack([P.RESULT, 1, "ok", "null", None, None, None,
                                                     0.006, 18, False, None, ""]),
    }
    print(f"{'piece':66s} us/call")
    for name, fn_ in cases.items():
        n = 20000
        t = min(timeit.repeat(fn_, number=n, repeat=5)) / n * 1e6
        print(f"{name:66s} {t:6.2f}")
    loop.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--py-spy", action="store_true")
    ap.add_argument("--pin", choices=["none", "same", "cross"], default="none",
                    help="supervisor on CPU 0 and the worker on CPU 0 (same) or 1 (cross)")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--micro", action="store_true",
                    help="only time the pure-Python pieces of one invocation (timeit)")
    args = ap.parse_args()
    if args.py_spy and not PY_SPY.exists():
        ap.error(f"{PY_SPY} not found")
    snapshot = snapshot_src()
    try:
        if args.micro:
            micro()
            return 0
        import uvloop

        uvloop.run(run(args))
    finally:
        drop_snapshot(snapshot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
