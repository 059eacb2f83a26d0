"""`squall storage`: what the app's buckets hold, per storage tier; and the state wiring
for one-shot commands (`squall invoke` of a function that uses tables or buckets)."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:  # sources.state is imported when a command needs it, not at start-up
    from ..sources.state import StateService

APP_HELP = "The app: a Python file (or directory with app.py) defining an App, or module:attr."
DATA_DIR_HELP = "Where the embedded store keeps its data."


def attach_state(runtime: Any, manifest: dict[str, Any], data_dir: str) -> StateService:
    """Serve the app's state calls from the embedded stores under `data_dir`."""
    from ..sources.access import AccessPolicy
    from ..sources.state import StateService

    state = StateService.for_data_dir(data_dir, store_url=os.environ.get("SQUALL_STORE"),
                                      cache_url=os.environ.get("SQUALL_CACHE_URL"),
                                      app=manifest["app"])
    state.configure(manifest)
    runtime.caller_services["state"] = state.serve
    policy = AccessPolicy(runtime.configs)  # uses= holds here as in a server
    state.policy = policy
    runtime.authorize = policy.check_call
    return state


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def storage(
    app: str = typer.Argument(..., help=APP_HELP),
    data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the usage as JSON."),
) -> None:
    """Storage used by each bucket, per tier (standard, archive)."""
    from rich.console import Console
    from rich.table import Table

    from ..sources.state import StateService
    from .main import load_manifest

    manifest = load_manifest(app)
    state = StateService.for_data_dir(data_dir, store_url=os.environ.get("SQUALL_STORE"),
                                      app=manifest["app"])
    try:
        state.configure(manifest)
        usage = state.usage()
    finally:
        state.close()
    if as_json:
        sys.stdout.write(json.dumps(usage) + "\n")
        return
    table = Table(title=f"app {manifest['app']}: storage")
    for col in ("bucket", "tier", "objects", "bytes"):
        table.add_column(col, no_wrap=True)
    for bucket, tiers in usage.items():
        for tier, u in tiers.items():
            table.add_row(bucket, tier, str(u["objects"]), _human(u["bytes"]))
    Console(width=None if sys.stdout.isatty() else 240).print(table)
