"""Acceptance: Map and Parallel branches on a real `squall run` run concurrently in the
state machine's worker (their Task calls overlap, up to MaxConcurrency), keep their
order and AWS's failure semantics, and are durable per branch: a server killed with
SIGKILL in the middle of a Map resumes it without running the finished iterations again.
The app (tests/apps/sm_fanout.py) counts, in a side database, how many calls of its
function run at once."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import pytest

import crash_helpers
from crash_helpers import kill_tree
from servers import wait_until
from test_workflow_crash import post, state_machines

from squall.backends.sqlite.workflows import SqliteWorkflowStore
from squall.workflows.machines import expanded

APP = str(Path(__file__).parent / "apps" / "sm_fanout.py")
start = partial(crash_helpers.start, APP)


def effects(db: Path) -> list[str]:
    return [s for (s,) in _query(db, "SELECT step FROM effects ORDER BY rowid")]


def peak(db: Path) -> int:
    """The most calls of `work` that ran at once since the last reset."""
    return _query(db, "SELECT peak FROM gauge WHERE k = 0")[0][0]


def reset(db: Path) -> None:
    c = sqlite3.connect(db, timeout=30)
    with c:
        c.execute("UPDATE gauge SET cur = 0, peak = 0")
        c.execute("DELETE FROM effects")
    c.close()


def _query(db: Path, sql: str) -> list[Any]:
    if not db.exists():
        return []
    c = sqlite3.connect(db, timeout=30)
    try:
        return c.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        c.close()


def call(port: int, name: str, data: Any) -> tuple[dict[str, Any], float]:
    t0 = time.monotonic()
    out = json.loads(post(port, f"/invoke/{name}", json.dumps(data).encode()) or b"{}")
    return out, time.monotonic() - t0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    tmp = tmp_path_factory.mktemp("fanout")
    db = tmp / "fanout.db"
    env = {**os.environ, "FANOUT_DB": str(db), "FANOUT_RELEASE": str(tmp / "release")}
    proc, port = start(tmp / "data", env, tmp / "server.log")
    try:
        yield port, db
    finally:
        proc.kill()
        proc.wait(10)


def test_parallel_branches_overlap_and_keep_their_order(server: tuple[int, Path]) -> None:
    port, db = server
    # Given a Parallel of three branches, each a 0.2 s Task
    # When it runs (twice: the first warms the workers up)
    call(port, "par", {})
    reset(db)
    out, took = call(port, "par", {})
    # Then the three ran at once, and the output lists the branches in their order
    assert out == {"output": [1, 4, 9]}, out
    assert peak(db) == 3
    assert took < 0.2 * 3, took


def test_map_runs_max_concurrency_items_at_once_in_item_order(
        server: tuple[int, Path]) -> None:
    port, db = server
    reset(db)
    # Given a Map over 20 items with MaxConcurrency 5, each a 0.2 s Task
    # When it runs
    out, took = call(port, "fan", {"items": list(range(20))})
    # Then it takes about 4 rounds of 0.2 s, not 20: five at a time, never more
    assert out == {"output": [n * n for n in range(20)]}, out
    assert took < 2.5, took
    assert peak(db) == 5
    assert sorted(effects(db)) == sorted(f"work-{i}" for i in range(20))


def test_a_failing_iteration_fails_the_map_and_no_other_starts(
        server: tuple[int, Path]) -> None:
    port, db = server
    reset(db)
    # Given a Map, two at a time, whose second item fails at once while the first takes 1 s
    items = [{"tag": f"i{i}", "fail": i == 1, "s": 1.0 if i == 0 else 0.0}
             for i in range(8)]
    out, _ = call(port, "fanfail", {"items": items})
    # Then the Map fails with that item's error, and no iteration started after it
    assert out["error"]["errorType"] == "ValueError", out
    assert "item i1 is bad" in out["error"]["errorMessage"]
    assert sorted(effects(db)) == ["work-i0", "work-i1"]


def test_a_failing_branch_fails_the_parallel_and_aborts_the_others(
        server: tuple[int, Path]) -> None:
    port, db = server
    reset(db)
    # Given a Parallel whose second branch fails while the first is in a 1 s Task
    out, _ = call(port, "parfail", {})
    # Then the Parallel fails with that error, and the first branch's next Task never runs
    assert out["error"]["errorType"] == "ValueError", out
    wait_until(lambda: _query(db, "SELECT cur FROM gauge")[0][0] == 0, 10,
               "the running Task to end")
    assert sorted(effects(db)) == ["work-bad", "work-slow"]


def branches(data: Path) -> list[dict[str, Any]]:
    """The StateMachineBranch records of the running "heldmap" execution."""
    store = SqliteWorkflowStore(data / "workflows.db")
    try:
        return [e.data for ex in store.list(name="heldmap", status="running")
                for e in store.history(ex.id) if e.type == "StateMachineBranch"]
    finally:
        store.close()


def test_a_kill_inside_a_map_reruns_only_unfinished_iterations(tmp_path: Path) -> None:
    data, log, db = tmp_path / "data", tmp_path / "server.log", tmp_path / "fanout.db"
    release = tmp_path / "release"
    env = {**os.environ, "FANOUT_DB": str(db), "FANOUT_RELEASE": str(release)}
    proc, port = start(data, env, log)
    try:
        # Given a Map of six items: 0-2 finish at once, 3-5 wait (their caller waiting)
        caller = threading.Thread(target=post, daemon=True,
                                  args=(port, "/invoke/heldmap", b"[0, 1, 2, 3, 4, 5]"))
        caller.start()
        wait_until(lambda: len(branches(data)) == 3 and {
            f"held-{i}-started" for i in (3, 4, 5)} <= set(effects(db)), 30,
            "three iterations to finish and three to wait")
        assert sorted(b["index"] for b in branches(data)) == [0, 1, 2]
        # When the server is killed with SIGKILL, and started again
        kill_tree(proc)
        caller.join(10)
        proc, port = start(data, env, log)
        release.touch()
        wait_until(lambda: [s for _, s, _ in state_machines(data)] == ["succeeded"], 30,
                   "the execution to resume and finish")
    finally:
        proc.kill()
        proc.wait(10)
    # Then the finished iterations did not run again, the unfinished ones did
    done = effects(db)
    for i in (0, 1, 2):
        assert done.count(f"held-{i}-started") == 1 and done.count(f"held-{i}") == 1
    for i in (3, 4, 5):
        assert done.count(f"held-{i}-started") == 2 and done.count(f"held-{i}") == 1
    # and the output and the ASL history are whole, in item order
    (sid, _, output), = state_machines(data)
    assert json.loads(output) == [0, 10, 20, 30, 40, 50]
    store = SqliteWorkflowStore(data / "workflows.db")
    history = expanded(store.history(sid))  # (steps refer to their branches' events)
    store.close()
    asl = [a for e in history if e.type != "StateMachineBranch"
           for a in e.data.get("events", [])]
    started = [a["mapIterationStartedEventDetails"]["index"] for a in asl
               if a["type"] == "MapIterationStarted"]
    assert started == [0, 1, 2, 3, 4, 5]
    assert [a["type"] for a in asl].count("TaskSucceeded") == 6
    assert [a["id"] for a in asl] == list(range(1, len(asl) + 1))


def records(data: Path, name: str, kind: str) -> list[dict[str, Any]]:
    """The `kind` history records of the running `name` executions."""
    store = SqliteWorkflowStore(data / "workflows.db")
    try:
        return [e.data for ex in store.list(name=name, status="running")
                for e in store.history(ex.id) if e.type == kind]
    finally:
        store.close()


def test_a_kill_between_retries_inside_a_map_keeps_the_iteration_s_count(
        tmp_path: Path) -> None:
    data, log, db = tmp_path / "data", tmp_path / "server.log", tmp_path / "fanout.db"
    release = tmp_path / "release"
    env = {**os.environ, "FANOUT_DB": str(db), "FANOUT_RELEASE": str(release)}
    proc, port = start(data, env, log)
    try:
        # Given a Map of three items whose item 1 always fails (Retry: MaxAttempts 2,
        # then Catch), killed after that item's first failed attempt was recorded, while
        # its second waits; items 0 and 2 finished
        caller = threading.Thread(target=post, daemon=True,
                                  args=(port, "/invoke/retrymap", b"[0, 1, 2]"))
        caller.start()
        wait_until(lambda: "flaky-1-waiting" in effects(db) and len(
            records(data, "retrymap", "StateMachineBranch")) == 2, 30,
            "items 0 and 2 to finish and item 1 to wait in its second attempt")
        (retried,) = records(data, "retrymap", "StateMachineBranchRetry")
        assert retried["index"] == 1 and retried["retry"]["counts"] == [1]
        kill_tree(proc)
        caller.join(10)
        # When the server starts again
        proc, port = start(data, env, log)
        release.touch()
        wait_until(lambda: [s for _, s, _ in state_machines(data)] == ["succeeded"], 30,
                   "the execution to resume and finish")
    finally:
        proc.kill()
        proc.wait(10)
    # Then item 1 ran MaxAttempts + 1 = 3 attempts in all, its RetryCount going on from
    # the recorded one (the attempt the kill interrupted ran again, as documented), and
    # the finished iterations did not run again
    done = effects(db)
    assert [s for s in done if s.startswith("flaky-1-try")] == [
        "flaky-1-try0", "flaky-1-try1", "flaky-1-try2"], done
    assert done.count("flaky-0-try0") == 1 and done.count("flaky-2-try0") == 1
    (sid, _, output), = state_machines(data)
    assert json.loads(output) == [0, "gave-up", 20]
    # and the ASL history is whole: one TaskStateEntered per item, three failed attempts
    store = SqliteWorkflowStore(data / "workflows.db")
    history = expanded(store.history(sid))
    store.close()
    asl = [a for e in history if e.type in ("StateMachineStarted", "StateMachineStep")
           for a in e.data.get("events", [])]
    kinds = [a["type"] for a in asl]
    assert kinds.count("TaskStateEntered") == 3 and kinds.count("TaskFailed") == 3
    assert kinds.count("MapIterationSucceeded") == 3
    assert [a["id"] for a in asl] == list(range(1, len(asl) + 1))
