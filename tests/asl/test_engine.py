"""The interpreter through its public entry points: StateMachine.run / start / step, with
an in-memory task runner and a fake clock (no real waits)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from squall.asl import DefinitionError, Env, Execution, StateMachine, StatesError
from squall.asl.runner import InMemoryRunner

from .fakes import FakeClock


def run(definition: dict[str, Any], data: Any = None, handlers: dict[str, Any] | None = None,
        clock: FakeClock | None = None, **env: Any) -> Execution:
    clock = clock or FakeClock()
    runner = InMemoryRunner(handlers or {})
    return StateMachine("sm", definition).run(
        data if data is not None else {},
        Env(runner, now=clock.now, sleep=clock.sleep, rng=random.Random(7), **env),
        name="ex-1")


def one(state: dict[str, Any]) -> dict[str, Any]:
    return {"StartAt": "S", "States": {"S": {**state, "End": True}}}


# -- Pass and the data paths ---------------------------------------------------------

def test_pass_result_and_result_path() -> None:
    ex = run(one({"Type": "Pass", "Result": {"x": 1}, "ResultPath": "$.r"}), {"a": 1})
    assert ex.output == {"a": 1, "r": {"x": 1}}


def test_input_output_paths_and_null() -> None:
    ex = run(one({"Type": "Pass", "InputPath": "$.a", "OutputPath": "$.b"}),
             {"a": {"b": 2}})
    assert ex.output == 2
    assert run(one({"Type": "Pass", "InputPath": None}), {"a": 1}).output == {}
    assert run(one({"Type": "Pass", "ResultPath": None, "Result": 5}), {"a": 1}).output == {
        "a": 1}
    assert run(one({"Type": "Pass", "OutputPath": None}), {"a": 1}).output == {}


def test_parameters_with_paths_context_and_intrinsics() -> None:
    ex = run(one({"Type": "Pass", "Parameters": {
        "name.$": "$.who", "all.$": "$.items[*].id", "static": [{"k.$": "$.who"}],
        "exec.$": "$$.Execution.Name", "state.$": "$$.State.Name",
        "machine.$": "$$.StateMachine.Name",
        "greeting.$": "States.Format('Hi {}, you have {} items', $.who, "
                      "States.ArrayLength($.items))"}}),
        {"who": "ann", "items": [{"id": 1}, {"id": 2}]})
    assert ex.output == {"name": "ann", "all": [1, 2], "static": [{"k": "ann"}],
                         "exec": "ex-1", "state": "S", "machine": "sm",
                         "greeting": "Hi ann, you have 2 items"}


def test_missing_path_is_states_runtime_and_uncatchable() -> None:
    ex = run(one({"Type": "Pass", "InputPath": "$.nope"}), {"a": 1})
    assert ex.status == "FAILED" and ex.error == "States.Runtime"
    assert "Invalid path '$.nope'" in ex.cause
    ex = run({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "f", "ResultSelector": {"x.$": "$.missing"},
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "C"}], "End": True},
        "C": {"Type": "Succeed"}}}, {}, {"f": lambda p: {}})
    assert ex.error == "States.Runtime"


def test_jsonpath_filters_slices_and_deep_scan() -> None:
    data = {"store": {"book": [{"t": "a", "p": 8}, {"t": "b", "p": 12}, {"t": "c", "p": 5}]}}
    ex = run(one({"Type": "Pass", "Parameters": {
        "cheap.$": "$.store.book[?(@.p < 10)].t", "first2.$": "$.store.book[0:2].t",
        "all.$": "$..t", "last.$": "$.store.book[-1].t"}}), data)
    assert ex.output == {"cheap": ["a", "c"], "first2": ["a", "b"], "all": ["a", "b", "c"],
                         "last": "c"}


# -- Task, Retry, Catch, timeouts -----------------------------------------------------

def test_task_result_selector_result_path() -> None:
    ex = run(one({"Type": "Task", "Resource": "double", "Parameters": {"n.$": "$.n"},
                  "ResultSelector": {"v.$": "$.n"}, "ResultPath": "$.out"}),
             {"n": 2}, {"double": lambda p: {"n": p["n"] * 2}})
    assert ex.output == {"n": 2, "out": {"v": 4}}
    types = [e["type"] for e in ex.history]
    assert types == ["ExecutionStarted", "TaskStateEntered", "TaskScheduled", "TaskStarted",
                     "TaskSucceeded", "TaskStateExited", "ExecutionSucceeded"]


def test_lambda_invoke_integration_payload_shape() -> None:
    ex = run(one({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                  "Parameters": {"FunctionName": "arn:aws:lambda:eu-west-1:1:function:f:live",
                                 "Payload": {"x.$": "$.x"}},
                  "OutputPath": "$.Payload"}), {"x": 3}, {"f": lambda p: {"got": p["x"]}})
    assert ex.output == {"got": 3}


def test_retry_backoff_max_delay_then_success() -> None:
    calls = []

    def flaky(p: Any) -> Any:
        calls.append(p)
        if len(calls) < 4:
            raise TimeoutError("slow")
        return "ok"

    clock = FakeClock()
    ex = run(one({"Type": "Task", "Resource": "f", "Retry": [{
        "ErrorEquals": ["TimeoutError"], "IntervalSeconds": 2, "BackoffRate": 3,
        "MaxAttempts": 5, "MaxDelaySeconds": 10}]}), {}, {"f": flaky}, clock)
    assert ex.output == "ok"
    assert clock.slept == [2, 6, 10]


def test_retry_jitter_full_stays_below_the_delay() -> None:
    clock = FakeClock()
    ex = run(one({"Type": "Task", "Resource": "f", "Retry": [{
        "ErrorEquals": ["States.ALL"], "IntervalSeconds": 4, "MaxAttempts": 2,
        "JitterStrategy": "FULL"}]}), {}, {"f": lambda p: 1 / 0}, clock)
    assert ex.error == "ZeroDivisionError"
    assert len(clock.slept) == 2 and 0 <= clock.slept[0] <= 4 and 0 <= clock.slept[1] <= 8


def test_retry_exhausted_then_catch_with_result_path() -> None:
    ex = run({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "f", "Next": "Done",
              "Retry": [{"ErrorEquals": ["ValueError"], "MaxAttempts": 1}],
              "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.error",
                         "Next": "Handle"}]},
        "Handle": {"Type": "Pass", "End": True},
        "Done": {"Type": "Succeed"}}},
        {"id": 1}, {"f": lambda p: (_ for _ in ()).throw(ValueError("bad"))})
    assert ex.status == "SUCCEEDED"
    assert ex.output["id"] == 1 and ex.output["error"]["Error"] == "ValueError"
    assert json.loads(ex.output["error"]["Cause"])["errorMessage"] == "bad"


def test_task_failed_does_not_match_timeout() -> None:
    def slow(p: Any) -> Any:
        clock.sleep(5)
        return 1

    clock = FakeClock()
    ex = run({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "f", "TimeoutSeconds": 2,
              "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "X"}], "End": True},
        "X": {"Type": "Succeed"}}}, {}, {"f": slow}, clock)
    assert ex.error == "States.Timeout"
    assert [e["type"] for e in ex.history][-3:] == ["TaskStarted", "TaskTimedOut",
                                                     "ExecutionFailed"]


def test_timeout_seconds_path() -> None:
    clock = FakeClock()

    def slow(p: Any) -> Any:
        clock.sleep(3)
        return 1
    ex = run(one({"Type": "Task", "Resource": "f", "TimeoutSecondsPath": "$.t"}), {"t": 10},
             {"f": slow}, clock)
    assert ex.status == "SUCCEEDED"


def test_execution_timeout_during_wait() -> None:
    clock = FakeClock()
    d = {"TimeoutSeconds": 5, "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60,
                                                             "End": True}}}
    ex = run(d, {}, None, clock)
    assert ex.status == "TIMED_OUT" and ex.error == "States.Timeout"
    assert clock.slept == [5]


# -- Choice, Wait, Succeed, Fail ------------------------------------------------------

CHOICE = {"StartAt": "C", "States": {
    "C": {"Type": "Choice", "Default": "D", "Choices": [
        {"And": [{"Variable": "$.n", "IsNumeric": True},
                 {"Variable": "$.n", "NumericGreaterThanPath": "$.limit"}], "Next": "Big"},
        {"Not": {"Variable": "$.name", "StringMatches": "a*\\*"}, "Next": "NoStar"},
        {"Or": [{"Variable": "$.t", "TimestampLessThan": "2020-01-01T00:00:00Z"},
                {"Variable": "$.flag", "BooleanEquals": True}], "Next": "Old"}]},
    "Big": {"Type": "Pass", "Result": "big", "End": True},
    "NoStar": {"Type": "Pass", "Result": "nostar", "End": True},
    "Old": {"Type": "Pass", "Result": "old", "End": True},
    "D": {"Type": "Pass", "Result": "default", "End": True}}}


@pytest.mark.parametrize("data,want", [
    ({"n": 5, "limit": 3, "name": "abc*"}, "big"),
    ({"n": 1, "limit": 3, "name": "xyz"}, "nostar"),
    ({"n": 1, "limit": 3, "name": "abc*", "t": "2019-05-01T10:00:00.123+02:00",
      "flag": False}, "old"),
    ({"n": 1, "limit": 3, "name": "abc*", "t": "2021-05-01T10:00:00Z", "flag": False},
     "default"),
])
def test_choice_combinators(data: Any, want: str) -> None:
    assert run(CHOICE, data).output == want


def test_choice_no_match() -> None:
    d = {"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": [
        {"Variable": "$.x", "IsPresent": True, "Next": "E"}]}, "E": {"Type": "Succeed"}}}
    ex = run(d, {})
    assert ex.error == "States.NoChoiceMatched"


def test_wait_seconds_path_and_timestamp() -> None:
    clock = FakeClock(start=1_700_000_000.0)
    d = {"StartAt": "A", "States": {
        "A": {"Type": "Wait", "SecondsPath": "$.s", "Next": "B"},
        "B": {"Type": "Wait", "TimestampPath": "$.until", "End": True}}}
    ex = run(d, {"s": 30, "until": "2023-11-14T22:15:00Z"}, None, clock)
    assert ex.status == "SUCCEEDED"
    assert clock.slept[0] == 30
    assert clock.t == pytest.approx(1_700_000_100.0)


def test_fail_with_error_path_and_cause_path() -> None:
    d = {"StartAt": "S", "States": {"S": {"Type": "Fail", "ErrorPath": "$.e",
                                          "CausePath": "States.Format('code {}', $.c)"}}}
    ex = run(d, {"e": "Oops", "c": 7})
    assert (ex.error, ex.cause) == ("Oops", "code 7")
    assert ex.history[-1]["executionFailedEventDetails"] == {"error": "Oops", "cause": "code 7"}
    with pytest.raises(Exception) as info:
        ex.result()
    assert info.value.error == "Oops"  # type: ignore[attr-defined]


# -- Parallel and Map ------------------------------------------------------------------

def test_parallel_branches_and_failure() -> None:
    d = one({"Type": "Parallel", "Branches": [
        {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": 1, "End": True}}},
        {"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": "f", "End": True}}}],
        "ResultSelector": {"sum.$": "States.MathAdd($[0], $[1])"}})
    assert run(d, {}, {"f": lambda p: 2}).output == {"sum": 3}
    ex = run(d, {}, {"f": lambda p: 1 / 0})
    assert ex.error == "ZeroDivisionError"


def test_map_items_path_selector_context_and_concurrency() -> None:
    d = one({"Type": "Map", "ItemsPath": "$.xs", "MaxConcurrency": 2,
             "ItemSelector": {"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index",
                              "k.$": "$.k"},
             "ItemProcessor": {"StartAt": "T", "States": {
                 "T": {"Type": "Task", "Resource": "f", "End": True}}}})
    ex = run(d, {"xs": [10, 20, 30], "k": "K"}, {"f": lambda p: f"{p['k']}{p['i']}:{p['v']}"},
             max_workers=4)
    assert ex.output == ["K0:10", "K1:20", "K2:30"]
    types = [e["type"] for e in ex.history]
    assert types.count("MapIterationStarted") == 3 and "MapStateSucceeded" in types


def test_map_legacy_iterator_parameters_and_tolerated_failures() -> None:
    d = one({"Type": "Map", "Parameters": {"x.$": "$$.Map.Item.Value"},
             "ToleratedFailureCount": 1,
             "Iterator": {"StartAt": "T", "States": {
                 "T": {"Type": "Task", "Resource": "f", "End": True}}}})

    def f(p: Any) -> Any:
        if p["x"] == 2:
            raise ValueError("two")
        return p["x"]
    ex = run(d, [1, 2, 3], {"f": f})
    assert ex.output[0] == 1 and ex.output[2] == 3 and ex.output[1]["Error"] == "ValueError"
    ex = run(d, [2, 2, 3], {"f": f})
    assert ex.error == "States.ExceedToleratedFailureThreshold"


def test_map_hundred_items_fan_out() -> None:
    d = one({"Type": "Map", "ItemProcessor": {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "sq", "End": True}}}})
    ex = run(d, list(range(100)), {"sq": lambda n: n * n}, max_workers=8)
    assert ex.output == [n * n for n in range(100)]


# -- variables, durability ---------------------------------------------------------------

def test_assign_variables_visible_in_later_states() -> None:
    d = {"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Result": {"v": 42}, "Assign": {"answer.$": "$.v"},
              "Next": "B"},
        "B": {"Type": "Pass", "Parameters": {"got.$": "$answer"}, "End": True}}}
    assert run(d, {}).output == {"got": 42}


def test_step_by_step_execution_can_be_persisted_and_resumed() -> None:
    """The durable-workflow contract: persist `Execution.to_dict()` after each step; a new
    process rebuilds it with `from_dict` and carries on from the next state."""
    d = {"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "f", "Next": "B"},
        "B": {"Type": "Task", "Resource": "g", "End": True}}}
    machine = StateMachine("sm", d)
    clock = FakeClock()
    runner = InMemoryRunner({"f": lambda p: p + 1, "g": lambda p: p * 10})
    ex = machine.start(1, name="e", now=clock.now())
    machine.step(ex, Env(runner, now=clock.now, sleep=clock.sleep))
    saved = json.loads(json.dumps(ex.to_dict()))  # plain JSON: storable anywhere
    assert saved["current"] == "B" and saved["state_input"] == 2
    # "crash": a new runner, a new Execution from the saved state
    runner2 = InMemoryRunner({"f": lambda p: pytest.fail("f ran twice"), "g": lambda p: p * 10})
    resumed = machine.resume(Execution.from_dict(saved), Env(runner2, now=clock.now))
    assert resumed.output == 20
    assert [c[0] for c in runner2.calls] == ["g"]


def test_pending_wait_lets_a_durable_runner_arm_a_timer_instead_of_sleeping() -> None:
    d = {"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "W"},
        "W": {"Type": "Wait", "SecondsPath": "$.s", "Next": "B"},
        "B": {"Type": "Pass", "End": True}}}
    machine, clock = StateMachine("sm", d), FakeClock()
    env = Env(InMemoryRunner({}), now=clock.now, sleep=lambda s: pytest.fail("slept"))
    ex = machine.start({"s": 90}, now=clock.now())
    assert machine.pending_wait(ex, env) is None  # at A, a Pass
    machine.step(ex, env)
    assert machine.pending_wait(ex, env) == 90  # arm a durable timer for 90 s…
    clock.t += 90  # …which fires
    machine.step(ex, Env(InMemoryRunner({}), now=clock.now, sleep=lambda s: None))
    assert machine.resume(ex, env).output == {"s": 90}


# -- validation -------------------------------------------------------------------------

@pytest.mark.parametrize("definition,fragment", [
    ({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nope"}}},
     "state 'A' (Pass): Next 'Nope' is not a state"),
    ({"StartAt": "A", "States": {"A": {"Type": "Pass"}}}, "needs Next or End"),
    ({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True},
                                 "B": {"Type": "Succeed"}}}, "'B' is unreachable"),
    ({"StartAt": "A", "States": {"A": {"Type": "Pass", "InputPath": "$.[", "End": True}}},
     "InputPath"),
    ({"StartAt": "A", "States": {"A": {"Type": "Bogus", "End": True}}}, "Type must be"),
    ({"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {
        "x.$": "States.Nope(1)"}, "End": True}}}, "unknown intrinsic function States.Nope"),
    ({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "f", "End": True,
                                       "Retry": [{"ErrorEquals": ["States.ALL", "X"]}]}}},
     "States.ALL must appear alone"),
    ({"StartAt": "A", "States": {"A": {"Type": "Wait", "End": True}}}, "needs exactly one of"),
])
def test_validation_names_state_and_field(definition: dict[str, Any], fragment: str) -> None:
    with pytest.raises(DefinitionError) as info:
        StateMachine("sm", definition)
    assert fragment in str(info.value)


def test_states_error_shape() -> None:
    assert StatesError("E", None).as_output() == {"Error": "E", "Cause": None}
