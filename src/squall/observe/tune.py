"""Right-sizing: run a function at several memory sizes and recommend the cheapest one
that meets a latency bound (`squall tune APP FUNCTION --payload … --memory 128,…`).

Lambda gives a function CPU in proportion to its memory: one full vCPU at 1,769 MB
(cost.cpu_share). Here every size runs in a real worker (the zygote forks it as usual)
whose CPU is limited to that share by a duty cycle: a thread in this process lets the
worker run for share × PERIOD_S, then stops it with SIGSTOP for the rest of the period,
and SIGCONT again. The control groups (cgroup v2 `cpu.max`) would do the same in the
kernel, but need a writable delegated cgroup, which an unprivileged user (and this
project's CI) does not have; the duty cycle needs nothing. Its error, measured with a
CPU-bound loop (docs/cost.md), is a few per cent of the target share at a 10 ms period;
it adds up to one period of latency per invocation and overhead on very short ones.

Durations come from the worker's own clock (wall time, stopped time included, as the
billed duration on a throttled Lambda would). The worker's memory limit stays the
declared one (the zygote's configuration); the size under test sets the CPU share and
the price. Pure decision logic (`recommend`) is separate and tested on its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from .cost import FULL_VCPU_MB, Pricing, cpu_share
from .numbers import percentile

PERIOD_S = 0.01
MAX_RUNS = 100


class TuneError(ValueError):
    """The tuner cannot do what was asked (a bad size list, an unknown function, …)."""


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(s.strip().removesuffix("MB")) for s in text.split(",") if s.strip()})
    except ValueError:
        raise TuneError(f"--memory: {text!r} is not a list of sizes in MB "
                        "(e.g. 128,256,512,1024)") from None
    if not sizes:
        raise TuneError("--memory: give at least one size")
    bad = [s for s in sizes if not 128 <= s <= 10240]
    if bad:
        raise TuneError(f"--memory: sizes must be 128..10240 MB, got {bad}")
    return sizes


class DutyCycle:
    """Keep processes at `share` of one CPU: run share × period, stop for the rest."""

    def __init__(self, pids: list[int], share: float, period_s: float = PERIOD_S) -> None:
        self.pids = list(pids)
        self.share = share
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="squall-tune-duty",
                                        daemon=True)

    def _signal(self, sig: int) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _run(self) -> None:
        on, off = self.share * self.period_s, (1.0 - self.share) * self.period_s
        try:
            while not self._stop.is_set():
                self._signal(signal.SIGCONT)
                if self._stop.wait(on):
                    break
                self._signal(signal.SIGSTOP)
                time.sleep(off)  # stopped: never return here with the process stopped
        finally:
            self._signal(signal.SIGCONT)

    def __enter__(self) -> DutyCycle:
        if self.share < 1.0:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._signal(signal.SIGCONT)


@dataclass(frozen=True, slots=True)
class SizeResult:
    memory_mb: int
    cpu_share: float
    runs: int
    errors: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    usd_per_invocation: float
    usd_per_million: float

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}


def measure(memory_mb: int, durations: list[float], errors: int,
            pricing: Pricing) -> SizeResult:
    d = sorted(durations) or [0.0]
    mean = sum(d) / len(d)
    usd = sum(pricing.invocation_usd(x, memory_mb) for x in d) / len(d)
    return SizeResult(memory_mb, cpu_share(memory_mb), len(durations), errors,
                      percentile(d, 50) or 0.0, percentile(d, 95) or 0.0, mean, usd, usd * 1e6)


def recommend(results: list[SizeResult], latency_ms: float | None) -> tuple[SizeResult | None, str]:
    """The cheapest size whose p95 meets `latency_ms` (None: the cheapest size), with
    the reason in words. Sizes with errors are never recommended."""
    clean = [r for r in results if not r.errors]
    if not clean:
        return None, "every size failed: see the errors above"
    within = [r for r in clean if latency_ms is None or r.p95_ms <= latency_ms]
    if not within:
        fastest = min(clean, key=lambda r: r.p95_ms)
        return fastest, (f"no size meets p95 <= {latency_ms:g} ms; the fastest is "
                         f"{fastest.memory_mb} MB at {fastest.p95_ms:.1f} ms")
    best = min(within, key=lambda r: (r.usd_per_invocation, r.p95_ms))
    bound = f" with p95 <= {latency_ms:g} ms" if latency_ms is not None else ""
    return best, (f"{best.memory_mb} MB is the cheapest size{bound}: "
                  f"${best.usd_per_million:.2f} per million, p95 {best.p95_ms:.1f} ms")


async def tune(app_ref: str, function: str, payload: Any, sizes: list[int], *,
               runs: int = 5, latency_ms: float | None = None,
               pricing: Pricing | None = None,
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run `function` `runs` times at every size (after one warm-up) in a real worker."""
    from ..runtime.runtime import Runtime  # the tuner drives a runtime of its own

    if not 1 <= runs <= MAX_RUNS:
        raise TuneError(f"--runs must be 1..{MAX_RUNS}, got {runs}")
    pricing = pricing or Pricing()
    runtime = Runtime(app_ref, provision=False, max_workers=1)
    await runtime.start()
    results: list[SizeResult] = []
    failures: list[str] = []
    try:
        cfg = runtime.config(function)  # raises UnknownFunction
        if cfg.kind == "http":
            raise TuneError(f"{function} is an HTTP function; tune runs functions invoked "
                            "with an event (app.invoke): tune the function it calls")
        body = json.dumps(payload)
        done = 0
        for size in sizes:
            pool = runtime.pools[function]
            pool.cfg = replace(cfg, memory_mb=size)
            warm = await runtime.invoke(function, "event", body)  # a warm worker to throttle
            if not warm.ok:
                failures.append(f"{size} MB: {warm.error_type}: {warm.error_message}")
            pids = [w.pid for w in pool.workers if w.pid]
            durations: list[float] = []
            errors = 0 if warm.ok else 1
            with DutyCycle(pids, cpu_share(size)):
                for _ in range(runs):
                    r = await runtime.invoke(function, "event", body)
                    if r.ok:
                        durations.append(r.duration_ms)
                    else:
                        errors += 1
                        failures.append(f"{size} MB: {r.error_type}: {r.error_message}")
                    done += 1
                    if progress is not None:
                        progress(done, runs * len(sizes))
            results.append(measure(size, durations, errors, pricing))
    finally:
        await runtime.stop()
    best, reason = recommend(results, latency_ms)
    return {"function": function, "runs": runs, "latency_ms": latency_ms,
            "full_vcpu_mb": FULL_VCPU_MB, "method": f"duty cycle, {PERIOD_S * 1000:g} ms period",
            "sizes": [r.to_dict() for r in results],
            "recommended_mb": best.memory_mb if best else None, "reason": reason,
            "errors": failures[:20]}


def measured_share(share: float, seconds: float = 1.0) -> float:
    """The CPU share a busy child gets under DutyCycle (docs/cost.md's measurement)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child spins until killed
        while True:
            pass
    try:
        start = time.monotonic()
        with DutyCycle([pid], share):
            time.sleep(seconds)
        elapsed = time.monotonic() - start
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK") / elapsed
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def run_tune(app_ref: str, function: str, payload: Any, sizes: list[int],
             **kw: Any) -> dict[str, Any]:
    return asyncio.run(tune(app_ref, function, payload, sizes, **kw))
