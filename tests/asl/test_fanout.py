"""Map and Parallel branches on threads (Env.max_workers) and durable per branch
(Env.on_branch / Env.branches, the "branch" operation of the state_machine service).
Through the engine's public entry points with in-memory runners, and in-process through
the supervisor's service; the real-server tests are tests/test_asl_fanout.py."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from squall import App
from squall.asl import Env, Execution, StateMachine
from squall.asl.execution import branch_progress, branch_record
from squall.asl.runner import InMemoryRunner
from squall.testing import TestClient

from .fakes import FakeClock


def task(resource: str, **extra: Any) -> dict[str, Any]:
    return {"StartAt": resource.upper(), "States": {
        resource.upper(): {"Type": "Task", "Resource": resource, "End": True, **extra}}}


def map_of(processor: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"StartAt": "M", "States": {"M": {"Type": "Map", "End": True,
                                             "ItemProcessor": processor, **extra}}}


def run(definition: dict[str, Any], data: Any, handlers: dict[str, Any], **env: Any
        ) -> Execution:
    clock = FakeClock()
    return StateMachine("sm", definition).run(
        data, Env(InMemoryRunner(handlers), now=clock.now, sleep=clock.sleep, **env),
        name="ex-1")


def test_map_iterations_run_together_up_to_max_concurrency_in_item_order() -> None:
    # Given a Map of 8 items, 4 at a time, whose Task waits for 4 callers at once
    barrier = threading.Barrier(4, timeout=10)

    def square(n: int) -> int:
        barrier.wait()  # (raises BrokenBarrierError unless 4 run at the same time)
        return n * n
    ex = run(map_of(task("sq"), MaxConcurrency=4), list(range(8)), {"sq": square},
             max_workers=40)
    # Then all ran, four at a time, and the output keeps the items' order
    assert ex.status == "SUCCEEDED", ex.cause
    assert ex.output == [n * n for n in range(8)]
    started = [e["mapIterationStartedEventDetails"]["index"] for e in ex.history
               if e["type"] == "MapIterationStarted"]
    assert started == list(range(8))
    assert [e["id"] for e in ex.history] == list(range(1, len(ex.history) + 1))


def test_parallel_branches_run_together_and_a_failure_fails_the_state() -> None:
    barrier = threading.Barrier(3, timeout=10)

    def meet(x: Any) -> str:
        barrier.wait()
        return x
    d = {"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": True, "Branches": [
        {"StartAt": f"B{i}", "States": {f"B{i}": {"Type": "Task", "Resource": "meet",
                                                  "Parameters": {"b": i}, "End": True}}}
        for i in range(3)]}}}
    # Given three branches that only finish if they run at the same time
    ex = run(d, {}, {"meet": meet}, max_workers=40)
    assert ex.output == [{"b": 0}, {"b": 1}, {"b": 2}]
    # When one of them fails, the Parallel fails with its error
    ex = run(d, {}, {"meet": lambda x: 1 / 0 if x["b"] == 1 else x}, max_workers=40)
    assert ex.status == "FAILED" and ex.error == "ZeroDivisionError"
    assert [e["type"] for e in ex.history].count("ParallelStateFailed") == 1


def test_after_a_failure_no_further_iteration_starts() -> None:
    # Given a Map, two at a time, whose first item fails once the second has started,
    # and the second holds its thread until the failure is in
    second, failed = threading.Event(), threading.Event()
    ran: list[int] = []

    def f(n: int) -> int:
        ran.append(n)
        if n == 0:
            assert second.wait(10)
            failed.set()
            raise ValueError("bad item")
        second.set()
        assert failed.wait(10)
        return n
    ex = run(map_of(task("f"), MaxConcurrency=2), list(range(10)), {"f": f},
             max_workers=40)
    # Then the Map failed with it; only the thread that held item 1 could have started
    # one more before the failure was counted, the rest never ran
    assert ex.status == "FAILED" and ex.error == "ValueError"
    assert ran[:2] in ([0, 1], [1, 0]) and len(ran) <= 3, ran
    types = [e["type"] for e in ex.history]
    assert types.count("MapIterationFailed") == 1 and "MapStateFailed" in types


def test_finished_branches_are_reported_and_not_run_again_after_a_restart() -> None:
    definition = map_of({"StartAt": "Inner", "States": {"Inner": {
        "Type": "Parallel", "End": True, "Branches": [task("f")]}}},
        ToleratedFailureCount=1)
    calls: list[int] = []

    def f(n: int) -> int:
        calls.append(n)
        if n == 2:
            raise ValueError("two")
        return n * 10
    # Given a durable runner that keeps each finished iteration of the top-level Map
    # (the nested Parallel's branches are part of their iteration: not reported)
    reported: dict[int, dict[str, Any]] = {}
    lock = threading.Lock()

    def on_branch(state: str, index: int, child: Execution) -> None:
        assert state == "M"
        with lock:
            reported[index] = branch_record(index, child)
    first = run(definition, [0, 1, 2, 3], {"f": f}, max_workers=40, on_branch=on_branch)
    assert sorted(reported) == [0, 1, 2, 3] and reported[2]["status"] == "FAILED"
    assert first.output[2]["Error"] == "ValueError"
    # When the state runs again after a restart with items 0 and 2 recorded
    calls.clear()
    again = run(definition, [0, 1, 2, 3], {"f": f}, max_workers=40,
                branches={"M": {0: reported[0], 2: reported[2]}})
    # Then only 1 and 3 ran, and output and history are those of the whole run
    assert sorted(calls) == [1, 3]
    assert again.output == first.output
    assert [e["type"] for e in again.history] == [e["type"] for e in first.history]


def test_the_state_machine_service_records_branches_and_resume_skips_them() -> None:
    clock = FakeClock()
    app = App("durablemap")
    calls: list[int] = []

    @app.function
    def f(event, ctx):
        calls.append(event)
        return event * 10

    definition = map_of(task("f"))
    app.state_machine("sm", definition, now=clock.now, sleep=clock.sleep)
    with TestClient(app) as client:
        svc = client.orchestration.machines
        # Given an execution that died in its Map after iterations 0 and 2 finished
        records: dict[int, dict[str, Any]] = {}
        run(definition, [0, 1, 2], {"f": lambda n: n * 10},
            on_branch=lambda state, i, child: records.update({i: branch_record(i, child)}))
        machine = StateMachine("sm", definition)
        ex = machine.start([0, 1, 2], name="e1", now=clock.now())
        state = ex.to_dict()
        events = state.pop("history")
        doc = client.call(lambda: svc.serve(["begin", "sm", "e1", [0, 1, 2], state,
                                             events]))
        length = doc["length"]
        for i in (0, 2):
            length = client.call(lambda: svc.serve(["branch", "e1", "M", records[i],
                                                    length]))
        with pytest.raises(ValueError, match="integer index"):
            client.call(lambda: svc.serve(["branch", "e1", "M", {"index": "x"}, length]))
        # When the supervisor recovers it
        assert client.call(svc.recover) == 1
        client.call(svc.idle)
        # Then only iteration 1 ran, and the execution ends with the whole output
        final = client.workflows.describe("e1")
        assert final["status"] == "succeeded" and final["output"] == [0, 10, 20]
        assert calls == [1]
        kinds = [e["type"] for e in client.workflows.history("e1")]
        assert kinds == ["StateMachineStarted", "StateMachineBranch", "StateMachineBranch",
                         "StateMachineBranch", "StateMachineStep"]
        asl = [a["type"] for e in client.workflows.history("e1")
               if e["type"] != "StateMachineBranch" for a in e["data"].get("events", [])]
        assert asl.count("TaskSucceeded") == 3 and asl.count("ExecutionSucceeded") == 1


def test_a_map_s_iteration_events_are_stored_once_and_the_history_reads_whole() -> None:
    clock = FakeClock()
    app = App("storedonce")

    @app.function
    def f(event, ctx):
        return event * 10

    # Given a Map of 3 items and a Parallel of 2 branches, each branch one Task
    def one(name: str, **extra: Any) -> dict[str, Any]:
        return {"StartAt": name, "States": {name: {"Type": "Task", "Resource": "f",
                                                   "End": True, **extra}}}
    handler = app.state_machine("sm", {"StartAt": "M", "States": {
        "M": {"Type": "Map", "ItemProcessor": one("A"), "Next": "P"},
        "P": {"Type": "Parallel", "End": True, "Branches": [
            one("B1", InputPath="$[0]"), one("B2", InputPath="$[1]")]}}},
        now=clock.now, sleep=clock.sleep)
    with TestClient(app) as client:
        # When it runs durably (checkpoints and branch records in the workflow store)
        assert client.invoke("sm", [1, 2, 3]).output == [100, 200]
        (ex,) = client.workflows.list(name="sm")
        stored = client.orchestration.workflow_store.history(ex["id"])
        whole = handler.last.history  # what the interpreter wrote, in memory
        # Then the store holds every ASL event once: the branch records hold the
        # iterations' events, the steps only their own and references to those
        assert [e.type for e in stored] == ["StateMachineStarted"] + [
            "StateMachineBranch"] * 3 + ["StateMachineStep"] + [
            "StateMachineBranch"] * 2 + ["StateMachineStep"]
        assert sum(len(e.data.get("events") or []) for e in stored) == len(whole)
        tasks = [a for e in stored for a in e.data.get("events") or []
                 if a["type"] == "TaskSucceeded"]
        assert len(tasks) == 5
        # and the history read back (API, squall workflows show) is the whole one, as
        # before: each step with all its events, ids 1..n in order, AWS's shape
        api = client.workflows.history(ex["id"])
        rebuilt = [a for e in api if e["type"] != "StateMachineBranch"
                   for a in e["data"]["events"]]
        assert rebuilt == whole
        assert [a["id"] for a in rebuilt] == list(range(1, len(rebuilt) + 1))
        assert [(a["type"], a["previousEventId"]) for a in rebuilt[:12]] == [
            ("ExecutionStarted", 0), ("MapStateEntered", 1), ("MapStateStarted", 2),
            ("MapIterationStarted", 3), ("TaskStateEntered", 4), ("TaskScheduled", 5),
            ("TaskStarted", 6), ("TaskSucceeded", 7), ("TaskStateExited", 8),
            ("MapIterationSucceeded", 9), ("MapIterationStarted", 10),
            ("TaskStateEntered", 11)]
        assert all("branch_events" not in e["data"] for e in api)
        from squall.ops.workflows import execution
        from squall.workflows.machines import resume_doc

        assert execution(client.orchestration.workflow_store, ex["id"])["history"] == api
        # and a resume rebuilds the same history from the records
        assert resume_doc(client.orchestration.workflow_store,
                          ex["id"])["state"]["history"] == whole



def test_a_step_s_branch_references_are_checked() -> None:
    from squall.backends.workflow_store import WorkflowStoreError
    from squall.workflows.machines import asl_events, stored_events

    app = App("badrefs")
    app.state_machine("sm", map_of({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "End": True}}}))
    with TestClient(app) as client:
        svc = client.orchestration.machines
        machine = StateMachine("sm", map_of({"StartAt": "P", "States": {
            "P": {"Type": "Pass", "End": True}}}))
        state = machine.start([1], name="e1").to_dict()
        events = state.pop("history")
        doc = client.call(lambda: svc.serve(["begin", "sm", "e1", [1], state, events]))
        # a step whose references are not {at, seq, offset, count} integers is refused
        for bad in ([{"at": 0, "seq": "2", "offset": 0, "count": 1}], {"at": 0},
                    [{"at": 0, "seq": 2, "offset": 0}]):
            with pytest.raises(ValueError, match="branch_events must be"):
                client.call(lambda: svc.serve(["step", "e1", state, [], doc["length"], bad]))
    # a reference to a record that is not there is a damaged history, said so
    with pytest.raises(WorkflowStoreError, match="branch record 7.*damaged"):
        asl_events({"events": [], "branch_events": [
            {"at": 0, "seq": 7, "offset": 3, "count": 1}]}, {})
    # and runs that overlap cannot be stored as references
    with pytest.raises(ValueError, match="overlap"):
        stored_events([{"id": 1}, {"id": 2}], [(0, 0, 2, 5), (1, 1, 1, 6)])


# an iteration's Task that retries twice (1 s, then 2 s) and is then caught
RETRIED = map_of({"StartAt": "T", "States": {
    "T": {"Type": "Task", "Resource": "f", "Next": "Done",
          "Parameters": {"n.$": "$", "try.$": "$$.State.RetryCount"},
          "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1,
                     "MaxAttempts": 2, "BackoffRate": 2}],
          "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "GaveUp"}]},
    "Done": {"Type": "Pass", "End": True},
    "GaveUp": {"Type": "Pass", "Result": "gave-up", "End": True}}})


def failing_one(tries: list[tuple[int, int]]) -> Any:
    """`f` for RETRIED: item 1 always fails; every attempt is noted (item, RetryCount)."""
    def f(x: dict[str, int]) -> int:
        tries.append((x["n"], x["try"]))
        if x["n"] == 1:
            raise RuntimeError("not yet")
        return x["n"] * 10
    return f


class Crash(Exception):
    """The process died right after a durable append."""


def test_retries_inside_a_branch_go_on_from_the_last_failed_attempt_after_a_crash() -> None:
    machine = StateMachine("sm", RETRIED)
    tries: list[tuple[int, int]] = []
    # Given a durable runner that keeps finished iterations and the failed attempts inside
    # them, and dies right after recording each failed attempt
    done: dict[int, dict[str, Any]] = {}
    retried: dict[int, dict[str, Any]] = {}

    def on_branch_retry(state: str, index: int, child: Execution) -> None:
        assert state == "M"
        at = retried.setdefault(index, {"events": []})
        new = child.history[len(at["events"]):]
        at.update(branch_progress(index, child, new))
        at["events"] = at["events"] + new
        raise Crash()

    clock = FakeClock()
    ex = machine.start([0, 1, 2], name="e1", now=clock.now())
    saved = ex.to_dict()
    crashes = 0
    for _ in range(10):  # (bounded: a runner that forgot its counts would crash forever)
        ex = Execution.from_dict(saved)  # When it is resumed each time from its records
        env = Env(InMemoryRunner({"f": failing_one(tries)}), now=clock.now,
                  sleep=clock.sleep, checkpoint=lambda ex: None,
                  on_branch=lambda state, i, c: done.update({i: branch_record(i, c)}),
                  branches={"M": dict(done)}, on_branch_retry=on_branch_retry,
                  branch_retries={"M": {i: dict(r) for i, r in retried.items()}})
        try:
            machine.step(ex, env)
            break
        except Crash:
            crashes += 1
    # Then item 1 ran MaxAttempts + 1 times in all, its RetryCount and back-off going on,
    # and the finished iterations did not run again
    assert crashes == 2
    assert tries == [(0, 0), (1, 0), (1, 1), (1, 2), (2, 0)]
    assert clock.slept == [1, 2]
    assert ex.status == "SUCCEEDED" and ex.output == [0, "gave-up", 20]
    # and the history is the one of a run that never crashed
    calm = StateMachine("sm", RETRIED).run([0, 1, 2], Env(
        InMemoryRunner({"f": failing_one([])}), now=FakeClock().now,
        sleep=FakeClock().sleep), name="e1")
    assert [(e["id"], e["type"], e["previousEventId"]) for e in ex.history] == [
        (e["id"], e["type"], e["previousEventId"]) for e in calm.history]


def test_the_state_machine_service_resumes_a_branch_at_its_retried_state() -> None:
    clock = FakeClock()
    app = App("branchretry")
    tries: list[tuple[int, int]] = []
    f = failing_one(tries)

    @app.function(name="f")
    def f_fn(event, ctx):
        return f(event)

    handler = app.state_machine("sm", RETRIED, now=clock.now, sleep=clock.sleep)
    machine = StateMachine("sm", RETRIED)
    with TestClient(app) as client:
        svc = client.orchestration.machines
        # Given an execution that died in its Map's back-off after item 1's first failed
        # attempt, item 0 finished
        records: dict[int, dict[str, Any]] = {}
        progress: list[dict[str, Any]] = []

        def died(state: str, index: int, child: Execution) -> None:
            progress.append(branch_progress(index, child, list(child.history)))
            raise Crash()
        with pytest.raises(Crash):
            machine.run([0, 1, 2], Env(
                InMemoryRunner({"f": failing_one([])}), now=clock.now, sleep=clock.sleep,
                on_branch=lambda state, i, c: records.update({i: branch_record(i, c)}),
                on_branch_retry=died), name="e1")
        ex = machine.start([0, 1, 2], name="e1", now=clock.now())
        state = ex.to_dict()
        events = state.pop("history")
        doc = client.call(lambda: svc.serve(["begin", "sm", "e1", [0, 1, 2], state,
                                             events]))
        length = client.call(lambda: svc.serve(["branch", "e1", "M", records[0],
                                                doc["length"]]))
        length = client.call(lambda: svc.serve(["branch_retry", "e1", "M", progress[0],
                                                length]))
        bad = {**progress[0], "retry": {**progress[0]["retry"], "state": "Done"}}
        with pytest.raises(ValueError, match="branch retry record needs"):
            client.call(lambda: svc.serve(["branch_retry", "e1", "M", bad, length]))
        # When the supervisor recovers it
        assert client.call(svc.recover) == 1
        client.call(svc.idle)
        # Then item 0 did not run again, item 1 had only its two retries left, on the
        # back-off schedule it had begun (no time had passed: all of the first 1 s)
        assert tries == [(1, 1), (1, 2), (2, 0)]
        assert clock.slept == [1, 2]
        final = client.workflows.describe("e1")
        assert final["status"] == "succeeded" and final["output"] == [0, "gave-up", 20]
        stored = client.workflows.history("e1")
        assert [e["type"] for e in stored] == [
            "StateMachineStarted", "StateMachineBranch", "StateMachineBranchRetry",
            "StateMachineBranchRetry", "StateMachineBranch", "StateMachineBranch",
            "StateMachineStep"]
        # and the ASL history reads as that of a run that never stopped
        asl = [a for e in stored if e["type"] in ("StateMachineStarted", "StateMachineStep")
               for a in e["data"]["events"]]
        assert asl == handler.last.history
        kinds = [a["type"] for a in asl]
        assert kinds.count("TaskStateEntered") == 3 and kinds.count("TaskFailed") == 3
        assert [a["id"] for a in asl] == list(range(1, len(asl) + 1))
