"""One trace per durable execution, however it goes on: a workflow's `wf.sleep` fired by
its durable timer, a state machine parked at a long Wait and resumed by its timer, and
both driven again by a new orchestration over the same store (a restart's recover()).
Every span of an execution is in the trace its first history event keeps, and each
resume is a `resume <name>` span (squall.resume: why) under the execution's span.

In-process on an injected clock; the orchestration's spans go to a Tracer with a list
sink, and its invocations (replays, steps, resumes) are seen on their way to the
invoker with the traceparent they carry (the invoker makes each one's span under it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from squall import App
from squall.events.lineage import split
from squall.events.trace import new_traceparent
from squall.observe.traces import RESUME_ATTR, Span, Tracer, WorkflowSpans
from squall.testing import TestClient
from squall.testing.clocks import FakeClock
from squall.workflows.wiring import Orchestration

HOUR = 3600


def make_app(clock: FakeClock) -> App:
    app = App("resumes")

    @app.function()
    def inc(event, ctx):
        return event + 1

    @app.workflow()
    def snooze(wf, x):
        y = wf.step("inc", x)
        wf.sleep(HOUR)
        return wf.step("inc", y)

    @app.workflow()
    def approval(wf, x):
        return {"x": x, "answer": wf.wait_for_signal("approve")}

    app.state_machine("sm", {"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "inc", "Next": "W"},
        "W": {"Type": "Wait", "Seconds": HOUR, "Next": "B"},
        "B": {"Type": "Task", "Resource": "inc", "End": True}}}, now=clock)
    return app


class Traced:
    """The spans an orchestration records and the traceparents its invocations carry."""

    def __init__(self, clock: FakeClock) -> None:
        self.rows: list[tuple] = []
        self.tracer = Tracer("resumes", self.rows.append, clock=clock)
        self.invoked: list[tuple[str, str | None]] = []  # (function, traceparent)

    def attach(self, orchestration: Orchestration) -> None:
        orchestration.engine.spans = WorkflowSpans(self.tracer)
        orchestration.machines.tracer = self.tracer
        for owner in (orchestration.engine, orchestration.machines):
            inner = owner.invoke

            async def invoke(function: str, kind: str, payload: Any, *, inner=inner,
                             **kw: Any) -> Any:
                self.invoked.append((function, kw.get("trace")))
                return await inner(function, kind, payload, **kw)

            owner.invoke = invoke

    def spans(self, execution: str) -> dict[str, Span]:
        """The execution's spans by id, each as last recorded (the store keeps the last)."""
        out = {}
        for row in self.rows:
            span = Span.from_row(row)
            if span.attributes.get("execution") == execution:
                out[span.span_id] = span
        return out


@pytest.fixture
def env():
    clock = FakeClock()
    with TestClient(make_app(clock), clock=clock) as client:
        traced = Traced(clock)
        traced.attach(client.orchestration)
        yield client, clock, traced


def first_event(client: TestClient, eid: str) -> dict[str, Any]:
    return client.orchestration.workflow_store.history(eid)[0].data


def resumes(spans: dict[str, Span]) -> list[Span]:
    return sorted((s for s in spans.values() if RESUME_ATTR in s.attributes),
                  key=lambda s: s.start)


def restart(client: TestClient, traced: Traced) -> None:
    """Stop the orchestration and start a new one on the same files and invoker, traced
    by `traced` before its recover() runs (as a restarted supervisor would be)."""
    old = client.orchestration
    client.call(old.stop)
    old.close()
    new = Orchestration(Path(client._tmp.name) / "orchestration", client._invoker.invoke,
                        client.manifest, clock=client.clock, synchronous="NORMAL")
    new.attach_local(client._invoker.services, client._loop.run)
    new.attach_messaging(client.messaging)
    traced.attach(new)
    client.orchestration, client.workflows = new, new.engine
    client.call(lambda: new.start(live=False))


def test_a_workflow_sleeping_an_hour_is_one_trace_with_a_timer_resume(env):
    client, clock, traced = env
    caller = new_traceparent() + ";loop=kick:1"
    # Given an execution started under a caller's span (with a loop lineage)
    eid = client.call(lambda: client.workflows.start("snooze", 1, trace=caller)).id
    client.drain()
    assert client.workflows.describe(eid)["status"] == "running"
    kept = first_event(client, eid)
    # Then its first history event keeps its span: in the caller's trace, lineage and all
    assert kept["trace"][3:35] == caller[3:35] and kept["caller_span"] == caller[36:52]
    assert split(kept["trace"])[1] == {"kick": 1}
    before = len(traced.invoked)
    assert before >= 2  # (a replay and the first step)
    # When the durable timer fires an hour later and the execution finishes
    clock.advance(HOUR)
    client.drain()
    assert client.workflows.describe(eid)["status"] == "succeeded"
    spans = traced.spans(eid)
    (execution,) = [s for s in spans.values() if RESUME_ATTR not in s.attributes]
    (resumed,) = resumes(spans)
    # Then every span is in the caller's trace: the execution's under the caller, the
    # timer's resume span under the execution's, closed when it finished
    assert {s.trace_id for s in spans.values()} == {caller[3:35]}
    assert execution.span_id == kept["trace"][36:52] and execution.parent_id == caller[36:52]
    assert execution.status == "ok" and execution.duration_ms == HOUR * 1000.0
    assert resumed.name == "resume snooze" and resumed.attributes[RESUME_ATTR] == "timer"
    assert resumed.parent_id == execution.span_id and resumed.status == "ok"
    # And the invocations before the timer went under the execution's span, those after
    # it (the replays and the second step) under the resume span: none in a new trace
    assert {t[3:35] for _, t in traced.invoked} == {caller[3:35]}
    assert {t[36:52] for _, t in traced.invoked[:before]} == {execution.span_id}
    after = traced.invoked[before:]
    assert [f for f, _ in after].count("inc") == 1
    assert {t[36:52] for _, t in after} == {resumed.span_id}


def test_a_signal_resumes_a_workflow_in_its_trace(env):
    client, _, traced = env
    eid = client.call(lambda: client.workflows.start("approval", 7)).id
    client.drain()
    before = len(traced.invoked)
    # When the signal it waits for comes
    client.call(lambda: client.workflows.signal(eid, "approve", {"ok": True}))
    client.drain()
    assert client.workflows.describe(eid)["output"] == {"x": 7, "answer": {"ok": True}}
    spans = traced.spans(eid)
    (resumed,) = resumes(spans)
    # Then the replay it caused ran under a signal resume span of the execution's trace
    assert resumed.attributes[RESUME_ATTR] == "signal"
    assert spans[resumed.parent_id].trace_id == resumed.trace_id
    assert {t[36:52] for _, t in traced.invoked[before:]} == {resumed.span_id}


def test_a_parked_state_machine_resumes_under_its_starting_span(env):
    client, clock, traced = env
    # Given a state machine parked at a 1 h Wait (its worker's invocation ended)
    rid = client.invoke_async("sm", 1)
    client.drain()
    assert list(client.orchestration.machines.parked) == [rid]
    kept = first_event(client, rid)["trace"]  # the starting invocation's span
    assert split(kept)[1] == {"sm": 1}
    # When its timer fires
    clock.advance(HOUR)
    client.drain()
    client.drain()
    assert client.workflows.describe(rid)["status"] == "succeeded"
    # Then the resume is one span under the starting invocation's, in its trace
    (resumed,) = resumes(traced.spans(rid))
    assert resumed.name == "resume sm" and resumed.attributes[RESUME_ATTR] == "timer"
    assert (resumed.trace_id, resumed.parent_id) == (kept[3:35], kept[36:52])
    assert resumed.status == "ok"
    # And the resume invocation goes under it, its loop lineage carried on (not reset,
    # not counted up by each resume)
    ((function, trace),) = traced.invoked
    assert function == "sm" and trace[3:35] == kept[3:35]
    assert trace[36:52] == resumed.span_id and split(trace)[1] == {"sm": 1}


def test_a_restart_goes_on_in_the_trace_each_execution_keeps(env):
    client, clock, traced = env
    # Given a workflow in an hour's sleep and a state machine parked at an hour's Wait
    wf = client.call(lambda: client.workflows.start("snooze", 1)).id
    sm = client.invoke_async("sm", 10)
    client.drain()
    assert client.workflows.describe(wf)["status"] == "running"
    assert client.workflows.describe(sm)["status"] == "running"
    wf_kept, sm_kept = first_event(client, wf), first_event(client, sm)["trace"]
    (started,) = traced.spans(wf).values()
    # When the process restarts after the hour: a new orchestration (and tracer) over
    # the same store recovers them
    clock.advance(HOUR)
    again = Traced(clock)
    restart(client, again)
    client.drain()
    client.drain()
    assert client.workflows.describe(wf)["status"] == "succeeded"
    assert client.workflows.describe(sm)["status"] == "succeeded"
    assert client.workflows.describe(sm)["output"] == 12
    # Then the workflow's execution span is closed in its trace, from its start, under its
    # caller, with a restart resume (its replay) then the timer's (the rest)
    spans = again.spans(wf)
    execution = spans[wf_kept["trace"][36:52]]
    assert execution.trace_id == started.trace_id == wf_kept["trace"][3:35]
    assert execution.parent_id == started.parent_id and execution.start == started.start
    assert execution.status == "ok" and execution.duration_ms == HOUR * 1000.0
    assert [s.attributes[RESUME_ATTR] for s in resumes(spans)] == ["restart", "timer"]
    assert {s.parent_id for s in resumes(spans)} == {execution.span_id}
    assert {s.trace_id for s in spans.values()} == {execution.trace_id}
    # And the state machine's resume is a restart span under its starting invocation
    (resumed,) = resumes(again.spans(sm))
    assert resumed.attributes[RESUME_ATTR] == "restart"
    assert (resumed.trace_id, resumed.parent_id) == (sm_kept[3:35], sm_kept[36:52])
    # And every invocation after the restart carried its execution's trace
    by_trace = {t[3:35] for _, t in again.invoked}
    assert by_trace == {execution.trace_id, resumed.trace_id}
    known = {s for x in (wf, sm) for s in again.spans(x)}
    assert {t[36:52] for _, t in again.invoked} <= known
