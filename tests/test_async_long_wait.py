"""Asynchronous invocations of executions that wait far longer than a delivery's
visibility timeout (squall.workflows.handoff): a state machine in a 1 h Wait, a workflow
in a 1 h `wf.sleep` or waiting for a signal. The async delivery is done once the
execution is durably started (a workflow) or parked (a state machine): acknowledged
after one receive, never redelivered, never dead-lettered; the on-success / on-failure
destination gets the final outcome exactly once when the execution ends. In-process on
an injected clock; the kill -9 of a real server between park and fire is
test_async_long_wait_survives_a_kill."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import urllib.request
from pathlib import Path

import pytest

import crash_helpers
from crash_helpers import kill_tree
from servers import wait_until
from squall import App
from squall.backends.sqlite.workflows import SqliteWorkflowStore
from squall.backends.workflow_store import Execution
from squall.testing import TestClient
from squall.testing.conformance import FakeClock
from squall.workflows.handoff import Handoffs

HOUR = 3600
DESTINATIONS = {"on_success": "queue:done", "on_failure": "queue:failed"}


def make_app(clock: FakeClock) -> tuple[App, dict[str, list]]:
    app = App("longwait")
    got: dict[str, list] = {"done": [], "failed": []}

    @app.function()
    def inc(event, ctx):
        return event + 1

    @app.function()
    def boom(event, ctx):
        raise RuntimeError(f"boom {event}")

    def wait_then(task: str) -> dict:
        return {"StartAt": "A", "States": {
            "A": {"Type": "Task", "Resource": "inc", "Next": "W"},
            "W": {"Type": "Wait", "Seconds": HOUR, "Next": "B"},
            "B": {"Type": "Task", "Resource": task, "End": True}}}

    # timeout_s=1: the async delivery's visibility timeout is 2 * 1 + 5 = 7 s << 1 h
    app.state_machine("sm", wait_then("inc"), now=clock, timeout_s=1, **DESTINATIONS)
    app.state_machine("doomed", wait_then("boom"), now=clock, timeout_s=1, **DESTINATIONS)

    @app.workflow(timeout_s=1, **DESTINATIONS)
    def snooze(wf, x):
        wf.sleep(HOUR)
        return wf.step("inc", x)

    @app.workflow(timeout_s=1, **DESTINATIONS)
    def approval(wf, x):
        answer = wf.wait_for_signal("approve")
        if not answer["ok"]:
            raise RuntimeError(f"request {x} rejected")
        return answer

    app.rule("kick", {"source": ["test"]}, ["function:snooze"], input_path="$.detail")

    @app.queue("done")
    def collect_done(batch, ctx):
        got["done"].extend(m.data for m in batch)

    @app.queue("failed")
    def collect_failed(batch, ctx):
        got["failed"].extend(m.data for m in batch)

    return app, got


@pytest.fixture
def env():
    clock = FakeClock()
    app, got = make_app(clock)
    with TestClient(app, clock=clock) as client:
        yield client, clock, got


def settled(client: TestClient, queue: str) -> None:
    """The delivery of an async invocation is over: nothing left on its queue (visible,
    in flight or waiting for a retry), nothing in its dead-letter queue."""
    assert client.queue_stats(queue).total == 0
    assert client.dead_letters(queue) == []


def test_a_state_machine_in_a_long_wait_is_acked_once_and_its_output_delivered_once(env):
    client, clock, got = env
    # Given a state machine whose 1 h Wait is far beyond its delivery's 7 s visibility
    rid = client.invoke_async("sm", 1)
    client.drain()
    # Then its execution (the request id) parked and the delivery is done: acked
    assert client.workflows.describe(rid)["status"] == "running"
    assert list(client.orchestration.machines.parked) == [rid]
    settled(client, "_async.sm")
    assert len(client.invocations("sm")) == 1
    # When the visibility timeout passes many times over: no redelivery, no second run
    clock.advance(600)
    client.drain()
    assert len(client.invocations("sm")) == 1 and got == {"done": [], "failed": []}
    # When the Wait ends, one drain finishes the execution and runs what its on_success
    # destination queued: the output, once
    clock.advance(HOUR)
    client.drain()
    assert client.workflows.describe(rid)["status"] == "succeeded"
    (record,) = got["done"]
    assert record["requestContext"]["requestId"] == rid
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["requestPayload"] == 1 and record["responsePayload"] == 3
    assert got["failed"] == []
    assert client.orchestration.workflow_store.handoffs() == []
    clock.advance(HOUR)
    client.drain()
    assert len(got["done"]) == 1
    settled(client, "_async.sm")


def test_a_state_machine_failing_after_a_long_wait_goes_to_on_failure_once(env):
    client, clock, got = env
    rid = client.invoke_async("doomed", 5)
    client.drain()
    settled(client, "_async.doomed")
    clock.advance(HOUR)
    client.drain()
    client.drain()
    assert client.workflows.describe(rid)["status"] == "failed"
    (record,) = got["failed"]
    assert got["done"] == []
    assert record["requestContext"]["requestId"] == rid
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorType"] == "RuntimeError"
    assert "boom 6" in record["responsePayload"]["errorMessage"]
    assert client.dead_letters("_async.doomed") == []
    # (a failure is not retried: the execution is the outcome; only boom's one run)
    assert len(client.invocations("boom")) == 1


def test_a_workflow_sleeping_for_an_hour_delivered_by_a_rule(env):
    client, clock, got = env
    # Given a bus rule whose target is a workflow that sleeps for 1 h (its function's
    # timeout 1 s): the delivery starts the execution and is done
    client.publish("test", "Kick", 41)
    client.drain()
    settled(client, "_async.snooze")
    (ex,) = client.workflows.list(name="snooze")
    assert ex["status"] == "running"
    assert client.invocations("inc") == []
    clock.advance(600)
    assert client.call(client.workflows.fire_due) == 0
    client.drain()
    assert got["done"] == [] and len(client.workflows.list(name="snooze")) == 1
    # When the timer fires, it finishes and on_success gets the output once
    clock.advance(HOUR)
    assert client.call(client.workflows.fire_due) == 1
    client.drain()
    client.drain()
    assert client.workflows.describe(ex["id"])["status"] == "succeeded"
    (record,) = got["done"]
    assert record["requestContext"]["requestId"] == ex["id"]
    assert record["requestPayload"] == 41 and record["responsePayload"] == 42


def test_invoke_async_of_a_workflow_waiting_for_signals(env):
    client, clock, got = env
    # Given two executions started with invoke_async, each waiting for a signal
    yes = client.invoke_async("approval", "a")
    no = client.invoke_async("approval", "b")
    client.drain()
    assert {client.workflows.describe(e)["status"] for e in (yes, no)} == {"running"}
    clock.advance(10 * HOUR)
    client.drain()
    assert got == {"done": [], "failed": []}
    # When they get their signals, one succeeds and one fails: each destination once
    client.call(lambda: client.workflows.signal(yes, "approve", {"ok": True}))
    client.call(lambda: client.workflows.signal(no, "approve", {"ok": False}))
    client.drain()  # (one drain: the deliveries' queued messages run in its next round)
    (done,), (failed,) = got["done"], got["failed"]
    assert done["requestContext"]["requestId"] == yes and done["responsePayload"] == {"ok": True}
    assert failed["requestContext"]["requestId"] == no
    assert "request b rejected" in failed["responsePayload"]["errorMessage"]
    client.drain()
    assert len(got["done"]) == 1 and len(got["failed"]) == 1


def test_a_handoff_of_an_execution_that_ended_unseen_is_delivered_at_the_next_start(
        tmp_path: Path):
    # Given an execution handed its destinations, which ended while nobody could deliver
    # them (the process stopped between the end and the delivery)
    store = SqliteWorkflowStore(tmp_path / "wf.db")
    store.create(Execution(id="e1", name="sm", kind="state_machine", status="running",
                           input=1), [])
    store.create(Execution(id="e2", name="sm", kind="state_machine", status="running",
                           input=2), [])
    before = Handoffs(store)  # (no deliver: a one-shot CLI run, or a crash)
    sent: list = []

    async def deliver(data, outcome):
        sent.append((data["n"], outcome))

    async def scenario():
        await before.hold("e1", {"n": 1})
        await before.hold("e2", {"n": 2})
        store.append("e1", [], status="failed", error={"errorType": "States.TaskFailed"})
        before.ended("e1")
        # When a new start recovers: only the ended one is delivered, once
        after = Handoffs(store)
        after.deliver = deliver
        assert await after.recover() == 1
        assert await after.recover() == 0
        # and the running one when it ends
        store.append("e2", [], status="succeeded", output=3)
        after.ended("e2")
        await after.idle()

    asyncio.run(scenario())
    assert sent == [(1, {"status": "failed", "errorType": "States.TaskFailed",
                         "errorMessage": "execution e1 failed"}),
                    (2, {"status": "succeeded", "output": 3})]
    assert store.handoffs() == []
    store.close()


# -- a real `squall run`, killed with SIGKILL between park and fire ---------------------

APP = str(Path(__file__).parent / "apps" / "async_wait.py")


def effects(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    c = sqlite3.connect(path, timeout=30)
    try:
        return c.execute("SELECT kind, rid FROM got ORDER BY rowid").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        c.close()


def held(data: Path) -> int:
    c = sqlite3.connect(data / "workflows.db", timeout=30)
    try:
        return c.execute("SELECT count(*) FROM wf_handoffs").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        c.close()


def queued(data: Path) -> int:
    """Messages left on any queue (async deliveries, destinations), dead letters too."""
    c = sqlite3.connect(data / "broker.db", timeout=30)
    try:
        return c.execute("SELECT count(*) FROM messages").fetchone()[0]
    finally:
        c.close()


def post(port: int, path: str, body: bytes) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                 headers={"content-type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=30).read())["id"]


def test_async_long_wait_survives_a_kill(tmp_path: Path) -> None:
    data, log, fx = tmp_path / "data", tmp_path / "server.log", tmp_path / "got.db"
    env = {**os.environ, "WF_EFFECTS": str(fx)}
    proc, port = crash_helpers.start(APP, data, env, log)
    try:
        # Given a state machine parked in a 3 s Wait, one that fails after it, and a
        # workflow sleeping 3 s, all invoked asynchronously (their deliveries acked)
        ids = {name: post(port, f"/async/{name}", b"1") for name in ("nap", "doomed", "doze")}
        wait_until(lambda: held(data) == 3 and queued(data) == 0, 30, "three handoffs")
        # When the server is killed with SIGKILL before the timers fire, and restarted
        kill_tree(proc)
        proc, port = crash_helpers.start(APP, data, env, log)
        # Then each outcome reaches its destination once the execution ends
        wait_until(lambda: len(effects(fx)) >= 3 and held(data) == 0 and queued(data) == 0,
                   30, "the outcomes delivered")
    finally:
        proc.kill()
        proc.wait(10)
    assert sorted(effects(fx)) == sorted([("done", ids["nap"]), ("failed", ids["doomed"]),
                                          ("done", ids["doze"])])
