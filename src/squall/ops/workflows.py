"""Workflow executions and their step history (`squall workflows`, the Workflows page).

The store is the one the app's engine writes: workflows.db under the data dir, or the
PostgreSQL store when the app runs on one (SQUALL_STORE / --store).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..backends.workflow_store import FINAL, WorkflowStore
from ..workflows.machines import expanded
from . import OpsError, not_found


def open_workflow_store(data_dir: str | Path, store_url: str | None = None) -> WorkflowStore:
    """The app's workflow store, for reading it from outside the app (the CLI)."""
    if (store_url or "").split(":", 1)[0] in ("postgresql", "postgres"):
        from ..backends.postgres.workflows import PgWorkflowStore

        return PgWorkflowStore(store_url)
    path = Path(data_dir) / "workflows.db"
    if not path.exists():
        raise not_found(f"no workflow store at {path}: has the app run with --data-dir "
                        f"{data_dir}?")
    from ..backends.sqlite.workflows import SqliteWorkflowStore

    return SqliteWorkflowStore(path)


def executions(store: WorkflowStore, *, name: str | None = None, status: str | None = None,
               limit: int = 50) -> list[dict[str, Any]]:
    """Executions, newest first, as JSON (what `squall workflows list --json` prints)."""
    return [e.to_dict() for e in store.list(name=name, status=status, limit=limit)]


def execution(store: WorkflowStore, execution_id: str) -> dict[str, Any]:
    """One execution with its whole history (`squall workflows show`)."""
    ex = store.get(execution_id)
    if ex is None:
        raise not_found(f"no workflow execution {execution_id!r}")
    doc = ex.to_dict()
    # (a state machine's steps with their branches' events in place: see
    # squall.workflows.machines)
    doc["history"] = [e.to_dict() for e in expanded(store.history(execution_id))]
    return doc


def request(store: WorkflowStore, execution_id: str, kind: str, data: dict[str, Any]) -> None:
    """Leave a cancel or a signal for the engine; the execution must still be running."""
    ex = store.get(execution_id)
    if ex is None:
        raise not_found(f"no workflow execution {execution_id!r}")
    if ex.status in FINAL:
        raise OpsError(f"execution {execution_id!r} is already {ex.status}", "conflict")
    store.post(execution_id, kind, data)
