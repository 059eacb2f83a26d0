"""Durable state-machine (ASL) executions: the supervisor's side.

The interpreter (squall.asl) runs in the state machine's worker, one state per `step`;
after each step the worker checkpoints the execution here, through the "state_machine"
service, as one append to the workflow store (kind "state_machine"):

    StateMachineStarted {state, events}   the execution's plain-data state after start
    StateMachineStep    {state, events}   after each state (the new ASL history events)
    StateMachineWait    {state, fire_at}  before a Wait: when it ends (a restart waits
                                          out only what is left)

The last one finishing the execution also sets its status, output and error. Each append
names the history length the worker last saw, so two drivers of one execution cannot
both advance it (the second gets HistoryConflict). After a crash or restart `recover()`
invokes the state machine again for every running execution with a resume marker; the
worker rebuilds the execution from its last checkpoint and goes on from the state it
had reached: finished states are not run again (a Task that was running when the process
died runs again, as workflow steps do: make effects idempotent). A Parallel or Map state
is one step: after a crash inside it, it runs again whole. A Task state's Retry counts
are kept in memory within its step, so a restart in the middle of its retries starts
them over.

Several nodes on one store (the distributed mode: `leases` given): the node whose worker
drives an execution holds the lease `sm:<execution id>` until it ends. Every lease
interval each node offers to resume the running executions whose lease nobody holds (a
dead node's, once its lease has expired), so they are taken over from their last
checkpoint; the length fencing keeps a paused former holder from advancing one again.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Awaitable, Callable

from ..backends.workflow_store import (FAILED, FINAL, SUCCEEDED, TIMED_OUT, Execution,
                                       ExecutionExists, WorkflowStore, WorkflowStoreError)
from ..observe import logs

RESUME = "__squall_state_machine_resume__"
KIND = "state_machine"
_STATUS = {"SUCCEEDED": SUCCEEDED, "FAILED": FAILED, "TIMED_OUT": TIMED_OUT}


def resume_doc(store: WorkflowStore, eid: str) -> dict[str, Any]:
    """What a worker needs to go on: the state at the last checkpoint with the whole ASL
    history, a pending Wait's end, and the store's history length (for fencing)."""
    ex = store.get(eid)
    if ex is None:
        raise LookupError(f"no state machine execution {eid!r}")
    state: dict[str, Any] | None = None
    events: list[dict[str, Any]] = []
    fire_at = None
    for e in store.history(eid):
        if e.type in ("StateMachineStarted", "StateMachineStep"):
            state, fire_at = e.data["state"], None
            events.extend(e.data.get("events") or [])
        elif e.type == "StateMachineWait" and state is not None and (
                e.data.get("state") == state.get("current")):
            fire_at = e.data["fire_at"]
    if state is not None:
        state = {**state, "history": events}
    return {"id": ex.id, "status": ex.status, "state": state, "fire_at": fire_at,
            "length": ex.length, "output": ex.output, "error": ex.error}


class MachineExecutions:
    """The "state_machine" service, and recovery of running executions."""

    def __init__(self, store: WorkflowStore, invoke: Callable[..., Awaitable[Any]], *,
                 leases: Any = None) -> None:
        self.store = store
        self.invoke = invoke
        self.leases = leases  # squall.sources.leases.LeaseKeeper: several nodes, one store
        self._tasks: set[asyncio.Task[Any]] = set()
        self._resuming: dict[str, asyncio.Task[Any]] = {}  # id -> the resume driving it
        self._loop: asyncio.Task[None] | None = None

    async def _doc(self, eid: str) -> dict[str, Any]:
        doc = resume_doc(self.store, eid)
        if doc["status"] in FINAL and self.leases is not None:
            await self.leases.release(f"sm:{eid}")  # nothing left to drive
        return doc

    async def _claim(self, eid: str) -> None:
        """The distributed mode: this node drives `eid` (its lease), or refuse."""
        if self.leases is not None and not await self.leases.acquire(f"sm:{eid}"):
            raise WorkflowStoreError(f"state machine execution {eid!r} is driven by "
                                     "another node")

    async def serve(self, payload: list[Any]) -> Any:
        op, *a = payload
        if op == "begin":  # name, id, input, state, events: create, or find it
            name, eid, input_, state, events = a
            await self._claim(eid)
            try:
                self.store.create(Execution(id=eid, name=name, kind=KIND, status="running",
                                            input=input_),
                                  [("StateMachineStarted", {"state": state, "events": events})])
                logs.event("state machine execution started", state_machine=name,
                           execution=eid)
            except ExecutionExists:
                ex = self.store.get(eid)
                if ex is None or ex.kind != KIND or ex.name != name:
                    raise
                task = self._resuming.get(eid)
                if task is not None:  # a redelivered invocation: let the resume finish it
                    await asyncio.wait([task])
            return await self._doc(eid)
        if op == "resume":
            await self._claim(a[0])
            return await self._doc(a[0])
        if op == "step":  # id, state, events, expected length
            eid, state, events, length = a
            status = _STATUS.get(state.get("status"))
            error = None
            if status in (FAILED, TIMED_OUT):
                error = {"errorType": state.get("error"), "errorMessage": state.get("cause")}
            out = self.store.append(eid, [("StateMachineStep", {"state": state,
                                                                "events": events})],
                                    expected_length=length, status=status,
                                    output=state.get("output"), error=error)
            if status is not None:
                logs.event("state machine execution finished", execution=eid, status=status)
                if self.leases is not None:
                    await self.leases.release(f"sm:{eid}")
            return out
        if op == "wait":  # id, state name, fire_at, expected length
            eid, current, fire_at, length = a
            return self.store.append(eid, [("StateMachineWait", {"state": current,
                                                                 "fire_at": fire_at})],
                                     expected_length=length)
        raise ValueError(f"unknown state machine operation {op!r}")

    async def recover(self) -> int:
        """Resume every running state-machine execution (after a crash or restart); in
        the distributed mode, those whose lease this node could take."""
        running = [ex for ex in self.store.list(status="running", limit=1_000_000)
                   if ex.kind == KIND and ex.id not in self._resuming]
        if self.leases is not None:
            running = [ex for ex in running if not self.leases.holds(f"sm:{ex.id}")
                       and await self.leases.acquire(f"sm:{ex.id}")]
        for ex in running:
            task = asyncio.ensure_future(self._resume(ex))
            self._tasks.add(task)
            self._resuming[ex.id] = task
            task.add_done_callback(lambda t, eid=ex.id: (self._tasks.discard(t),
                                                         self._resuming.pop(eid, None)))
        return len(running)

    async def _resume(self, ex: Execution) -> None:
        logs.event("state machine execution resumed", state_machine=ex.name, execution=ex.id)
        result = await self.invoke(ex.name, "event", json.dumps({RESUME: ex.id}),
                                   request_id=str(uuid.uuid4()))
        now = self.store.get(ex.id)
        if now is not None and now.status not in FINAL and not result.ok:
            logs.event("state machine execution could not resume", execution=ex.id,
                       error=f"{result.error_type}: {result.error_message}")

    async def idle(self) -> None:
        """Until the resumed executions have run (tests)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def start_live(self) -> None:
        """Several nodes: resume what is free now, then take over every lease interval."""
        await self.recover()
        if self.leases is not None:
            self._loop = asyncio.ensure_future(self._takeover_loop())

    async def _takeover_loop(self) -> None:
        while True:
            await asyncio.sleep(self.leases.interval)
            try:
                await self.recover()
            except Exception as exc:  # the store unreachable for a moment: next interval
                logs.event("state machine takeover scan failed", error=repr(exc))

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            self._tasks.add(self._loop)
            self._loop = None
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            try:
                await t
            except BaseException:
                pass
