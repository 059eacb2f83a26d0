"""`squall logs APP [FUNCTION] [-f] [--since 15m] [--level warning] [--grep RE]`.

Invocations from the invocation log with their metering and captured output, oldest
first. --level keeps output lines at or above a level (JSON lines from squall.logger by
their "level", Lambda-style "[ERROR]" lines by their tag, tracebacks as errors, prints as
info) and failed invocations from "error" down; --grep keeps lines matching a regular
expression (and the invocations that have one); -f keeps printing new invocations as the
log writer stores them (it reads the store every FOLLOW_INTERVAL_S: the log has no
change feed; Ctrl-C stops). Retention: SQUALL_LOG_RETENTION on the running app.
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any, Optional

import typer
from rich.console import Console

from ..observe.funclog import LEVELS, line_level
from ..observe.numbers import parse_duration_s
from .observe import open_app_store

FOLLOW_INTERVAL_S = 0.5
FOLLOW_BATCH = 500


def logs(
    app: str = typer.Argument(..., help="The app's name (as in App(name)) or its file."),
    function: Optional[str] = typer.Argument(None, help="Only this function."),
    data_dir: str = typer.Option(".squall", help="Where the embedded store keeps its data."),
    limit: int = typer.Option(20, min=1, max=10000, help="How many invocations."),
    request_id: Optional[str] = typer.Option(None, help="Only this invocation."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines, one per invocation."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new invocations."),
    since: Optional[str] = typer.Option(None, help="Only invocations this recent: 15m, 2h, 7d."),
    level: Optional[str] = typer.Option(None, help="Lowest level shown: debug, info, warning, "
                                        "error."),
    grep: Optional[str] = typer.Option(None, help="Only output lines matching this regex."),
) -> None:
    """Show recent invocations with their metering and captured output."""
    from .main import fail, load_manifest

    app_name = app
    if app.endswith(".py") or "/" in app or ":" in app:
        app_name = load_manifest(app)["app"]
    try:
        cutoff = time.time() - parse_duration_s(since) if since else None
    except ValueError as exc:
        raise fail(f"--since: {exc}") from None
    if level is not None and level.lower() not in LEVELS:
        raise fail(f"--level: {level!r} is not one of {', '.join(LEVELS)}")
    try:
        pattern = re.compile(grep) if grep else None
    except re.error as exc:
        raise fail(f"--grep: not a regular expression: {exc}") from None
    keep = Filter(cutoff, LEVELS[level.lower()] if level else None, pattern)
    store = open_app_store(data_dir, "invocation log")
    out = Console(highlight=False)
    try:
        shown = show(store, app_name, function, request_id, limit, keep, out, as_json)
        if not shown and not as_json and not follow:
            Console(stderr=True).print(
                f"no invocations of {function or 'any function'} in app {app_name!r}"
                + (" matching the filters" if keep.active else ""), markup=False)
        seen = set(shown)
        while follow:
            time.sleep(FOLLOW_INTERVAL_S)
            seen |= set(show(store, app_name, function, request_id, FOLLOW_BATCH, keep,
                             out, as_json, skip=seen))
    except KeyboardInterrupt:  # Ctrl-C ends -f: a normal way out
        pass
    finally:
        store.close()


class Filter:
    def __init__(self, cutoff: float | None, level: int | None, pattern: re.Pattern | None):
        self.cutoff, self.level, self.pattern = cutoff, level, pattern
        self.active = cutoff is not None or level is not None or pattern is not None

    def lines(self, lines: list[str]) -> list[str]:
        if self.level is not None:
            lines = [ln for ln in lines if LEVELS[line_level(ln)] >= self.level]
        if self.pattern is not None:
            lines = [ln for ln in lines if self.pattern.search(ln)]
        return lines

    def keeps(self, row: Any, lines: list[str], all_lines: list[str]) -> bool:
        if self.cutoff is not None and row.started_at < self.cutoff:
            return False
        failed = row.status != "ok"
        if self.level is not None and not lines and not (failed and self.level <= LEVELS["error"]):
            return False
        if self.pattern is not None and not lines and not (
                row.error_message and self.pattern.search(row.error_message)):
            return False
        return True


def show(store: Any, app: str, function: str | None, request_id: str | None, limit: int,
         keep: Filter, out: Console, as_json: bool, skip: set[str] | None = None) -> list[str]:
    """Print the newest `limit` invocations (minus `skip`) that pass `keep`; their ids."""
    rows = store.invocations(app, function, limit=limit, request_id=request_id)
    if skip:
        rows = [r for r in rows if r.request_id not in skip]
    if not rows:
        return []
    lines = store.logs(app, function, request_id=request_id, limit=max(limit * 50, 1000))
    by_request: dict[str, list[str]] = {}
    for line in lines:
        by_request.setdefault(line.request_id, []).append(line.line)
    printed = []
    for r in rows:
        everything = by_request.get(r.request_id, [])
        mine = keep.lines(everything)
        if not keep.keeps(r, mine, everything):
            continue
        printed.append(r.request_id)
        if as_json:
            rec = {k: getattr(r, k) for k in r.__slots__ if k != "logs"}
            rec["logs"] = mine
            sys.stdout.write(json.dumps(rec) + "\n")
            sys.stdout.flush()
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started_at))
        colour = "green" if r.status == "ok" else "red"
        out.print(f"[dim]{when}[/] [bold]{r.function}[/] [{colour}]{r.status}[/] "
                  f"[dim]{r.request_id}[/]")
        for line in mine:
            out.print(f"  {line}", markup=False)
        if r.error_type:
            out.print(f"  {r.error_type}: {r.error_message}", style="red", markup=False)
        report = (f"  REPORT Duration: {r.duration_ms:.2f} ms  Billed Duration: {r.billed_ms} ms  "
                  f"Memory Size: {r.memory_mb} MB  Max Memory Used: {r.max_memory_mb} MB")
        if r.cold and r.init_ms is not None:
            report += f"  Init Duration: {r.init_ms:.2f} ms"
        out.print(f"[dim]{report}[/]")
    return printed
