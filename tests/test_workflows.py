"""Durable Python workflows, in-process: replay, fan-out/fan-in, saga, retries, timers,
signals, child workflows, cancel, non-determinism (see docs/workflows.md)."""

from __future__ import annotations

import threading

import pytest

from squall import App
from squall.backends.workflow_store import (CANCELLED, COMPENSATED, NONDETERMINISTIC,
                                            SUCCEEDED)
from squall.testing import TestClient
from squall.testing.conformance import FakeClock
from squall.workflows import SignalTimeout, StepFailed, StepRetry, WorkflowEngine


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, object]] = []
        self.running = 0
        self.peak = 0

    def hit(self, name: str, x: object) -> None:
        with self.lock:
            self.calls.append((name, x))

    def names(self) -> list[str]:
        return [n for n, _ in self.calls]


def make_app() -> tuple[App, Counter, dict]:
    app = App("wf")
    seen = Counter()
    flags: dict = {"fail_times": 0, "changed": False}

    @app.function()
    def double(x):
        seen.hit("double", x)
        return x * 2

    @app.function()
    def slowish(x):
        with seen.lock:
            seen.running += 1
            seen.peak = max(seen.peak, seen.running)
        try:
            threading.Event().wait(0.002)  # overlap, so the concurrency limit is visible
            return x + 1
        finally:
            with seen.lock:
                seen.running -= 1

    @app.function()
    def flaky(x):
        seen.hit("flaky", x)
        if flags["fail_times"] > 0:
            flags["fail_times"] -= 1
            raise ConnectionError("try again")
        return "ok"

    @app.function()
    def charge(x):
        seen.hit("charge", x)
        return {"charged": x}

    @app.function()
    def reserve(x):
        seen.hit("reserve", x)
        return {"reserved": x}

    @app.function()
    def ship(x):
        raise RuntimeError("no courier")

    @app.function()
    def refund(x):
        seen.hit("refund", x)

    @app.function()
    def release(x):
        seen.hit("release", x)

    @app.workflow()
    def three(wf, x):
        a = wf.step("double", x)
        b = wf.step("double", a)
        return wf.step("double", b)

    @app.workflow()
    def fan(wf, n):
        return sum(wf.all([wf.call("slowish", i) for i in range(n)]))

    @app.workflow()
    def mapped(wf, n):
        return wf.map("slowish", list(range(n)), concurrency=3)

    @app.workflow()
    def order(wf, x):
        wf.step("reserve", x, compensate="release")
        wf.step("charge", x, compensate=("refund", {"amount": x}))
        wf.step("ship", x)

    @app.workflow()
    def caught(wf, x):
        try:
            wf.step("ship", x)
        except StepFailed as exc:
            return f"handled {exc.error_type}"

    @app.workflow()
    def retried(wf, x):
        return wf.step("flaky", x, retry={"IntervalSeconds": 0.001, "MaxAttempts": 2,
                                          "BackoffRate": 1.0})

    @app.workflow()
    def napper(wf, x):
        t0 = wf.now()
        wf.sleep(86400)
        return {"slept": wf.now() - t0, "step": wf.step("double", x)}

    @app.workflow()
    def approval(wf, x):
        wf.step("reserve", x, compensate="release")
        try:
            answer = wf.wait_for_signal("approve", timeout=3600)
        except SignalTimeout:
            return "timed out"
        return {"approved": answer}

    @app.workflow()
    def drifting(wf, x):
        wf.step("charge" if flags["changed"] else "double", x)
        return wf.wait_for_signal("go")

    @app.workflow()
    def parent(wf, x):
        return [wf.child("three", x), wf.step("double", x)]

    @app.workflow()
    def dice(wf, x):
        values = [wf.random(), wf.uuid(), wf.now()]
        flags.setdefault("dice", []).append(values)
        wf.step("double", 1)
        return values

    @app.function()
    def kick(x):
        return app.invoke_async("three", x)  # a workflow: starts an execution, its id

    @app.workflow()
    async def async_flow(wf, x):
        a = await wf.call("double", x)
        parts = await wf.all([wf.call("double", a), wf.call("double", a + 1)])
        return parts

    return app, seen, flags


@pytest.fixture()
def env():
    app, seen, flags = make_app()
    clock = FakeClock()
    with TestClient(app, clock=clock) as client:
        yield client, seen, flags, clock


def test_steps_run_once_and_the_output_comes_back(env) -> None:
    client, seen, _, _ = env
    # When a three-step workflow is invoked like a function
    result = client.invoke("three", 3, check=True)
    # Then it returns its output, each step ran once although the code replayed
    assert result.output == 24
    assert seen.calls == [("double", 3), ("double", 6), ("double", 12)]
    ex = client.workflows.list(name="three")[0]
    assert ex["status"] == SUCCEEDED
    types = [e["type"] for e in client.workflows.history(ex["id"])]
    assert types == ["WorkflowStarted", "StepCompleted", "StepCompleted", "StepCompleted",
                     "WorkflowCompleted"]


def test_fan_out_of_100_parallel_steps(env) -> None:
    client, seen, _, _ = env
    assert client.invoke("fan", 100, check=True).output == sum(range(1, 101))
    ex = client.workflows.list(name="fan")[0]
    hist = client.workflows.history(ex["id"])
    assert sum(e["type"] == "StepCompleted" for e in hist) == 100
    assert 1 < seen.peak <= 8  # in parallel, under the engine's limit


def test_map_respects_its_concurrency(env) -> None:
    client, seen, _, _ = env
    assert client.invoke("mapped", 12, check=True).output == list(range(1, 13))
    assert seen.peak <= 3


def test_saga_compensates_in_reverse_order(env) -> None:
    client, seen, _, _ = env
    # Given reserve and charge succeeded, when ship fails
    result = client.invoke("order", 7)
    # Then the workflow fails, and refund then release ran (newest first)
    assert not result.ok and "no courier" in result.error_message
    assert seen.names() == ["reserve", "charge", "refund", "release"]
    assert seen.calls[2] == ("refund", {"amount": 7})
    ex = client.workflows.list(name="order")[0]
    assert ex["status"] == COMPENSATED
    comps = [e["data"]["function"] for e in client.workflows.history(ex["id"])
             if e["type"] == "CompensationCompleted"]
    assert comps == ["refund", "release"]


def test_a_caught_step_failure_does_not_fail_the_workflow(env) -> None:
    client, *_ = env
    assert client.invoke("caught", 1, check=True).output == "handled RuntimeError"


def test_retry_policy_retries_a_step(env) -> None:
    client, seen, flags, _ = env
    flags["fail_times"] = 2
    assert client.invoke("retried", 1, check=True).output == "ok"
    assert seen.names().count("flaky") == 3
    ex = client.workflows.list(name="retried")[0]
    done = [e for e in client.workflows.history(ex["id"]) if e["type"] == "StepCompleted"]
    assert done[0]["data"]["attempts"] == 3
    flags["fail_times"] = 5  # more failures than attempts: the workflow fails
    assert not client.invoke("retried", 1).ok


def test_retry_delays_follow_the_step_functions_shape() -> None:
    p = StepRetry.of({"IntervalSeconds": 2, "MaxAttempts": 5, "BackoffRate": 3,
                      "MaxDelaySeconds": 30, "JitterStrategy": "FULL"})
    assert [StepRetry(2, 5, 3.0, 30).delay(n) for n in (1, 2, 3, 4)] == [2, 6, 18, 30]
    assert p.delay(3, rand=lambda: 0.5) == 9.0
    assert p.matches("Anything") and not StepRetry(errors=("Timeout",)).matches("Other")


def test_durable_timer_for_a_day_survives_a_restart(env) -> None:
    client, seen, _, clock = env
    eid = client.call(lambda: client.workflows.start("napper", 5)).id
    client.call(client.workflows.idle)
    ex = client.workflows.describe(eid)
    assert ex["status"] == "running"
    # When the engine is stopped and a new one recovers the store (a restart)
    client.call(client.workflows.stop)
    engine = WorkflowEngine(client.orchestration.workflow_store, client._invoker.invoke,
                            workflows=client.workflows.workflows, clock=clock)
    client.call(engine.recover)
    client.call(engine.idle)
    assert client.call(engine.fire_due) == 0  # not due yet
    clock.advance(86400)
    assert client.call(engine.fire_due) == 1
    done = client.call(lambda: engine.result(eid, 10))
    assert done.status == SUCCEEDED
    assert done.output == {"slept": 86400.0, "step": 10}
    client.call(engine.stop)


def test_signal_delivers_data_and_timeout_fires(env) -> None:
    client, seen, _, clock = env
    a = client.call(lambda: client.workflows.start("approval", 1)).id
    b = client.call(lambda: client.workflows.start("approval", 2)).id
    client.call(client.workflows.idle)
    client.call(lambda: client.workflows.signal(a, "approve", {"by": "ann"}))
    assert client.call(lambda: client.workflows.result(a, 10)).output == {"approved": {"by": "ann"}}
    clock.advance(3601)
    client.call(client.workflows.fire_due)
    assert client.call(lambda: client.workflows.result(b, 10)).output == "timed out"


def test_signal_sent_from_outside_through_the_inbox(env) -> None:
    client, *_ = env
    a = client.call(lambda: client.workflows.start("approval", 1)).id
    client.call(client.workflows.idle)
    client.orchestration.workflow_store.post(a, "signal", {"name": "approve", "data": 42})
    assert client.call(client.workflows.poll_inbox) == 1
    assert client.call(lambda: client.workflows.result(a, 10)).output == {"approved": 42}


def test_cancel_runs_compensations(env) -> None:
    client, seen, _, _ = env
    a = client.call(lambda: client.workflows.start("approval", 9)).id
    client.call(client.workflows.idle)
    client.call(lambda: client.workflows.cancel(a))
    ex = client.call(lambda: client.workflows.result(a, 10))
    assert ex.status == CANCELLED
    assert seen.names() == ["reserve", "release"]


def test_changed_code_is_reported_as_non_deterministic(env) -> None:
    client, _, flags, _ = env
    a = client.call(lambda: client.workflows.start("drifting", 1)).id
    client.call(client.workflows.idle)
    flags["changed"] = True  # the code changes under the running execution
    client.call(lambda: client.workflows.signal(a, "go", 1))
    ex = client.call(lambda: client.workflows.result(a, 10))
    assert ex.status == NONDETERMINISTIC
    assert "operation #1 is step 'charge' in the code but step 'double' in the history" \
        in ex.error["errorMessage"]


def test_child_workflow(env) -> None:
    client, *_ = env
    assert client.invoke("parent", 1, check=True).output == [8, 2]
    kids = [e for e in client.workflows.list(name="three")]
    assert kids and kids[0]["parent"] is not None


def test_deterministic_helpers_repeat_on_replay(env) -> None:
    client, _, flags, _ = env
    out = client.invoke("dice", None, check=True).output
    first, second = flags["dice"]  # replayed once after the step
    assert first == second and out == first
    assert len(out[1]) == 36


def test_async_workflow_and_invoke_async(env) -> None:
    client, *_ = env
    assert client.invoke("async_flow", 1, check=True).output == [4, 6]
    eid = client.invoke("kick", 1, check=True).output
    client.drain()
    assert client.workflows.describe(eid)["output"] == 8


def test_unknown_workflow_is_a_clear_error(env) -> None:
    client, *_ = env
    with pytest.raises(LookupError, match="no workflow 'nope'"):
        client.call(lambda: client.workflows.start("nope", 1))


def test_drain_fires_due_workflow_timers_and_runs_what_they_cause() -> None:
    app = App("sleepy")
    got: list[object] = []

    @app.function()
    def notify(x):
        app.send("done", {"x": x})  # (queued: the next drain round runs it)
        return x

    @app.queue("done", batch_size=10)
    def on_done(batch, ctx):
        got.extend(m.data["x"] for m in batch)

    @app.workflow()
    def snooze(wf, x):
        wf.sleep(3600)
        wf.step("notify", x)
        wf.sleep(60)
        return wf.step("notify", x + 1)

    clock = FakeClock()
    with TestClient(app, clock=clock) as client:
        # Given an execution sleeping for an hour
        eid = client.invoke_async("snooze", 1)
        client.drain()
        assert client.workflows.describe(eid)["status"] == "running"
        clock.advance(3599)
        client.drain()
        assert got == [] and client.workflows.describe(eid)["status"] == "running"
        # When the hour has passed, one drain fires the timer, runs the step and the
        # message it sent, and stops at the next sleep (not due: drain is bounded)
        clock.advance(1)
        client.drain()
        assert got == [1] and client.workflows.describe(eid)["status"] == "running"
        client.drain()
        assert got == [1]
        clock.advance(60)
        client.drain()
        # Then it finished, each step once
        assert got == [1, 2]
        assert client.workflows.describe(eid)["output"] == 2
        assert [i.function for i in client.invocations("notify")] == ["notify", "notify"]
