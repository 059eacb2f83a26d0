"""`squall workflows list|show|cancel` and `squall signal` against a workflow store."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from squall.backends.sqlite.workflows import SqliteWorkflowStore
from squall.backends.workflow_store import Execution
from squall.cli.main import cli


def test_list_show_signal_cancel(tmp_path) -> None:
    store = SqliteWorkflowStore(tmp_path / "workflows.db")
    store.create(Execution("e1", "order", "workflow", "running", {"n": 1}),
                 [("WorkflowStarted", {"input": {"n": 1}})])
    store.create(Execution("e2", "other", "workflow", "running", None), [])
    store.append("e2", [("WorkflowCompleted", {})], status="succeeded", output=1)
    run = CliRunner().invoke
    d = ["--data-dir", str(tmp_path)]

    r = run(cli, ["workflows", "list", "app.py", "--json", *d])
    assert r.exit_code == 0, r.output
    assert {e["id"]: e["status"] for e in json.loads(r.output)} == {"e1": "running",
                                                                      "e2": "succeeded"}
    r = run(cli, ["workflows", "list", "app.py", "--status", "running", *d])
    assert r.exit_code == 0 and "e1" in r.output and "e2" not in r.output
    r = run(cli, ["workflows", "show", "app.py", "e1", *d])
    assert json.loads(r.output)["history"][0]["type"] == "WorkflowStarted"

    assert run(cli, ["signal", "app.py", "e1", "approve", "--data", '{"ok": true}', *d]
               ).exit_code == 0
    assert run(cli, ["workflows", "cancel", "app.py", "e1", *d]).exit_code == 0
    assert [(i.kind, i.data) for i in store.inbox()] == [
        ("signal", {"name": "approve", "data": {"ok": True}}), ("cancel", {"reason": ""})]

    r = run(cli, ["workflows", "cancel", "app.py", "e2", *d])
    assert r.exit_code != 0 and "already succeeded" in r.output
    r = run(cli, ["workflows", "show", "app.py", "nope", *d])
    assert r.exit_code != 0 and "no workflow execution 'nope'" in r.output
    store.close()
