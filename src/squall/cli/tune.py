"""`squall tune APP FUNCTION --payload … --memory 128,256,512,1024` and `squall coldstart APP`.

Both run the app (a zygote, real workers) in this process's own runtime; neither needs
the app to be running. See squall.observe.tune and squall.observe.coldstart.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..backends import StoreError, open_store, store_url_for_data_dir

# observe.tune, observe.coldstart and the runtime they drive are imported by the two
# commands here, not when the CLI starts.

out = Console(highlight=False)
CHART_WIDTH = 36


def _fail(message: str) -> typer.Exit:
    from .main import fail

    return fail(message)


def tune(app: str = typer.Argument(..., help="The app (a file or module:attr)."),
         function: str = typer.Argument(..., help="The function to size."),
         payload: str = typer.Option("null", "--payload", "-p",
                                     help="The event, as JSON (or @file.json)."),
         memory: str = typer.Option("128,256,512,1024", "--memory", "-m",
                                    help="Sizes to try, in MB."),
         runs: int = typer.Option(5, "--runs", "-n", help="Invocations per size (1..100)."),
         latency: Optional[float] = typer.Option(
             None, "--max-latency-ms", help="Recommend the cheapest size with p95 under this."),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """Run FUNCTION at each memory size (CPU share scaled as on Lambda), chart duration and
    cost, and recommend the cheapest size within the latency bound."""
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ..observe.cost import Pricing, PricingError
    from ..observe.tune import TuneError, parse_sizes, tune as run_tune
    from ..runtime.runtime import UnknownFunction
    from ..runtime.zygote_client import ZygoteError
    from .main import _check_app

    ref = _check_app(app)
    try:
        text = Path(payload[1:]).read_text() if payload.startswith("@") else payload
        event = json.loads(text)
    except (OSError, ValueError) as exc:
        raise _fail(f"--payload: not JSON: {exc}") from None
    try:
        sizes = parse_sizes(memory)
        pricing = Pricing.from_env()
    except (TuneError, PricingError) as exc:
        raise _fail(str(exc)) from None
    if latency is not None and latency <= 0:
        raise _fail("--max-latency-ms must be > 0")
    with Progress(TextColumn("[bold]tuning[/] " + function), BarColumn(), MofNCompleteColumn(),
                  console=Console(stderr=True), transient=True,
                  disable=as_json or not sys.stderr.isatty()) as progress:
        task = progress.add_task("runs", total=runs * len(sizes))
        try:
            doc = asyncio.run(run_tune(
                ref, function, event, sizes, runs=runs, latency_ms=latency, pricing=pricing,
                progress=lambda done, total: progress.update(task, completed=done)))
        except (TuneError, UnknownFunction) as exc:
            raise _fail(str(exc)) from None
        except ZygoteError as exc:
            raise _fail(f"the app could not be loaded: {exc}") from None
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    out.print(render_tune(doc))
    for e in doc["errors"]:
        out.print(f"  [red]error[/] {e}", markup=True)
    out.print(f"[bold]recommendation:[/] {doc['reason']}")


def render_tune(doc: dict[str, Any]) -> Table:
    sizes = doc["sizes"]
    slowest = max((s["p95_ms"] for s in sizes), default=1.0) or 1.0
    dearest = max((s["usd_per_million"] for s in sizes), default=1.0) or 1.0
    table = Table("memory", "CPU", "p50", "p95", "duration (p95)", "$ / 1M", "cost",
                  title=f"{doc['function']}: {doc['runs']} runs per size ({doc['method']})",
                  title_justify="left")
    for s in sizes:
        pick = s["memory_mb"] == doc["recommended_mb"]
        over = doc["latency_ms"] is not None and s["p95_ms"] > doc["latency_ms"]
        table.add_row(
            Text(f"{s['memory_mb']} MB" + (" ◀" if pick else ""), style="bold green" if pick else ""),
            f"{s['cpu_share']:.0%}", f"{s['p50_ms']:.1f} ms", f"{s['p95_ms']:.1f} ms",
            Text("█" * max(1, int(s["p95_ms"] / slowest * CHART_WIDTH)),
                 style="red" if over else "cyan"),
            f"{s['usd_per_million']:.2f}" + (f" ({s['errors']} errors)" if s["errors"] else ""),
            Text("█" * max(1, int(s["usd_per_million"] / dearest * CHART_WIDTH // 2)),
                 style="yellow"))
    return table


def coldstart(app: str = typer.Argument(..., help="The app (a file or module:attr)."),
              data_dir: str = typer.Option(".squall", help="Where the app keeps its data "
                                           "(for cold starts seen so far)."),
              since: str = typer.Option("24h", help="Invocation history to use."),
              as_json: bool = typer.Option(False, "--json")) -> None:
    """Where cold starts go: the app's imports (-X importtime), the zygote's memory, init
    durations per function, and hints."""
    import asyncio

    from ..observe import coldstart as cs
    from ..observe.numbers import parse_duration_s
    from ..runtime.zygote_client import ZygoteError
    from .main import _check_app

    ref = _check_app(app)
    try:
        window = parse_duration_s(since)
    except ValueError as exc:
        raise _fail(f"--since: {exc}") from None
    err = Console(stderr=True)
    try:
        with err.status("[dim]profiling the app's imports…[/]"):
            imports, wall_ms = cs.import_profile(ref)
        with err.status("[dim]starting a zygote…[/]"):
            memory = asyncio.run(cs.zygote_memory(ref))
    except (RuntimeError, ZygoteError) as exc:
        raise _fail(str(exc)) from None
    manifest = memory["manifest"]
    per_function: dict[str, Any] = {}
    url = os.environ.get("SQUALL_STORE")
    if url or (Path(data_dir) / "squall.db").exists():
        try:
            store = open_store(url or store_url_for_data_dir(data_dir))
        except StoreError as exc:
            raise _fail(str(exc)) from None
        try:
            per_function = cs.cold_starts(store, manifest["app"], time.time() - window,
                                          time.time())
        finally:
            store.close()
    doc = cs.report(ref, manifest, imports, wall_ms, memory, per_function)
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    z = doc["zygote"]
    out.print(f"app [bold]{doc['app']}[/]: zygote boot {z['boot_ms']:.0f} ms, "
              f"memory USS {z['uss_mb']:.1f} MB / PSS {z['pss_mb']:.1f} MB / "
              f"RSS {z['rss_mb']:.1f} MB (shared by every worker it forks)")
    table = Table("import", "cumulative", "self", "", title="the app's imports (top level, "
                  "-X importtime)", title_justify="left")
    top = max((i["cumulative_ms"] for i in doc["imports"]), default=1.0) or 1.0
    for i in doc["imports"][:15]:
        table.add_row(i["module"], f"{i['cumulative_ms']:.1f} ms", f"{i['self_ms']:.1f} ms",
                      Text("█" * max(1, int(i["cumulative_ms"] / top * 30)), style="cyan"))
    out.print(table)
    ft = Table("function", "invocations", "cold starts", "init p50", "uses", title="functions",
               title_justify="left")
    for f in doc["functions"]:
        ft.add_row(f["function"], str(f["invocations"]), str(f["cold_starts"]),
                   "-" if f["init_p50_ms"] is None else f"{f['init_p50_ms']:.1f} ms",
                   ", ".join(f["uses"]) or "-")
    out.print(ft)
    for h in doc["hints"]:
        out.print(f"[yellow]hint:[/] {h}")
    if not doc["hints"]:
        out.print("[dim]no hints: no heavy import serves only one function[/]")
