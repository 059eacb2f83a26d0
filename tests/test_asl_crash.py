"""Acceptance: durable Waits and Retry counts of state machines on a real `squall run`.
A Wait twice as long as the state machine's timeout completes (its worker is not held:
the invocation parks and a durable timer resumes it); a server killed with SIGKILL during
a long Wait resumes the execution when the Wait ends, not before and not from the start;
one killed between a Task's retries goes on counting them (MaxAttempts + 1 in all)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from functools import partial
from pathlib import Path

import crash_helpers
from crash_helpers import kill_tree
from servers import wait_until
from test_workflow_crash import post, state_machines

from squall.backends.sqlite.workflows import SqliteWorkflowStore

APP = str(Path(__file__).parent / "apps" / "sm_wait.py")
start = partial(crash_helpers.start, APP)


def marks(path: Path) -> dict[str, list[float]]:
    """step -> the times it ran (the app's side database)."""
    out: dict[str, list[float]] = {}
    if not path.exists():
        return out
    c = sqlite3.connect(path, timeout=30)
    try:
        for step, t in c.execute("SELECT step, t FROM effects ORDER BY rowid"):
            out.setdefault(step, []).append(t)
    except sqlite3.OperationalError:
        pass
    finally:
        c.close()
    return out


def parked(data: Path, name: str) -> list[float]:
    """fire_at of each Wait or back-off that state machine `name`'s running execution
    has parked at so far."""
    store = SqliteWorkflowStore(data / "workflows.db")
    try:
        return [e.data["fire_at"] for ex in store.list(name=name, status="running")
                for e in store.history(ex.id) if e.type == "StateMachineWait"]
    finally:
        store.close()


def test_long_waits_park_and_survive_a_kill(tmp_path: Path) -> None:
    data, log, fx = tmp_path / "data", tmp_path / "server.log", tmp_path / "effects.db"
    env = {**os.environ, "WF_EFFECTS": str(fx)}
    proc, port = start(data, env, log)
    try:
        # Given a state machine with timeout_s=1 and a Wait of 2 s
        # When it is invoked synchronously
        t0 = time.time()
        out = json.loads(post(port, "/invoke/nap", b'{"name": "nap", "n": 1}') or b"{}")
        # Then it completes with its output: the Wait did not run in its worker
        assert out == {"output": 3}, out
        nap = marks(fx)
        assert nap["nap-after"][0] - nap["nap-before"][0] >= 2.0
        assert time.time() - t0 < 15
        assert '"state machine execution parked"' in log.read_text()

        # Given a state machine parked in a 6 s Wait, and one whose Task failed twice and
        # waits out its 2 s back-off before its last retry (their callers waiting)
        callers = [threading.Thread(target=post, daemon=True, args=(port, path, body))
                   for path, body in (("/invoke/sleep", b'{"name": "sleep", "n": 1}'),
                                      ("/invoke/flaky", b"{}"))]
        callers[0].start()
        wait_until(lambda: parked(data, "sleep"), 30, "the Wait")
        (fire_at,) = parked(data, "sleep")
        callers[1].start()
        # (its second failure recorded: parked for the second time)
        wait_until(lambda: len(parked(data, "flaky")) == 2, 30, "2 attempts")
        assert len(marks(fx)["flaky-attempt"]) == 2
        # When the server is killed with SIGKILL, and started again
        kill_tree(proc)
        for caller in callers:
            caller.join(10)
        proc, port = start(data, env, log)
        restarted = time.time()
        wait_until(lambda: [s for _, s, _ in state_machines(data)] == ["succeeded"] * 3,
                   30, "the executions to resume and finish")
    finally:
        proc.kill()
        proc.wait(10)
    # Then it resumed at the Wait's end (not at the restart), without re-running Before
    done = marks(fx)
    assert len(done["sleep-before"]) == 1 and len(done["sleep-after"]) == 1
    if restarted < fire_at:
        assert done["sleep-after"][0] >= fire_at
    assert done["sleep-after"][0] < max(fire_at, restarted) + 5
    # and the retried Task ran MaxAttempts + 1 times in all, its last retry 2 s after
    # the attempt before it (the restart did not grant fresh attempts)
    tries = done["flaky-attempt"]
    assert len(tries) == 3 and tries[2] - tries[1] >= 2.0
    assert '"caught"' in [o for _, _, o in state_machines(data)]  # (its Catch ran)


def test_squall_invoke_of_a_state_machine_parks_its_long_wait(tmp_path: Path) -> None:
    # Given an app with only state machines and functions (no workflows), whose "nap"
    # waits 2 s under a 1 s timeout,
    # When `squall invoke` runs it once from the command line,
    # Then the Wait parks on a durable timer instead of timing the worker out
    import subprocess
    import sys

    app_file = Path(__file__).parent / "apps" / "sm_wait.py"
    env = {**os.environ, "WF_EFFECTS": str(tmp_path / "effects.db")}
    proc = subprocess.run(
        [sys.executable, "-m", "squall.cli.main", "invoke", str(app_file), "nap", "--data",
         json.dumps({"name": "cli", "n": 1}), "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=50, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == 3
