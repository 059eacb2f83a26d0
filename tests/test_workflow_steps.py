"""Decorated step functions (`@app.step`), parent cancel → children, and retry counters
that survive a restart (see docs/workflows.md)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from squall import App
from squall.backends.workflow_store import CANCELLED, COMPENSATED
from squall.config import ConfigError
from squall.testing import TestClient
from squall.testing.conformance import FakeClock
from squall.workflows import WorkflowEngine


def make_app() -> tuple[App, list, dict]:
    app = App("steps")
    calls: list = []
    flags = {"fail": 0, "gate": threading.Event(), "started": threading.Event()}

    @app.step()
    def refund(order):
        calls.append(("refund", order))

    @app.step(retry={"IntervalSeconds": 0.001, "MaxAttempts": 2, "BackoffRate": 1.0},
              compensate=refund)
    def charge(order):
        calls.append(("charge", order))
        if flags["fail"] > 0:
            flags["fail"] -= 1
            raise ConnectionError("card network down")
        return {"charged": order["amount"]}

    @app.step()
    def add(a, b, *, scale=1):
        return (a + b) * scale

    @app.step()
    async def shout(text):
        return text.upper()

    @app.step()
    def ship(order):
        raise RuntimeError("no courier")

    @app.workflow()
    def checkout(wf, order):
        paid = charge(order)          # a durable step, with its declared retry/compensation
        total = add(paid["charged"], 1, scale=10)
        if order.get("ship"):
            ship(order)
        return total

    @app.workflow()
    async def loud(wf, text):
        parts = await wf.all([shout.call(text), shout.call(text + "!")])
        return [await shout(text), *parts]

    @app.workflow()
    def by_name(wf, order):
        return wf.step("charge", order)  # by name: still the declared retry policy

    @app.step()
    def hold(x):
        calls.append(("hold", x))

    @app.step()
    def unhold(x):
        calls.append(("unhold", x))

    @app.workflow()
    def child_waits(wf, x):
        wf.step("hold", x, compensate="unhold")
        return wf.wait_for_signal("go")

    @app.workflow()
    def parent(wf, x):
        return wf.child("child_waits", x)

    @app.function()
    def slow_hold(x):
        flags["started"].set()
        flags["gate"].wait(10)
        calls.append(("slow_hold", x))

    @app.workflow()
    def in_flight(wf, x):
        wf.step("slow_hold", x, compensate="unhold")
        return wf.wait_for_signal("never")

    @app.workflow()
    def careless(wf, x):
        wf.start_child("child_waits", x)  # not awaited
        wf.wait_for_signal("give-up")
        ship({"id": x})  # fails: the parent fails

    @app.workflow()
    def stubborn(wf, x):
        return charge({"amount": x})

    return app, calls, flags


@pytest.fixture()
def env():
    app, calls, flags = make_app()
    clock = FakeClock()
    with TestClient(app, clock=clock) as client:
        yield client, calls, flags, clock


def test_a_decorated_step_is_registered_and_plain_outside_a_workflow() -> None:
    app = App("plain")

    @app.step(retry={"MaxAttempts": 2}, compensate=("undo", {"all": True}))
    def add(a, b):
        return a + b

    # It is a function of the app, with its declared policy recorded
    assert "add" in app.functions
    spec = app.workflow_steps["add"]
    assert spec["retry"]["max_attempts"] == 2 and spec["compensate"] == ["undo", {"all": True}]
    # and called directly (a unit test, a script), it is just the function
    assert add(2, 3) == 5 and add.__wrapped__(1, 1) == 2


def test_decorated_steps_run_durably_with_their_settings(env) -> None:
    client, calls, flags, _ = env
    flags["fail"] = 2  # two failures: the declared policy (2 retries) absorbs them
    out = client.invoke("checkout", {"amount": 5}, check=True).output
    assert out == 60
    assert [c[0] for c in calls] == ["charge", "charge", "charge"]
    ex = client.workflows.list(name="checkout")[0]
    hist = client.workflows.history(ex["id"])
    done = [e["data"] for e in hist if e["type"] == "StepCompleted"]
    assert [d["name"] for d in done] == ["charge", "add"]
    assert done[0]["attempts"] == 3
    # several arguments travel as one input and come back as arguments
    assert done[1]["output"] == 60
    failed = [e["data"]["attempt"] for e in hist if e["type"] == "StepAttemptFailed"]
    assert failed == [1, 2]


def test_a_decorated_steps_compensation_runs_in_the_saga(env) -> None:
    client, calls, _, _ = env
    result = client.invoke("checkout", {"amount": 5, "ship": True})
    assert not result.ok and "no courier" in result.error_message
    assert [c[0] for c in calls] == ["charge", "refund"]
    assert client.workflows.list(name="checkout")[0]["status"] == COMPENSATED


def test_async_decorated_steps_and_call_for_fan_out(env) -> None:
    client, *_ = env
    assert client.invoke("loud", "hi", check=True).output == ["HI", "HI", "HI!"]


def test_a_step_called_by_name_keeps_its_declared_retry(env) -> None:
    client, calls, flags, _ = env
    flags["fail"] = 2
    assert client.invoke("by_name", {"amount": 1}, check=True).output == {"charged": 1}
    flags["fail"] = 3  # one more than the policy allows
    assert not client.invoke("by_name", {"amount": 1}).ok


def test_step_declaration_errors_are_clear() -> None:
    app = App("bad")

    def pay(x):
        return x

    with pytest.raises(ConfigError, match="compensate must be"):
        app.step(compensate=42)(pay)
    with pytest.raises(ConfigError, match="name="):
        app.step()(lambda x: x)
    step = app.step(name="fine")(lambda x: x)
    with pytest.raises(RuntimeError, match="running workflow"):
        step.call(1)
    assert step(7) == 7


def test_cancelling_a_parent_cancels_its_running_children(env) -> None:
    client, calls, _, _ = env
    # Given a parent whose child has held something and waits for a signal
    pid = client.call(lambda: client.workflows.start("parent", 3)).id
    client.call(client.workflows.idle)
    kids = client.workflows.list(name="child_waits")
    assert len(kids) == 1 and kids[0]["status"] == "running"
    # When the parent is cancelled
    client.call(lambda: client.workflows.cancel(pid))
    parent = client.call(lambda: client.workflows.result(pid, 10))
    child = client.call(lambda: client.workflows.result(kids[0]["id"], 10))
    # Then both are cancelled and the child's compensation ran
    assert parent.status == CANCELLED and child.status == CANCELLED
    assert ("unhold", 3) in calls
    reasons = [e["data"].get("reason") for e in client.workflows.history(child.id)
               if e["type"] == "CancelRequested"]
    assert reasons == [f"parent {pid} cancelled"]


def test_a_parent_that_ends_takes_its_running_children_with_it(env) -> None:
    client, calls, _, _ = env
    # Given a parent whose child holds something and waits
    pid = client.call(lambda: client.workflows.start("careless", 8)).id
    client.call(client.workflows.idle)
    # When the parent fails
    client.call(lambda: client.workflows.signal(pid, "give-up"))
    assert client.call(lambda: client.workflows.result(pid, 10)).status == "failed"
    client.call(client.workflows.idle)
    # Then its child was cancelled and compensated
    (kid,) = client.workflows.list(name="child_waits")
    assert kid["status"] == CANCELLED and ("unhold", 8) in calls


def test_a_cancel_waits_for_a_step_in_flight_and_compensates_it(env) -> None:
    client, calls, flags, _ = env
    eid = client.call(lambda: client.workflows.start("in_flight", 5)).id
    assert flags["started"].wait(10)
    # When the execution is cancelled while its step runs
    client.call(lambda: client.workflows.cancel(eid))
    flags["gate"].set()
    ex = client.call(lambda: client.workflows.result(eid, 10))
    # Then the step finished first, and was compensated
    assert ex.status == CANCELLED
    assert calls == [("slow_hold", 5), ("unhold", 5)]


def test_retry_attempts_survive_a_restart(env) -> None:
    client, calls, flags, clock = env
    flags["fail"] = 100  # always fails: the policy allows 1 + 2 attempts in all
    stuck = asyncio.Event()
    hold = asyncio.Event()  # never set: the first engine "dies" during its back-off

    async def sleep_forever(_s: float) -> None:
        stuck.set()
        await hold.wait()

    store, invoke = client.orchestration.workflow_store, client._invoker.invoke
    specs = client.workflows.workflows
    first = WorkflowEngine(store, invoke, workflows=specs, clock=clock, sleep=sleep_forever)
    eid = client.call(lambda: first.start("stubborn", 4)).id
    client.call(lambda: asyncio.wait_for(stuck.wait(), 10))
    # When that engine stops (a crash) after one failed attempt, and another recovers
    client.call(first.stop)
    assert [c[0] for c in calls] == ["charge"]
    second = WorkflowEngine(store, invoke, workflows=specs, clock=clock,
                            sleep=lambda s: asyncio.sleep(0))
    client.call(second.recover)
    ex = client.call(lambda: second.result(eid, 10))
    client.call(second.stop)
    # Then it used only the attempts left: three in all, not 1 + 3
    assert [c[0] for c in calls] == ["charge"] * 3
    assert ex.status == "failed" and "card network down" in ex.error["errorMessage"]
    hist = store.history(eid)
    assert [e.data["attempt"] for e in hist if e.type == "StepAttemptFailed"] == [1, 2]
    assert [e.data["attempts"] for e in hist if e.type == "StepFailed"] == [3]
