"""Durable state-machine executions (squall.workflows.machines): checkpoints after every
state and failed attempt, resume from the last one, long Waits and back-offs parked on
durable timers, one driver at a time. In-process, on an injected clock; the kill -9 of a
real server is tests/test_asl_crash.py."""

from __future__ import annotations

import threading

import pytest

from squall import App
from squall.asl.engine import Env, StateMachine
from squall.asl.runner import InMemoryRunner
from squall.backends.workflow_store import HistoryConflict
from squall.workflows.machines import MachineExecutions
from squall.testing import TestClient

from .fakes import FakeClock

DEFINITION = {"StartAt": "A", "States": {
    "A": {"Type": "Task", "Resource": "inc", "Next": "W"},
    "W": {"Type": "Wait", "Seconds": 600, "Next": "B"},
    "B": {"Type": "Task", "Resource": "inc", "End": True}}}


def make_app(clock: FakeClock, definition: dict = DEFINITION, **settings) -> tuple[App, list]:
    app = App("durable")
    calls: list = []

    @app.function
    def inc(event, ctx):
        calls.append(event)
        return event + 1

    app.state_machine("sm", definition, now=clock.now, **{"sleep": clock.sleep, **settings})
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


class Caller:
    """A synchronous `client.invoke` on a thread (it returns when the execution ends),
    and the parked executions once it has parked: {id: when its timer fires}."""

    def __init__(self, client: TestClient, name: str, data) -> None:
        self.results: list = []
        self.thread = threading.Thread(
            target=lambda: self.results.append(client.invoke(name, data)))
        self.thread.start()
        self.parked = client.call(client.orchestration.machines.until_parked, timeout=10)

    def result(self):
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.results[0]


def test_a_wait_longer_than_the_timeout_parks_and_the_timer_resumes_it() -> None:
    # Given a state machine whose 1 h Wait is far beyond its 1 s timeout, on the
    # harness's clock (no injected sleeper: long Waits become durable timers)
    clock = FakeClock()
    app, calls = make_app(clock, {**DEFINITION, "States": {
        **DEFINITION["States"], "W": {"Type": "Wait", "Seconds": 3600, "Next": "B"}}},
        sleep=None, timeout_s=1)
    with TestClient(app, clock=clock.now) as client:
        svc = client.orchestration.machines
        # When the execution reaches the Wait, its invocation ends: the execution parks
        caller = Caller(client, "sm", 1)
        (eid, fire_at), = caller.parked.items()
        assert fire_at == clock.now() + 3600 and calls == [1]
        client.drain()  # not due yet: nothing resumes
        assert svc.parked == {eid: fire_at} and calls == [1]
        # Then, once the clock passes fire_at, the timer resumes it to the end and the
        # caller that invoked it synchronously gets the final output
        clock.t += 3600
        client.drain()
        result = caller.result()
        assert result.ok and result.output == 3 and calls == [1, 2]
        kinds = [e["type"] for e in client.workflows.history(eid)]
        assert kinds == ["StateMachineStarted", "StateMachineStep", "StateMachineWait",
                         "StateMachineStep", "StateMachineStep"]
        assert svc.parked == {}


FLAKY = {"StartAt": "T", "States": {
    "T": {"Type": "Task", "Resource": "flaky", "Next": "Done",
          "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 3,
                     "BackoffRate": 2}],
          "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]},
    "Done": {"Type": "Succeed"},
    "Caught": {"Type": "Pass", "Result": "caught", "End": True}}}


class Crash(Exception):
    """The process died right after a checkpoint."""


def test_a_restart_between_attempts_continues_the_retry_count_and_back_off() -> None:
    # Given a Task that always fails, with 3 retries (1 s, 2 s, 4 s back-off), run by a
    # durable runner that dies right after every checkpoint of a failed attempt
    machine, clock = StateMachine("flaky", FLAKY), FakeClock()
    attempts: list = []
    runner = InMemoryRunner({"flaky": lambda x: attempts.append(x) or 1 / 0})
    saved: list = []

    def checkpoint(ex) -> None:
        saved.append(ex.to_dict())
        raise Crash()

    ex = machine.start({}, name="f", now=clock.now())
    crashes = 0
    for _ in range(20):  # (bounded: a runner that forgot its counts would retry forever)
        if ex.status != "RUNNING":
            break
        try:
            machine.step(ex, Env(runner, now=clock.now, sleep=clock.sleep,
                                 checkpoint=checkpoint))
        except Crash:  # When it is resumed from its last checkpoint each time
            crashes += 1
            ex = type(ex).from_dict(saved[-1])
    # Then the Task ran MaxAttempts + 1 times in all, on the same back-off schedule
    assert crashes == 3 and len(attempts) == 4
    assert clock.slept == [1, 2, 4]
    assert ex.status == "SUCCEEDED" and ex.output == "caught" and ex.retry is None
    kinds = [e["type"] for e in ex.history]
    assert kinds.count("TaskStateEntered") == 1 and kinds.count("TaskFailed") == 4
    assert saved[-1]["retry"]["counts"] == [3] and saved[-1]["retry"]["attempt"] == 3


def test_a_long_back_off_parks_and_a_restarted_supervisor_rearms_it() -> None:
    clock = FakeClock()
    app = App("backoff")
    attempts: list = []

    @app.function
    def flaky(event, ctx):
        attempts.append(clock.now())
        raise RuntimeError("not yet")

    definition = {**FLAKY, "States": {**FLAKY["States"], "T": {
        **FLAKY["States"]["T"], "Retry": [{"ErrorEquals": ["States.ALL"],
                                           "IntervalSeconds": 60, "MaxAttempts": 2,
                                           "BackoffRate": 1}]}}}
    app.state_machine("sm", definition, now=clock.now, timeout_s=1)
    with TestClient(app, clock=clock.now) as client:
        svc = client.orchestration.machines
        # Given the first attempt failed and its 60 s back-off parked the execution
        caller = Caller(client, "sm", {})
        (eid, fire_at), = caller.parked.items()
        assert fire_at == clock.now() + 60 and len(attempts) == 1
        # When a supervisor restarts before it ends, it arms the timer (no early attempt)
        again = MachineExecutions(client.orchestration.workflow_store, svc.invoke,
                                  clock=clock.now)
        assert client.call(again.recover) == 1 and again.parked == {eid: fire_at}
        assert len(attempts) == 1
        # Then each timer runs one more attempt, and after MaxAttempts the Catch
        for n in (2, 3):
            clock.t += 60
            client.drain()
            assert len(attempts) == n
        result = caller.result()
        assert result.ok and result.output == "caught"
        assert attempts == [attempts[0], attempts[0] + 60, attempts[0] + 120]


def test_a_parked_wait_past_the_machine_deadline_wakes_at_the_deadline_and_times_out() -> None:
    clock = FakeClock()
    app = App("deadline")
    app.state_machine("sm", {"TimeoutSeconds": 100, "StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": 3600, "End": True}}}, now=clock.now, timeout_s=1)
    with TestClient(app, clock=clock.now) as client:
        # Given a 1 h Wait in a machine with TimeoutSeconds 100: its timer is the deadline
        caller = Caller(client, "sm", {})
        (eid, wake), = caller.parked.items()
        assert wake == clock.now() + 100
        # When the deadline passes, it times out (not an hour later, not in a loop)
        clock.t += 100
        client.drain()
        assert caller.result().error_type == "States.Timeout"
        assert client.workflows.describe(eid)["status"] == "timed_out"
