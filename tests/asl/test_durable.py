"""Durable state-machine executions (squall.workflows.machines): checkpoints after every
state, resume from the last one, durable Waits, one driver at a time. In-process; the
kill -9 of a real server is tests/test_asl_crash.py."""

from __future__ import annotations

import pytest

from squall import App
from squall.asl.engine import Env, StateMachine
from squall.asl.runner import InMemoryRunner
from squall.backends.workflow_store import HistoryConflict
from squall.testing import TestClient

from .fakes import FakeClock

DEFINITION = {"StartAt": "A", "States": {
    "A": {"Type": "Task", "Resource": "inc", "Next": "W"},
    "W": {"Type": "Wait", "Seconds": 600, "Next": "B"},
    "B": {"Type": "Task", "Resource": "inc", "End": True}}}


def make_app(clock: FakeClock) -> tuple[App, list]:
    app = App("durable")
    calls: list = []

    @app.function
    def inc(event, ctx):
        calls.append(event)
        return event + 1

    app.state_machine("sm", DEFINITION, now=clock.now, sleep=clock.sleep)
    return app, calls


def test_every_state_is_checkpointed() -> None:
    clock = FakeClock()
    app, calls = make_app(clock)
    with TestClient(app) as client:
        assert client.invoke("sm", 1, check=True).output == 3
        (ex,) = [e for e in client.workflows.list() if e["kind"] == "state_machine"]
        assert ex["status"] == "succeeded" and ex["output"] == 3 and ex["input"] == 1
        kinds = [e["type"] for e in client.workflows.history(ex["id"])]
        assert kinds == ["StateMachineStarted", "StateMachineStep", "StateMachineWait",
                         "StateMachineStep", "StateMachineStep"]
    assert clock.slept == [600]


def test_a_failed_execution_is_recorded_with_its_asl_error() -> None:
    app = App("fails")
    app.state_machine("sm", {"StartAt": "F", "States": {
        "F": {"Type": "Fail", "Error": "Out.Of.Stock", "Cause": "none left"}}})
    with TestClient(app) as client:
        assert client.invoke("sm", {}).error_type == "Out.Of.Stock"
        (ex,) = client.workflows.list()
        assert ex["status"] == "failed"
        assert ex["error"] == {"errorType": "Out.Of.Stock", "errorMessage": "none left"}


def begin(client: TestClient, clock: FakeClock, eid: str, steps: int) -> tuple[dict, dict]:
    """An execution `eid` created through the service after `steps` states ran (as a
    worker that then died would leave it): (the service's answer, the state sent)."""
    machine = StateMachine("sm", DEFINITION)
    ex = machine.start(1, name=eid, now=clock.now())
    for _ in range(steps):
        machine.step(ex, Env(InMemoryRunner({"inc": lambda x: x + 1}), now=clock.now))
    state = ex.to_dict()
    events = state.pop("history")
    svc = client.orchestration.machines
    return client.call(lambda: svc.serve(["begin", "sm", eid, 1, state, events])), state


def test_resume_goes_on_from_the_last_checkpoint_and_waits_out_only_the_rest() -> None:
    clock = FakeClock()
    app, calls = make_app(clock)
    with TestClient(app) as client:
        svc = client.orchestration.machines
        # Given an execution that ran state A, began its 600 s Wait and then died
        doc, _ = begin(client, clock, "e1", 1)
        client.call(lambda: svc.serve(["wait", "e1", "W", clock.now() + 600, doc["length"]]))
        clock.t += 200  # the process was down for 200 s
        # When the supervisor recovers running executions
        assert client.call(svc.recover) == 1
        client.call(svc.idle)
        # Then A did not run again, the Wait slept the 400 s left, and B ran
        final = client.workflows.describe("e1")
        assert final["status"] == "succeeded" and final["output"] == 3
        assert calls == [2]
        assert clock.slept == [400]
        asl = [a["type"] for e in client.workflows.history("e1")
               for a in e["data"].get("events", [])]
        assert asl.count("ExecutionStarted") == 1 and asl.count("ExecutionSucceeded") == 1


def test_a_second_driver_is_fenced_off() -> None:
    clock = FakeClock()
    app, _ = make_app(clock)
    with TestClient(app) as client:
        svc = client.orchestration.machines
        doc, state = begin(client, clock, "e2", 0)
        # a retried invocation with the same id attaches to the execution
        again, _ = begin(client, clock, "e2", 0)
        assert again["length"] == doc["length"] == 1
        client.call(lambda: svc.serve(["step", "e2", state, [], doc["length"]]))
        with pytest.raises(HistoryConflict):  # a driver that had seen the old length
            client.call(lambda: svc.serve(["step", "e2", state, [], doc["length"]]))
        with pytest.raises(LookupError, match="no state machine execution"):
            client.call(lambda: svc.serve(["resume", "nope"]))
