"""Acceptance: a workflow and a state-machine (ASL) execution killed (kill -9 of `squall
run`, with its zygote and workers) in the middle of a step resume after a restart
without repeating the finished steps (one server cycle for both: it is the slow part)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
import urllib.request
from functools import partial
from pathlib import Path

import crash_helpers
from crash_helpers import effects, kill_tree
from servers import wait_until

from squall.backends.sqlite.workflows import SqliteWorkflowStore

APP = str(Path(__file__).parent / "apps" / "wf_crash.py")
start = partial(crash_helpers.start, APP)


def execution(data: Path, eid: str) -> tuple[str, str | None]:
    c = sqlite3.connect(data / "workflows.db", timeout=30)
    try:
        row = c.execute("SELECT status, output FROM wf_executions WHERE id = ?", (eid,)).fetchone()
        return row if row else ("missing", None)
    finally:
        c.close()


def state_machines(data: Path) -> list[tuple[str, str, str | None]]:
    c = sqlite3.connect(data / "workflows.db", timeout=30)
    try:
        return c.execute("SELECT id, status, output FROM wf_executions "
                         "WHERE kind = 'state_machine'").fetchall()
    finally:
        c.close()


def post(port: int, path: str, body: bytes) -> bytes | None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                 headers={"content-type": "application/json"})
    try:
        return urllib.request.urlopen(req, timeout=30).read()
    except OSError:
        return None  # the server was killed under this request


def test_killed_workflow_and_state_machine_resume_without_repeating_finished_steps(
        tmp_path: Path) -> None:
    data, log, fx = tmp_path / "data", tmp_path / "server.log", tmp_path / "effects.db"
    release = tmp_path / "release"
    env = {**os.environ, "WF_EFFECTS": str(fx), "WF_RELEASE": str(release)}
    # Given a workflow and a state-machine execution (its caller waiting on it), each
    # with its first step finished and its second step running
    proc, port = start(data, env, log)
    sm_caller = threading.Thread(target=post, args=(port, "/start-sm", b'{"n": 2}'),
                                 daemon=True)
    try:
        eid = json.loads(post(port, "/start", b"1") or b"{}")["id"]
        sm_caller.start()
        wait_until(lambda: {"slow-started", "sm-slow-started"} <= set(effects(fx)), 30,
                   "both slow steps to start")
        # When the server is killed with SIGKILL, and started again
        kill_tree(proc)
        sm_caller.join(10)
        assert execution(data, eid)[0] == "running"
        (sid, sm_status, _), = state_machines(data)
        assert sm_status == "running"
        proc, port = start(data, env, log)
        release.touch()
        wait_until(lambda: execution(data, eid)[0] == "succeeded"
                   and state_machines(data)[0][1] == "succeeded", 30, "both to finish")
    finally:
        proc.kill()
        proc.wait(10)
    # Then each finished step ran once, the interrupted ones again, and the outputs are right
    done = effects(fx)
    for p in ("", "sm-"):
        assert done.count(p + "first") == 1
        assert done.count(p + "slow") == 1 and done.count(p + "slow-started") == 2
        assert done.count(p + "last") == 1
    assert json.loads(execution(data, eid)[1]) == (1 + 1) * 10 - 1
    assert json.loads(state_machines(data)[0][2]) == {"n": (2 + 1) * 10 - 1}
    # and the CLI shows the workflow
    out = subprocess.run([*crash_helpers.SQUALL, "workflows", "show", APP, eid,
                          "--data-dir", str(data)], capture_output=True, text=True,
                         check=True, env=env)
    doc = json.loads(out.stdout)
    assert doc["status"] == "succeeded"
    assert [e["type"] for e in doc["history"]].count("StepCompleted") == 3
    # the state machine's checkpoints carry one whole ASL history
    store = SqliteWorkflowStore(data / "workflows.db")
    history = store.history(sid)
    store.close()
    kinds = [e.type for e in history]
    assert kinds[0] == "StateMachineStarted" and kinds.count("StateMachineStep") == 4
    asl = [a["type"] for e in history for a in e.data.get("events", [])]
    assert asl.count("ExecutionStarted") == 1 and asl.count("ExecutionSucceeded") == 1
    assert asl.count("TaskSucceeded") == 3
