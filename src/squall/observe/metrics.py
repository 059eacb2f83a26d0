"""Metrics: a Prometheus registry per running app, and the same figures over time from
the invocation log.

Live (`Metrics`, served at `/metrics` by the supervisor):

    squall_invocations_total{function,trigger}      squall_errors_total{function,status}
    squall_throttles_total{function}                 squall_cold_starts_total{function}
    squall_duration_seconds{function}   (histogram)  squall_init_duration_seconds{function}
    squall_cost_usd_total{function}                  squall_concurrent_executions{function}
    squall_queue_messages{queue,state}               squall_queue_oldest_message_age_seconds{queue}
    squall_dlq_messages{queue}                       squall_queue_retried_messages{queue}
    squall_stream_iterator_age_seconds{stream,function,shard}
    squall_workflow_executions{workflow,status}

Counters and histograms move with every result (`Metrics.observe`, called by the runtime
after the invocation log's Recorder.add: plain numbers, no locks, no I/O) and become
metric families when scraped (`collect`). Gauges are read when scraped (`refresh`,
squall.observe.live): queue stats, pool sizes, workflow counts.

Over time (`series`, `function_summary`: the dashboard and `squall metrics`): per
function per bucket (a minute unless told) count, errors, throttles, p50/p99 duration,
cold starts and cost, aggregated from `store.invocation_window` rows. The gauges (queue
depth, oldest message age, DLQ size, stream iterator age, workflow counts) over time:
`gauge_series`, from the samples squall.observe.gauges stores.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from typing import Any, Iterator

from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for the route)
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from .cost import Pricing
from .numbers import percentile

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0, 300.0, 900.0)
ERROR_STATUSES = frozenset({"error", "timeout", "memory", "crash", "exit"})


class _Function:
    """One function's live figures: plain numbers, turned into metric families when
    scraped (prometheus-client's own Counter/Histogram take a lock per call)."""

    __slots__ = ("calls", "errors", "throttles", "cold", "cost", "dur", "dur_sum", "init",
                 "init_sum")

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}  # trigger -> count
        self.errors: dict[str, int] = {}  # status -> count
        self.throttles = self.cold = 0
        self.cost = self.dur_sum = self.init_sum = 0.0
        self.dur = [0] * (len(DURATION_BUCKETS) + 1)  # the last one: over every bound
        self.init = [0] * (len(DURATION_BUCKETS) + 1)


def _buckets(counts: list[int]) -> list[tuple[str, float]]:
    out, total = [], 0
    for bound, n in zip((*map(str, DURATION_BUCKETS), "+Inf"), counts):
        total += n
        out.append((bound, total))
    return out


class Metrics:
    """One app's Prometheus registry (not the global one: tests build many apps)."""

    def __init__(self, app: str, *, pricing: Pricing | None = None) -> None:
        self.app = app
        self.pricing = pricing or Pricing()
        self.functions: dict[str, _Function] = {}
        r = self.registry = CollectorRegistry(auto_describe=True)
        r.register(self)  # collect(): the per-result figures below
        self.concurrent = Gauge("squall_concurrent_executions", "Invocations running now",
                                ["function"], registry=r)
        self.workers = Gauge("squall_workers", "Warm workers", ["function"], registry=r)
        self.queue = Gauge("squall_queue_messages", "Messages in a queue, by state",
                           ["queue", "state"], registry=r)
        self.oldest = Gauge("squall_queue_oldest_message_age_seconds",
                            "Age of the oldest visible message", ["queue"], registry=r)
        self.dlq = Gauge("squall_dlq_messages", "Messages in a dead-letter queue", ["queue"],
                         registry=r)
        self.retried = Gauge("squall_queue_retried_messages",
                             "Messages waiting in a queue after at least one failed delivery",
                             ["queue"], registry=r)
        self.stream_age = Gauge("squall_stream_iterator_age_seconds",
                                "Age of the oldest unprocessed record, per consumer and shard",
                                ["stream", "function", "shard"], registry=r)
        self.workflows = Gauge("squall_workflow_executions", "Workflow executions by status",
                               ["workflow", "status"], registry=r)

    def observe(self, result: Any, kind: str) -> None:
        """Count one InvocationResult (on the event loop, for every result: no locks)."""
        f = self.functions.get(result.function)
        if f is None:
            f = self.functions[result.function] = _Function()
        status = result.status
        if status == "throttled":
            f.throttles += 1
            return
        f.calls[kind] = f.calls.get(kind, 0) + 1
        seconds = result.duration_ms / 1000.0
        f.dur[bisect_left(DURATION_BUCKETS, seconds)] += 1
        f.dur_sum += seconds
        f.cost += self.pricing.invocation_usd(result.duration_ms, result.memory_mb, status)
        if status != "ok":
            f.errors[status] = f.errors.get(status, 0) + 1
        if result.cold:
            f.cold += 1
            if result.init_ms is not None:
                init = result.init_ms / 1000.0
                f.init[bisect_left(DURATION_BUCKETS, init)] += 1
                f.init_sum += init

    def collect(self) -> Iterator[Any]:
        """The per-result figures as metric families (prometheus-client's collector API)."""
        calls = CounterMetricFamily("squall_invocations", "Invocations that finished",
                                    labels=["function", "trigger"])
        errors = CounterMetricFamily("squall_errors", "Invocations that failed, by how",
                                     labels=["function", "status"])
        throttles = CounterMetricFamily("squall_throttles", "Invocations refused: no "
                                        "concurrency left", labels=["function"])
        cold = CounterMetricFamily("squall_cold_starts", "Invocations that waited for a new "
                                   "worker's init", labels=["function"])
        cost = CounterMetricFamily("squall_cost_usd", "Cost at the configured prices",
                                   labels=["function"])
        dur = HistogramMetricFamily("squall_duration_seconds", "Handler duration",
                                    labels=["function"])
        init = HistogramMetricFamily("squall_init_duration_seconds", "Cold-start init",
                                     labels=["function"])
        for name, f in list(self.functions.items()):
            for trigger, n in list(f.calls.items()):
                calls.add_metric([name, trigger], n)
            for status, n in list(f.errors.items()):
                errors.add_metric([name, status], n)
            throttles.add_metric([name], f.throttles)
            cold.add_metric([name], f.cold)
            cost.add_metric([name], f.cost)
            dur.add_metric([name], _buckets(f.dur), f.dur_sum)
            if f.cold:
                init.add_metric([name], _buckets(f.init), f.init_sum)
        yield from (calls, errors, throttles, cold, cost, dur, init)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


# -- over time, from the store -----------------------------------------------------------


def _aggregate(rows: list[tuple], pricing: Pricing) -> dict[str, Any]:
    durations = sorted(r[2] for r in rows if r[7] != "throttled")
    inits = [r[6] for r in rows if r[5] and r[6] is not None]
    return {
        "count": len(durations),
        "errors": sum(1 for r in rows if r[7] in ERROR_STATUSES),
        "throttles": sum(1 for r in rows if r[7] == "throttled"),
        "cold_starts": sum(1 for r in rows if r[5]),
        "p50_ms": percentile(durations, 50),
        "p99_ms": percentile(durations, 99),
        "max_ms": durations[-1] if durations else None,
        "init_p50_ms": percentile(sorted(inits), 50),
        "cost_usd": sum(pricing.invocation_usd(r[2], r[4], r[7]) for r in rows),
    }


def series(store: Any, app: str, *, since: float, until: float | None = None,
           function: str | None = None, bucket_s: int = 60,
           pricing: Pricing | None = None) -> list[dict[str, Any]]:
    """Per function per bucket: {"function", "t" (bucket start), "count", "errors",
    "throttles", "cold_starts", "p50_ms", "p99_ms", "max_ms", "init_p50_ms",
    "cost_usd"}, ordered by function then time. Buckets without traffic are left out."""
    if bucket_s < 1:
        raise ValueError(f"bucket_s must be >= 1 second, got {bucket_s}")
    until = time.time() if until is None else until
    groups: dict[tuple[str, float], list[tuple]] = {}
    for row in store.invocation_window(app, since, until, function):
        t = math.floor(row[1] / bucket_s) * bucket_s
        groups.setdefault((row[0], t), []).append(row)
    pricing = pricing or Pricing()
    return [{"function": fn, "t": t, **_aggregate(rows, pricing)}
            for (fn, t), rows in sorted(groups.items())]


def function_summary(store: Any, app: str, *, since: float, until: float | None = None,
                     pricing: Pricing | None = None) -> list[dict[str, Any]]:
    """Per function over [since, until): the same figures as `series`, plus "error_rate"."""
    until = time.time() if until is None else until
    groups: dict[str, list[tuple]] = {}
    for row in store.invocation_window(app, since, until):
        groups.setdefault(row[0], []).append(row)
    pricing = pricing or Pricing()
    out = []
    for fn, rows in sorted(groups.items()):
        agg = _aggregate(rows, pricing)
        agg["error_rate"] = agg["errors"] / agg["count"] if agg["count"] else 0.0
        out.append({"function": fn, **agg})
    return out


MAX_GAUGE_BUCKETS = 10_000  # points per series one read may ask for


def gauge_series(store: Any, app: str, name: str, *, since: float, until: float | None = None,
                 step: float = 60.0, subject: str | None = None) -> dict[str, Any]:
    """A stored gauge over [since, until) (squall.observe.gauges samples it): {"name",
    "t": [bucket starts], "series": {subject: [value per bucket]}}. A bucket holds the
    largest sample in it (a depth's peak shows even when sampled more often than the
    step); a bucket with no sample is None (the server was not running, or not yet)."""
    from .gauges import NAMES  # the names the sampler writes

    if name not in NAMES:
        raise ValueError(f"no stored gauge {name!r}; the gauges are: {', '.join(NAMES)}")
    until = time.time() if until is None else until
    if step <= 0 or not math.isfinite(step):
        raise ValueError(f"step must be a positive number of seconds, got {step}")
    if until <= since:
        raise ValueError(f"until ({until}) must be after since ({since})")
    n = math.ceil((until - since) / step)
    if n > MAX_GAUGE_BUCKETS:
        raise ValueError(f"{n} buckets of {step:g} s from since to until: at most "
                         f"{MAX_GAUGE_BUCKETS}; use a larger step or a shorter window")
    out: dict[str, list[float | None]] = {}
    for subj, at, value in store.gauge_samples(app, name, since, until, subject):
        points = out.setdefault(subj, [None] * n)
        i = min(n - 1, int((at - since) // step))
        points[i] = value if points[i] is None else max(points[i], value)
    return {"name": name, "t": [since + i * step for i in range(n)], "series": out}
