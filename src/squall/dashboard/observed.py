"""Figures, traces, alerts and costs for the dashboard, from squall.observe's read APIs
(the ones `squall trace`, `squall alerts` and `squall costs` print).

Imported lazily: a build without one of those modules (or a store without its tables)
shows that page's empty state instead of failing the whole dashboard.
"""

from __future__ import annotations

import importlib
from typing import Any, Sequence

from ..ops import OpsError, not_found

BUCKETS = 30  # points in a function's activity line


def _module(name: str) -> Any:
    try:
        return importlib.import_module(f"squall.observe.{name}")
    except ImportError:
        return None


def _reads(store: Any, method: str) -> bool:
    return callable(getattr(store, method, None))


def _pricing(cost: Any) -> Any:
    """The prices `squall costs` uses (SQUALL_PRICE_* in the environment, or the defaults)."""
    try:
        return cost.Pricing.from_env()
    except ValueError as exc:
        raise OpsError(f"cannot price invocations: {exc}", "unavailable") from None


def function_figures(store: Any, app: str, names: Sequence[str], *, now: float,
                     window_s: float) -> dict[str, dict[str, Any]]:
    """Per function over the last `window_s`: count, rate, errors, p50/p99, cold starts,
    cost (squall.observe.metrics.function_summary) and an activity line (`series`)."""
    mod, cost = _module("metrics"), _module("cost")
    out: dict[str, dict[str, Any]] = {n: _no_figures() for n in names}
    if mod is None or cost is None or not _reads(store, "invocation_window"):
        return out
    since = now - window_s
    for row in mod.function_summary(store, app, since=since, until=now,
                                    pricing=_pricing(cost)):
        if row["function"] in out:
            out[row["function"]].update(
                invocations=row["count"], perMinute=round(row["count"] / (window_s / 60), 3),
                errors=row["errors"], errorRate=row["error_rate"], throttles=row["throttles"],
                p50Ms=row["p50_ms"], p99Ms=row["p99_ms"], coldStarts=row["cold_starts"],
                initP50Ms=row["init_p50_ms"], costUsd=row["cost_usd"])
    step = window_s / BUCKETS
    for point in mod.series(store, app, since=since, until=now, bucket_s=max(1, int(step))):
        fig = out.get(point["function"])
        if fig is None:
            continue
        i = min(BUCKETS - 1, max(0, int((point["t"] - since) // step)))
        fig["series"][i] += point["count"]
        fig["errorSeries"][i] += point["errors"]
    return out


def queue_depths(store: Any, app: str, queues: Sequence[str], *, now: float,
                 window_s: float) -> dict[str, list[float | None]]:
    """Per queue, its visible depth over the last `window_s` in BUCKETS points (each the
    peak of the samples in it; None where none was stored), from the gauges the server
    samples (squall.observe.gauges, read by squall.observe.metrics.gauge_series)."""
    mod = _module("metrics")
    out: dict[str, list[float | None]] = {q: [None] * BUCKETS for q in queues}
    if mod is None or not _reads(store, "gauge_samples"):
        return out
    got = mod.gauge_series(store, app, "queue_visible", since=now - window_s, until=now,
                           step=window_s / BUCKETS)
    for queue in out:
        out[queue] = got["series"].get(queue, out[queue])[:BUCKETS]
    return out


def _no_figures() -> dict[str, Any]:
    return {"invocations": 0, "perMinute": 0.0, "errors": 0, "errorRate": 0.0, "throttles": 0,
            "p50Ms": None, "p99Ms": None, "coldStarts": 0, "initP50Ms": None, "costUsd": 0.0,
            "series": [0] * BUCKETS, "errorSeries": [0] * BUCKETS}


def traces(store: Any, app: str, *, limit: int, since: float = 0.0) -> dict[str, Any]:
    mod = _module("traces")
    if mod is None or not _reads(store, "trace_ids"):
        return {"available": False, "traces": []}
    return {"available": True, "traces": mod.list_traces(store, app, since=since, limit=limit)}


def trace(store: Any, trace_id: str) -> dict[str, Any]:
    """One trace as a waterfall: spans in tree order with depth and offset (ms)."""
    mod = _module("traces")
    if mod is None or not _reads(store, "spans"):
        raise not_found("tracing is not available in this build of Squall")
    spans = mod.get_trace(store, trace_id)
    if not spans:
        raise not_found(f"no trace {trace_id!r} (traces are kept for the retention period)")
    t0 = min(s.start for s in spans)
    t1 = max(s.end for s in spans)
    rows = [{**s.to_dict(), "depth": depth, "offsetMs": round((s.start - t0) * 1000.0, 3)}
            for depth, s in mod.tree(spans)]
    return {"trace_id": trace_id, "start": t0, "duration_ms": round((t1 - t0) * 1000.0, 3),
            "spans": rows}


def alerts(store: Any, app: str, manifest: dict[str, Any], *, limit: int = 100
           ) -> dict[str, Any]:
    """The declared alert rules with their state, and the transitions, newest first."""
    mod, rules_mod = _module("alerts"), _module("rules")
    if mod is None or rules_mod is None or not _reads(store, "alert_states"):
        return {"available": False, "rules": [], "history": []}
    rules = [rules_mod.AlertRule.from_manifest(r) for r in manifest.get("alerts") or []]
    return {"available": True, **mod.list_alerts(store, app, rules=rules, limit=limit)}


def costs(store: Any, app: str, *, by: str, since: float, until: float) -> dict[str, Any]:
    """squall.observe.cost.cost_summary (what `squall costs` prints), plus the buckets
    reshaped for a stacked chart: [{"t", "functions": {name: usd}}]."""
    mod = _module("cost")
    if mod is None or not _reads(store, "invocation_window"):
        return {"available": False}
    summary = mod.cost_summary(store, app, since=since, until=until, by=by,
                               pricing=_pricing(mod))
    step = mod.BUCKETS[by]
    first = since - since % step
    stacked: dict[float, dict[str, float]] = {first + i * step: {}
                                              for i in range(int((until - first) // step) + 1)}
    for b in summary["function_buckets"]:
        stacked.setdefault(b["t"], {})[b["function"]] = b["usd"]
    summary["chart"] = [{"t": t, "functions": v} for t, v in sorted(stacked.items())]
    return {"available": True, **summary}
