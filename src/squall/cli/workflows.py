"""`squall workflows APP list|show|cancel` and `squall signal`.

They open the app's workflow store directly (workflows.db under --data-dir, or the
PostgreSQL store named by SQUALL_STORE, as the nodes of the distributed mode do), so they
work whether or not the app is running. Reads are immediate; a cancel or a signal is
left in the store's inbox, and the running app's engine takes it within half a second
(or when the app next starts).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..ops import OpsError

# ops.workflows (the workflow store, workflows.machines, the ASL engine) is imported by
# the commands that use it: other commands start without it.

workflows_cli = typer.Typer(help="List, inspect and cancel workflow executions.",
                            no_args_is_help=True)
out = Console()
DATA_DIR_HELP = "Where the app keeps its state (as given to squall run)."


def _store(data_dir: str) -> Any:
    from ..ops.workflows import open_workflow_store

    try:
        return open_workflow_store(data_dir, os.environ.get("SQUALL_STORE"))
    except OpsError as exc:
        from .main import fail

        raise fail(exc.message) from None


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@workflows_cli.command("list")
def list_(app: str = typer.Argument(..., help="The app (a file or module:attr)."),
          workflow: Optional[str] = typer.Option(None, "--workflow", "-w"),
          status: Optional[str] = typer.Option(None, "--status", "-s"),
          limit: int = typer.Option(50, "--limit", "-n"),
          as_json: bool = typer.Option(False, "--json"),
          data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP)) -> None:
    """Executions, newest first."""
    from ..ops.workflows import executions

    store = _store(data_dir)
    try:
        rows = executions(store, name=workflow, status=status, limit=limit)
    finally:
        store.close()
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("id", "workflow", "status", "started", "updated", "events")
    for r in rows:
        table.add_row(r["id"], r["name"], r["status"], _when(r["created_at"]),
                      _when(r["updated_at"]), str(r["length"]))
    out.print(table)


@workflows_cli.command()
def show(app: str = typer.Argument(..., help="The app (a file or module:attr)."),
         execution_id: str = typer.Argument(...),
         data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP)) -> None:
    """One execution and its history, as JSON."""
    from ..ops.workflows import execution

    store = _store(data_dir)
    try:
        doc = execution(store, execution_id)
    except OpsError as exc:
        from .main import fail

        raise fail(f"{exc.message} in {data_dir}") from None
    finally:
        store.close()
    print(json.dumps(doc, indent=2))


@workflows_cli.command()
def cancel(app: str = typer.Argument(..., help="The app (a file or module:attr)."),
           execution_id: str = typer.Argument(...),
           reason: str = typer.Option("", "--reason"),
           data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP)) -> None:
    """Cancel an execution: its completed steps' compensations run, newest first."""
    _post(data_dir, execution_id, "cancel", {"reason": reason})
    out.print(f"cancel requested for {execution_id}")


def signal(app: str = typer.Argument(..., help="The app (a file or module:attr)."),
           execution_id: str = typer.Argument(..., help="The workflow execution."),
           name: str = typer.Argument(..., help="The signal's name."),
           data: Optional[str] = typer.Option(None, "--data", "-d", help="JSON."),
           data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP)) -> None:
    """Send a signal to a workflow execution (what `wf.wait_for_signal` waits for)."""
    try:
        value = json.loads(data) if data is not None else None
    except json.JSONDecodeError as exc:
        from .main import fail

        raise fail(f"--data is not valid JSON: {exc}") from None
    _post(data_dir, execution_id, "signal", {"name": name, "data": value})
    out.print(f"signal {name!r} sent to {execution_id}")


def _post(data_dir: str, execution_id: str, kind: str, data: dict[str, Any]) -> None:
    from ..ops.workflows import request
    from .main import fail

    store = _store(data_dir)
    try:
        request(store, execution_id, kind, data)
    except OpsError as exc:
        raise fail(exc.message if exc.code == "conflict" else f"{exc.message} in {data_dir}"
                   ) from None
    finally:
        store.close()
