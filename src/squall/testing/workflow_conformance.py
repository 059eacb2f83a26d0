"""The workflow store conformance suite: every WorkflowStore backend must pass it.

    class TestMyWorkflowStore(WorkflowStoreConformance):
        @pytest.fixture
        def open_workflows(self, tmp_path):
            return lambda clock: MyWorkflowStore(url_for(tmp_path), clock=clock)
"""

from __future__ import annotations

from typing import Any

import pytest

from ..backends.workflow_store import (SUCCEEDED, Execution, ExecutionExists, HistoryConflict,
                                       WorkflowStoreError)
from .conformance import FakeClock


def _ex(eid: str, name: str = "wf", parent: str | None = None) -> Execution:
    return Execution(id=eid, name=name, kind="workflow", status="running", input={"n": 1},
                     parent=parent)


class WorkflowStoreConformance:
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def ws(self, open_workflows: Any, clock: FakeClock) -> Any:
        store = open_workflows(clock)
        yield store
        store.close()

    def test_create_get_and_history(self, ws: Any, clock: FakeClock) -> None:
        ex = ws.create(_ex("e1"), [("WorkflowStarted", {"input": 1})])
        assert (ex.status, ex.length, ex.input, ex.created_at) == ("running", 1, {"n": 1}, clock())
        with pytest.raises(ExecutionExists):
            ws.create(_ex("e1"), [])
        clock.advance(1)
        assert ws.append("e1", [("StepCompleted", {"op": 1}), ("StepCompleted", {"op": 2})]) == 3
        hist = ws.history("e1")
        assert [(e.seq, e.type) for e in hist] == [(1, "WorkflowStarted"), (2, "StepCompleted"),
                                                   (3, "StepCompleted")]
        assert hist[1].data == {"op": 1} and hist[1].ts == clock()
        assert [e.seq for e in ws.history("e1", after=2)] == [3]
        assert ws.get("nope") is None

    def test_expected_length_conflict_writes_nothing(self, ws: Any) -> None:
        ws.create(_ex("e"), [("WorkflowStarted", {})])
        with pytest.raises(HistoryConflict):
            ws.append("e", [("X", {})], expected_length=5)
        assert ws.get("e").length == 1
        assert ws.append("e", [("X", {})], expected_length=1) == 2

    def test_finishing_closes_the_history(self, ws: Any) -> None:
        ws.create(_ex("e"), [("WorkflowStarted", {})])
        ws.append("e", [("WorkflowCompleted", {"output": 3})], status=SUCCEEDED, output=3)
        ex = ws.get("e")
        assert (ex.status, ex.output, ex.length) == (SUCCEEDED, 3, 2)
        with pytest.raises(WorkflowStoreError):
            ws.append("e", [("Late", {})])
        assert ws.get("e").length == 2

    def test_list_filters_newest_first(self, ws: Any, clock: FakeClock) -> None:
        for i, name in enumerate(["a", "b", "a"]):
            clock.advance(1)
            ws.create(_ex(f"e{i}", name), [])
        ws.append("e0", [], status="failed", error={"errorType": "X"})
        assert [e.id for e in ws.list()] == ["e2", "e1", "e0"]
        assert [e.id for e in ws.list(name="a")] == ["e2", "e0"]
        assert [e.id for e in ws.list(status="running")] == ["e2", "e1"]
        assert ws.get("e0").error == {"errorType": "X"}

    def test_inbox(self, ws: Any) -> None:
        ws.create(_ex("e"), [])
        a = ws.post("e", "signal", {"name": "go", "data": 1})
        ws.post("e", "cancel", {})
        items = ws.inbox()
        assert [(i.kind, i.data) for i in items] == [("signal", {"name": "go", "data": 1}),
                                                    ("cancel", {})]
        ws.done([a])
        assert [i.kind for i in ws.inbox()] == ["cancel"]

    def test_handoffs(self, open_workflows: Any, clock: FakeClock) -> None:
        s = open_workflows(clock)
        s.create(_ex("e"), [])
        s.hand_off("e", {"on_success": "queue:done", "n": 1})
        s.hand_off("f", {"n": 2})
        s.hand_off("e", {"on_success": "queue:done", "n": 3})  # a redelivery: replaced
        s.close()
        s = open_workflows(clock)  # durable
        try:
            assert [(h.execution_id, h.data["n"]) for h in s.handoffs()] == [("e", 3),
                                                                              ("f", 2)]
            assert [h.data for h in s.handoffs("f")] == [{"n": 2}]
            s.drop_handoff("e")
            s.drop_handoff("nope")
            assert [h.execution_id for h in s.handoffs()] == ["f"]
            assert s.handoffs("e") == [] and len(s.handoffs(limit=1)) == 1
            # only those of ended executions, when asked ("f" has no execution)
            s.create(_ex("g"), [])
            s.hand_off("g", {"n": 4})
            s.create(_ex("h"), [])
            s.hand_off("h", {"n": 5})
            assert s.handoffs(ended=True) == []
            s.append("h", [("Done", {})], status=SUCCEEDED)
            assert [h.execution_id for h in s.handoffs(ended=True)] == ["h"]
            assert s.handoffs("g", ended=True) == [] and len(s.handoffs("g")) == 1
        finally:
            s.close()

    def test_durable_across_reopen(self, open_workflows: Any, clock: FakeClock) -> None:
        s = open_workflows(clock)
        s.create(_ex("e", parent="p"), [("WorkflowStarted", {"x": [1, 2]})])
        s.append("e", [("StepCompleted", {"op": 1, "output": {"k": "v"}})])
        s.close()
        s = open_workflows(clock)
        try:
            assert s.get("e").parent == "p"
            assert [e.data for e in s.history("e")] == [{"x": [1, 2]},
                                                       {"op": 1, "output": {"k": "v"}}]
        finally:
            s.close()
