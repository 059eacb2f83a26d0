"""`squall trace ID`, `squall traces APP`, `squall metrics APP`, `squall alerts APP`,
`squall costs APP [--what-if …]`, `squall tune APP FUNCTION`, `squall coldstart APP`.

The read commands open the app's store (squall.db under --data-dir, or SQUALL_STORE) and
call the same read functions as the dashboard (squall.observe.*), so they work whether
or not the app is running. APP is the app's name or its file (then it is loaded in a
zygote to learn the name and the declarations).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..backends import StoreError, open_store, store_url_for_data_dir
from ..observe.numbers import parse_duration_s
from ..observe.rules import AlertRule

# observe.cost and observe.traces are imported by the commands that read them.

DATA_DIR_HELP = "Where the app keeps its data (as given to squall run)."
SINCE_HELP = "How far back: 15m, 24h, 7d (default 1h)."
out = Console(highlight=False)
WATERFALL_WIDTH = 48


def _fail(message: str) -> typer.Exit:
    from .main import fail

    return fail(message)


class _Opened:
    def __init__(self, app: str, data_dir: str) -> None:
        self.manifest: dict[str, Any] | None = None
        self.name = app
        if app.endswith(".py") or "/" in app or ":" in app:
            from .main import load_manifest

            self.manifest = load_manifest(app)
            self.name = self.manifest["app"]
        self.data_dir = data_dir


def open_app_store(data_dir: str, what: str = "store") -> Any:
    """The app's store: SQUALL_STORE, else squall.db under `data_dir` (exit 2 if absent)."""
    url = os.environ.get("SQUALL_STORE")
    if not url:
        db = Path(data_dir) / "squall.db"
        if not db.exists():
            raise _fail(f"no {what} at {db}: run the app first, or pass --data-dir")
        url = store_url_for_data_dir(data_dir)
    try:
        return open_store(url)
    except StoreError as exc:
        raise _fail(str(exc)) from None


def _read_store(data_dir: str, read: Callable[[Any], Any],
                errors: type[Exception] | tuple[type[Exception], ...]) -> Any:
    """`read(store)` on the app's store, closed after; `errors` exit 2 with their message."""
    store = open_app_store(data_dir)
    try:
        return read(store)
    except errors as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()


def _since(text: str) -> float:
    try:
        return time.time() - parse_duration_s(text)
    except ValueError as exc:
        raise _fail(f"--since: {exc}") from None


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _usd(x: float) -> str:
    return f"${x:.3g}" if x < 0.01 else f"${x:,.4f}" if x < 1 else f"${x:,.2f}"


# -- traces ------------------------------------------------------------------------------


def trace(trace_id: str = typer.Argument(..., help="The trace id (32 hex digits)."),
          data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP),
          as_json: bool = typer.Option(False, "--json", help="The spans as JSON.")) -> None:
    """Print one trace as a waterfall: every span under its parent, on one time axis."""
    trace_id = trace_id.strip().lower()
    if len(trace_id) != 32 or any(c not in "0123456789abcdef" for c in trace_id):
        raise _fail(f"{trace_id!r} is not a trace id (32 lower-case hex digits)")
    from ..observe.traces import get_trace

    store = open_app_store(data_dir)
    try:
        spans = get_trace(store, trace_id)
    finally:
        store.close()
    if not spans:
        raise _fail(f"no trace {trace_id} in the store (spans are written within ~0.1 s; "
                    "is tracing on, and is this the app's --data-dir?)")
    if as_json:
        sys.stdout.write(json.dumps([s.to_dict() for s in spans]) + "\n")
        return
    out.print(render_waterfall(spans))


def render_waterfall(spans: list[Any], width: int = WATERFALL_WIDTH) -> Table:
    from ..observe.traces import tree

    t0 = min(s.start for s in spans)
    total = max(max(s.end for s in spans) - t0, 1e-6)
    table = Table(title=f"trace {spans[0].trace_id}  ({total * 1000:.1f} ms, {len(spans)} spans)",
                  title_justify="left")
    table.add_column("span", no_wrap=True)
    table.add_column("kind", style="dim")
    table.add_column("start", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("timeline", no_wrap=True)
    for depth, s in tree(spans):
        offset = s.start - t0
        left = int(offset / total * width)
        bar = max(1, int(s.duration_ms / 1000 / total * width))
        colour = "green" if s.status in ("ok", "running") else "red"
        line = Text(" " * min(left, width - 1))
        line.append("█" * min(bar, width - min(left, width - 1)), style=colour)
        name = Text("  " * depth + s.name)
        if s.status not in ("ok",):
            name.append(f" [{s.status}]", style=colour)
        table.add_row(name, s.kind, f"{offset * 1000:.1f} ms", f"{s.duration_ms:.1f} ms", line)
    return table


def traces(app: str = typer.Argument(..., help="The app's name or its file."),
           data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP),
           since: str = typer.Option("1h", help=SINCE_HELP),
           limit: int = typer.Option(20, min=1, max=1000),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """List the app's recent traces, newest first."""
    from ..observe.traces import list_traces

    opened = _Opened(app, data_dir)
    store = open_app_store(data_dir)
    try:
        rows = list_traces(store, opened.name, since=_since(since), limit=limit)
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table("trace id", "root", "started", "duration", "spans", "errors")
    for r in rows:
        table.add_row(r["trace_id"], r["root"], _when(r["start"]), f"{r['duration_ms']:.1f} ms",
                      str(r["spans"]), Text(str(r["errors"]), style="red" if r["errors"] else ""))
    out.print(table if rows else f"no traces of app {opened.name!r} since {since}")


# -- metrics -------------------------------------------------------------------------------


def metrics(app: str = typer.Argument(..., help="The app's name or its file."),
            function: Optional[str] = typer.Argument(None, help="Per minute for this function."),
            data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP),
            since: str = typer.Option("1h", help=SINCE_HELP),
            bucket: str = typer.Option("1m", help="Bucket size for one function (e.g. 1m, 1h)."),
            gauge: Optional[str] = typer.Option(
                None, help="A stored gauge per bucket instead: queue_visible, queue_in_flight, "
                "queue_delayed, queue_oldest_age_s, queue_retried, dlq_messages, "
                "stream_iterator_age_s, workflow_executions (sampled by the running app)."),
            subject: Optional[str] = typer.Option(
                None, help="With --gauge: only this queue (or stream/function/shard, "
                "workflow/status)."),
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Per-function figures from the invocation log (or per bucket for one function, or
    a stored gauge such as a queue's depth per bucket with --gauge)."""
    from ..observe.metrics import function_summary, series  # prometheus-client: when used
    opened = _Opened(app, data_dir)
    if gauge is not None:
        return _gauge(opened, gauge, subject, since, bucket, as_json)
    store = open_app_store(data_dir)
    try:
        if function:
            try:
                bucket_s = int(parse_duration_s(bucket))
            except ValueError as exc:
                raise _fail(f"--bucket: {exc}") from None
            rows = series(store, opened.name, since=_since(since), function=function,
                          bucket_s=bucket_s)
        else:
            rows = function_summary(store, opened.name, since=_since(since))
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    first = "minute" if function else "function"
    table = Table(first, "count", "errors", "throttles", "cold", "p50", "p99", "cost")
    for r in rows:
        table.add_row(_when(r["t"]) if function else r["function"], str(r["count"]),
                      str(r["errors"]), str(r["throttles"]), str(r["cold_starts"]),
                      _ms(r["p50_ms"]), _ms(r["p99_ms"]), _usd(r["cost_usd"]))
    out.print(table if rows else f"no invocations of app {opened.name!r} since {since}")


def _gauge(opened: _Opened, name: str, subject: str | None, since: str, bucket: str,
           as_json: bool) -> None:
    """`squall metrics APP --gauge NAME`: one column per subject, one row per bucket."""
    from ..observe.metrics import gauge_series

    try:
        step = parse_duration_s(bucket)
    except ValueError as exc:
        raise _fail(f"--bucket: {exc}") from None
    start, now = _since(since), time.time()
    doc = _read_store(opened.data_dir, lambda store: gauge_series(
        store, opened.name, name, since=start - start % step, until=now, step=step,
        subject=subject), ValueError)
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    names = sorted(doc["series"])
    if not names:
        out.print(f"no {name} samples of app {opened.name!r} since {since} (the running app "
                  "stores them every SQUALL_GAUGE_INTERVAL_S)")
        return
    table = Table("time", *names, title=f"{name} (largest sample per bucket)")
    for i, t in enumerate(doc["t"]):
        table.add_row(_when(t), *("-" if (v := doc["series"][n][i]) is None else f"{v:g}"
                                  for n in names))
    out.print(table)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


# -- alerts --------------------------------------------------------------------------------


def alerts(app: str = typer.Argument(..., help="The app's file (its rules) or its name."),
           data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP),
           limit: int = typer.Option(50, min=1, max=10000),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """The app's alert rules, their state, and the recent firing/resolved history."""
    from ..observe.alerts import list_alerts  # (imports prometheus-client: when used)
    opened = _Opened(app, data_dir)
    rules = [AlertRule.from_manifest(r) for r in (opened.manifest or {}).get("alerts") or []]
    store = open_app_store(data_dir)
    try:
        doc = list_alerts(store, opened.name, rules=rules, limit=limit)
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    if rules:
        table = Table("rule", "condition", "state", "since", "notify", title="rules")
        for r in doc["rules"]:
            table.add_row(r["name"], r["description"],
                          Text(r["state"], style="red bold" if r["state"] == "firing" else "green"),
                          _when(r["since"]) if r["since"] else "-", ", ".join(r["notify"]) or "log")
        out.print(table)
    if doc["history"]:
        table = Table("when", "rule", "state", "message", title="history")
        for h in doc["history"]:
            table.add_row(_when(h["at"]), h["rule"], h["state"], Text(h["message"]))
        out.print(table)
    elif not rules:
        out.print(f"no alert rules or alert history for app {opened.name!r}")


# -- costs ---------------------------------------------------------------------------------


def costs(app: str = typer.Argument(..., help="The app's name or its file."),
          data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP),
          since: str = typer.Option("24h", help="How far back: 24h, 7d, 30d."),
          by: str = typer.Option("hour", help="Per minute, hour or day."),
          what_if: Optional[str] = typer.Option(
              None, "--what-if", help="Re-price the recorded traffic, e.g. "
              "memory=512,batch_size=100,retention=30d"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """What the recorded traffic costs at Lambda prices (SQUALL_PRICE_* to change them)."""
    from ..observe import cost as costs_

    try:
        pricing = costs_.Pricing.from_env()
        changes = costs_.parse_changes(what_if) if what_if is not None else None
    except costs_.PricingError as exc:
        raise _fail(str(exc)) from None
    opened = _Opened(app, data_dir)
    start, end = _since(since), time.time()
    if changes and "batch_size" in changes and opened.manifest is None:
        raise _fail("--what-if batch_size needs the app's file (to know its batch sizes)")

    def read(store: Any) -> dict[str, Any]:
        if changes is not None:
            return costs_.what_if(store, opened.name, changes, since=start, until=end,
                                  batch_sizes=batch_sizes(opened.manifest or {}),
                                  pricing=pricing)
        return costs_.cost_summary(store, opened.name, since=start, until=end, by=by,
                                   pricing=pricing)

    doc = _read_store(data_dir, read, costs_.PricingError)
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    if changes is not None:
        _print_what_if(doc, since)
        return
    out.print(f"app [bold]{opened.name}[/] since {since}: {doc['requests']} requests, "
              f"{doc['gb_s']:.3f} GB-s, [bold]{_usd(doc['usd'])}[/]")
    table = Table("function", "requests", "GB-s", "cost")
    for f in doc["functions"]:
        table.add_row(f["function"], str(f["requests"]), f"{f['gb_s']:.4f}", _usd(f["usd"]))
    out.print(table)
    if doc["buckets"]:
        top = max(b["usd"] for b in doc["buckets"]) or 1.0
        chart = Table(f"{by} (local time)", "requests", "cost", "", title=f"cost per {by}")
        for b in doc["buckets"]:
            chart.add_row(_when(b["t"]), str(b["requests"]), _usd(b["usd"]),
                          Text("█" * max(1, int(b["usd"] / top * 30)), style="cyan"))
        out.print(chart)


def batch_sizes(manifest: dict[str, Any]) -> dict[str, int]:
    """function -> batch size, for functions fed in batches (queues, streams)."""
    out: dict[str, int] = {}
    for f in manifest.get("functions", []):
        for key in ("queue", "stream"):
            if f.get(key) and f[key].get("batch_size"):
                out[f["name"]] = int(f[key]["batch_size"])
    return out


def _print_what_if(doc: dict[str, Any], since: str) -> None:
    lo, hi = doc["estimate_usd_per_month"]
    out.print(f"recorded since {since}: {doc['invocations']} invocations, "
              f"{_usd(doc['current_usd'])} (≈ {_usd(doc['current_usd_per_month'])}/month)")
    out.print(f"with {', '.join(f'{k}={v:g}' for k, v in doc['changes'].items())}: "
              f"[bold]{_usd(lo)} – {_usd(hi)}/month[/] (CPU-bound … I/O-bound)")
    if "log_storage_usd_per_month" in doc:
        out.print(f"log storage at that retention: {doc['log_storage_gb']:.3f} GB, "
                  f"{_usd(doc['log_storage_usd_per_month'])}/month")
    for a in doc["assumptions"]:
        out.print(f"  [dim]assumes {a}[/]")


def register(cli: typer.Typer) -> None:
    for command in (trace, traces, metrics, alerts, costs):
        cli.command()(command)
    from .tune import coldstart, tune

    cli.command()(tune)
    cli.command()(coldstart)
