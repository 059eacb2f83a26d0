"""Durable state-machine (ASL) executions: the supervisor's side.

The interpreter (squall.asl) runs in the state machine's worker, one state per `step`;
after each step the worker checkpoints the execution here, through the "state_machine"
service, as one append to the workflow store (kind "state_machine"):

    StateMachineStarted {state, events}   the execution's plain-data state after start
    StateMachineStep    {state, events}   after each state (the new ASL history events),
                                          and after each failed attempt of a state with
                                          Retry (its state's `retry`: the counts per
                                          retrier, the attempt, the back-off's end)
    StateMachineWait    {state, fire_at}  before a Wait or a parked back-off: when it
                                          ends (a restart waits out only what is left)
    StateMachineBranch  {state, index,    each finished branch of a Parallel or Map
                         status, output,  (Map: iteration), as it finishes (branches run
                         error, cause,    on threads in the worker: appended one at a
                         events}          time); the state's next StateMachineStep
                                          supersedes them
    StateMachineBranchRetry {state, index, each failed attempt of a state with Retry
                         current, state_input, directly inside such a branch (Map:
                         variables, retry,    iteration), before its back-off: where
                         new_events}          the branch is, its counts (`retry`, as a
                                          step's), its ASL events since its last such
                                          record; superseded by the branch's record and
                                          by the state's next StateMachineStep

A branch's ASL events are stored once, in its StateMachineBranch record: the step that
ends the Parallel or Map lists only the state's own events, and `branch_events` says
where each recorded branch's events go, [{at, seq, offset, count}] (before its
events[at], the record at history seq `seq`, renumbered after the event id `offset`).
`asl_events` rebuilds the step's whole event list from them; `expanded` gives the
history in its full form (`squall workflows show`, the history API, the dashboard show
each step with all its events, as the ASL history reads on AWS).

The last one finishing the execution also sets its status, output and error. Each append
names the history length the worker last saw, so two drivers of one execution cannot
both advance it (the second gets HistoryConflict). After a crash or restart `recover()`
invokes the state machine again for every running execution with a resume marker; the
worker rebuilds the execution from its last checkpoint and goes on from the state it
had reached: finished states are not run again (a Task that was running when the process
died runs again, as workflow steps do: make effects idempotent). A Parallel or Map state
is one step, but its finished branches are recorded: after a crash inside it, it runs
again with only the branches that had not finished (their outputs, errors and history
events come from the records; an unfinished branch whose state was between two attempts
goes on from that state with its recorded retry counts, its events so far from its
StateMachineBranchRetry records; any other unfinished branch starts again from its first
state, as its finished states are not recorded one by one (that would cost an append per
state of every branch); a nested Parallel or Map runs again with its branch, its own
branches' retries counted in memory). A Task (or Parallel, Map)
state with Retry resumes its retry count and back-off schedule from the last failed
attempt recorded, so a restart never grants fresh attempts (at most MaxAttempts + 1 in
all; one attempt may run twice if the process dies while it runs, as above).

Durable timers. A Wait, or a Retry back-off, longer than PARK_AFTER_S (squall.app_asl,
1 s) does not run in the worker: the worker sends "park" (StateMachineWait) and ENDS its
invocation with a parked answer (squall.runtime.parked), so no worker is held and the
state machine's timeout_s bounds only the work between waits. The "park" arms a timer
here (`fire_due`, the live timer loop); when it fires the execution is resumed like
after a restart and goes on from its Wait or its next attempt. `recover()` re-arms the
timer of a parked execution whose wait has not ended (after a restart it fires at
fire_at, or at once if that has passed). Whoever invoked the state machine waits on the
"parked" service (`outcome`): the invoker hands the execution's final output or error
to the caller, so `app.invoke` still returns when the execution ends. An asynchronous
delivery does not wait: it hands the execution its destinations and is done, and
`on_final` (squall.workflows.handoff) delivers them when the execution ends. Shorter waits
sleep in the worker (a park and a resume cost more than a second's sleep), as do all
waits of a state machine declared with an injected `sleep` (tests).

Several nodes on one store (the distributed mode: `leases` given): the node whose worker
drives an execution holds the lease `sm:<execution id>` until it ends. Every lease
interval each node offers to resume the running executions whose lease nobody holds (a
dead node's, once its lease has expired), so they are taken over from their last
checkpoint; the length fencing keeps a paused former holder from advancing one again.
A parked execution keeps its lease on the node that parked it (its timer is there); a
node taking over a dead node's parked execution re-arms its timer; a caller waiting on
an execution that ends on another node sees it in the store every lease interval.

One trace per execution. StateMachineStarted keeps `trace`: the traceparent (with its
loop lineage) of the invocation that started it (the calling invocation's span, which
the supervisor knows per service call). Every resume, after a timer, a restart or on
the node taking it over, runs under a `resume <name>` span that is a child of it
(attribute squall.resume: timer, restart, takeover), so the waterfall of a week-long
execution is one tree, and a resume carries on the event chain's loop counts instead of
starting them again.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import time
import uuid
from typing import Any, Awaitable, Callable

from ..asl.history import renumbered
from ..backends.workflow_store import (FAILED, FINAL, SUCCEEDED, TIMED_OUT, Execution,
                                       ExecutionExists, HistoryEvent, WorkflowStore,
                                       WorkflowStoreError)
from ..aiocompat import wait_for
from ..observe import logs
from ..observe.traces import RESUME_ATTR, current_span, resume_span
from ..runtime.aio import cancel_all
from ..runtime.parked import PARKED
from .timers import timer_loop

RESUME = "__squall_state_machine_resume__"
KIND = "state_machine"
_STATUS = {"SUCCEEDED": SUCCEEDED, "FAILED": FAILED, "TIMED_OUT": TIMED_OUT}


def stored_events(events: list[dict[str, Any]], merged: list[tuple[int, int, int, int]]
                  ) -> tuple[list[dict[str, Any]], list[dict[str, int]]]:
    """A step's new ASL events as a StateMachineStep stores them: without the runs that
    are recorded branches' events, `merged` [(position in `events`, offset, count, seq
    of the branch record)], and the `branch_events` references that stand for them."""
    own: list[dict[str, Any]] = []
    refs: list[dict[str, int]] = []
    pos = 0
    for start, offset, count, seq in sorted(merged):
        if start < pos or start + count > len(events):
            raise ValueError(f"branch events at {start} (+{count}) overlap or run past "
                             f"the step's {len(events)} events")
        own.extend(events[pos:start])
        refs.append({"at": len(own), "seq": seq, "offset": offset, "count": count})
        pos = start + count
    own.extend(events[pos:])
    return own, refs


def asl_events(data: dict[str, Any], recorded: dict[int, list[dict[str, Any]]]
               ) -> list[dict[str, Any]]:
    """The whole ASL event list of a StateMachineStarted/Step record; `recorded`: the
    events of the execution's StateMachineBranch records read so far, by seq."""
    own = data.get("events") or []
    refs = data.get("branch_events")
    if not refs:
        return own
    out: list[dict[str, Any]] = []
    pos = 0
    for r in refs:
        branch = recorded.get(r["seq"])
        if branch is None or len(branch) != r["count"]:
            raise WorkflowStoreError(
                f"a state machine step refers to the events of branch record {r['seq']}, "
                f"which {'has other events' if branch is not None else 'is not before it'}"
                ": the history is damaged")
        out.extend(own[pos:r["at"]])
        out.extend(renumbered(branch, r["offset"]))
        pos = r["at"]
    out.extend(own[pos:])
    return out


def expanded(history: list[HistoryEvent]) -> list[HistoryEvent]:
    """A history with each step's `branch_events` references replaced by the events they
    stand for: what the store held before branches' events were stored once."""
    recorded: dict[int, list[dict[str, Any]]] = {}
    out = []
    for e in history:
        if e.type == "StateMachineBranch":
            recorded[e.seq] = e.data.get("events") or []
        elif e.type == "StateMachineStep" and e.data.get("branch_events"):
            data = {k: (asl_events(e.data, recorded) if k == "events" else v)
                    for k, v in e.data.items() if k != "branch_events"}
            e = HistoryEvent(e.seq, e.type, data, e.ts)
        out.append(e)
    return out


def resume_doc(store: WorkflowStore, eid: str) -> dict[str, Any]:
    """What a worker needs to go on: the state at the last checkpoint with the whole ASL
    history, a pending Wait's end, the finished branches of the current Parallel or Map
    (`branch_record`s with their history `seq`), where its unfinished branches stood
    between two attempts (`branch_progress` with all their `events`), and the store's
    history length (for fencing)."""
    ex = store.get(eid)
    if ex is None:
        raise LookupError(f"no state machine execution {eid!r}")
    state: dict[str, Any] | None = None
    events: list[dict[str, Any]] = []
    fire_at = wake_at = None
    branches: list[dict[str, Any]] = []
    retried: dict[int, dict[str, Any]] = {}  # index -> where an unfinished branch stood
    recorded: dict[int, list[dict[str, Any]]] = {}  # seq -> a branch record's events
    for e in store.history(eid):
        if e.type in ("StateMachineStarted", "StateMachineStep"):
            state, fire_at, wake_at, branches = e.data["state"], None, None, []
            retried = {}
            events.extend(asl_events(e.data, recorded))
        elif e.type == "StateMachineBranch":
            recorded[e.seq] = e.data.get("events") or []
            if state is not None and e.data.get("state") == state.get("current"):
                branches.append({**{k: v for k, v in e.data.items() if k != "state"},
                                 "seq": e.seq})
        elif e.type == "StateMachineBranchRetry" and state is not None and (
                e.data.get("state") == state.get("current")):
            at = retried.setdefault(e.data["index"], {"events": []})
            at.update({k: v for k, v in e.data.items() if k not in ("state", "new_events")})
            at["events"].extend(e.data.get("new_events") or [])
        elif e.type == "StateMachineWait" and state is not None and (
                e.data.get("state") == state.get("current")):
            fire_at = e.data["fire_at"]
            wake_at = e.data.get("wake_at", fire_at)
    if state is not None:
        state = {**state, "history": events}
    return {"id": ex.id, "status": ex.status, "state": state, "fire_at": fire_at,
            "wake_at": wake_at, "length": ex.length, "output": ex.output,
            "error": ex.error, "branches": branches,
            "branch_retries": [r for i, r in sorted(retried.items())
                               if all(b["index"] != i for b in branches)]}


def _check_progress(eid: str, record: Any) -> None:
    """A StateMachineBranchRetry record as `branch_progress` makes it, or ValueError."""
    retry = record.get("retry") if isinstance(record, dict) else None
    if not (isinstance(record, dict) and type(record.get("index")) is int
            and isinstance(record.get("current"), str)
            and isinstance(record.get("variables"), dict)
            and isinstance(record.get("new_events"), list)
            and isinstance(retry, dict) and retry.get("state") == record["current"]
            and isinstance(retry.get("counts"), list)
            and all(type(n) is int for n in retry["counts"])
            and type(retry.get("attempt")) is int and type(retry.get("entered_id")) is int
            and all(isinstance(retry.get(k), (int, float))
                    for k in ("entered", "fire_at"))):
        raise ValueError(f"state machine execution {eid!r}: a branch retry record needs an "
                         "integer index, its current state, variables, new_events and a "
                         "retry {state (the current one), counts, attempt, entered, "
                         f"entered_id, fire_at}}, got "
                         f"{record!r}")


class MachineExecutions:
    """The "state_machine" service, and recovery of running executions."""

    def __init__(self, store: WorkflowStore, invoke: Callable[..., Awaitable[Any]], *,
                 leases: Any = None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.invoke = invoke
        self.leases = leases  # squall.sources.leases.LeaseKeeper: several nodes, one store
        self.clock = clock
        self._tasks: set[asyncio.Task[Any]] = set()
        self._resuming: dict[str, asyncio.Task[Any]] = {}  # id -> the resume driving it
        self._loop: asyncio.Task[None] | None = None
        self._timers: list[tuple[float, str]] = []  # (fire_at, id): parked executions
        self.parked: dict[str, float] = {}  # id -> fire_at, while parked here
        self._timer_changed = asyncio.Event()
        self._armed = asyncio.Event()  # (tests: until an execution parks)
        self._timer_loop_task: asyncio.Task[None] | None = None
        self._outcomes: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self.tracer: Any = None  # squall.observe.traces.Tracer: the resume spans
        self._traces: dict[str, str] = {}  # id -> its starting traceparent, once read
        # an execution reached a final status (squall.workflows.handoff.Handoffs.ended:
        # the destinations of the asynchronous invocation that started it)
        self.on_final: Callable[[str], None] | None = None

    async def _doc(self, eid: str) -> dict[str, Any]:
        doc = resume_doc(self.store, eid)
        if doc["status"] in FINAL and self.leases is not None:
            await self.leases.release(f"sm:{eid}")  # nothing left to drive
        doc["parked"] = eid in self.parked  # its timer drives it: the caller only waits
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
            started = {"state": state, "events": events}
            trace = current_span.get()  # the starting invocation's: its resumes go under it
            if trace:
                started["trace"] = trace
            try:
                self.store.create(Execution(id=eid, name=name, kind=KIND, status="running",
                                            input=input_), [("StateMachineStarted", started)])
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
        if op == "step":  # id, state, events, expected length[, branch_events]
            eid, state, events, length, *more = a
            data = {"state": state, "events": events}
            if more and more[0]:
                refs = more[0]
                if not isinstance(refs, list) or not all(
                        isinstance(r, dict) and set(r) == {"at", "seq", "offset", "count"}
                        and all(type(v) is int for v in r.values()) for r in refs):
                    raise ValueError(f"state machine execution {eid!r}: branch_events "
                                     "must be a list of {at, seq, offset, count} integers, "
                                     f"got {refs!r}")
                data["branch_events"] = refs
            status = _STATUS.get(state.get("status"))
            error = None
            if status in (FAILED, TIMED_OUT):
                error = {"errorType": state.get("error"), "errorMessage": state.get("cause")}
            out = self.store.append(eid, [("StateMachineStep", data)],
                                    expected_length=length, status=status,
                                    output=state.get("output"), error=error)
            if status is not None:
                self._traces.pop(eid, None)
                logs.event("state machine execution finished", execution=eid, status=status)
                self._settle(eid, {"output": state.get("output")} if error is None
                             else error)
                if self.on_final is not None:
                    self.on_final(eid)
                if self.leases is not None:
                    await self.leases.release(f"sm:{eid}")
            return out
        if op == "branch":  # id, state name, branch_record, expected length
            eid, current, record, length = a
            if not isinstance(record, dict) or not isinstance(record.get("index"), int):
                raise ValueError(f"state machine execution {eid!r}: a branch record needs "
                                 f"an integer index, got {record!r}")
            return self.store.append(eid, [("StateMachineBranch", {"state": current,
                                                                   **record})],
                                     expected_length=length)
        if op == "branch_retry":  # id, state name, branch_progress, expected length
            eid, current, record, length = a
            _check_progress(eid, record)
            return self.store.append(eid, [("StateMachineBranchRetry", {
                "state": current, **record})], expected_length=length)
        if op == "wait":  # id, state name, fire_at, expected length
            eid, current, fire_at, length = a
            return self.store.append(eid, [("StateMachineWait", {
                "state": current, "fire_at": fire_at})], expected_length=length)
        if op == "park":  # … , record the wait?, wake_at: the worker's invocation ends and
            eid, current, fire_at, length, record, wake_at = a  # the timer resumes it
            if record:
                length = self.store.append(eid, [("StateMachineWait", {
                    "state": current, "fire_at": fire_at, "wake_at": wake_at})],
                    expected_length=length)
            self._arm(wake_at, eid)
            logs.event("state machine execution parked", execution=eid, state=current,
                       fire_at=fire_at)
            return length
        raise ValueError(f"unknown state machine operation {op!r}")

    # -- parked executions: durable timers ---------------------------------------------

    def _arm(self, fire_at: float, eid: str) -> None:
        self.parked[eid] = fire_at
        heapq.heappush(self._timers, (fire_at, eid))
        self._timer_changed.set()
        self._armed.set()

    async def until_parked(self) -> dict[str, float]:
        """Until some execution is parked (tests): {id: fire_at} of the parked ones."""
        while not self.parked:
            self._armed.clear()
            await self._armed.wait()
        return dict(self.parked)

    async def fire_due(self) -> int:
        """Resume every parked execution whose timer is due by the clock (the live loop
        does this; tests call it after advancing an injected clock)."""
        fired, now = 0, self.clock()
        while self._timers and self._timers[0][0] <= now:
            fire_at, eid = heapq.heappop(self._timers)
            if self.parked.get(eid) != fire_at:
                continue  # re-armed or already resumed
            del self.parked[eid]
            ex = self.store.get(eid)
            if ex is None or ex.status in FINAL or eid in self._resuming:
                continue
            self._start_resume(ex, "timer")
            fired += 1
        return fired

    async def _timer_loop(self) -> None:
        await timer_loop(self.fire_due, self._timers, self._timer_changed, self.clock)

    def _settle(self, eid: str, outcome: dict[str, Any]) -> None:
        for fut in self._outcomes.pop(eid, []):
            if not fut.done():
                fut.set_result(outcome)

    async def outcome(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The "parked" service: wait for a parked execution to end; {"output": …} or
        {"errorType", "errorMessage"} (squall.runtime.parked hands it to the caller)."""
        eid = payload[PARKED]
        if self._timer_loop_task is None:  # not started live (a one-shot CLI invoke, the
            # test harness): the timers must fire all the same for this caller to return
            self._timer_loop_task = asyncio.ensure_future(self._timer_loop())
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._outcomes.setdefault(eid, []).append(fut)
        while True:  # (the store too: with several nodes it may end on another one)
            ex = self.store.get(eid)
            if ex is None:
                raise LookupError(f"no state machine execution {eid!r}")
            if ex.status in FINAL:
                if fut in self._outcomes.get(eid, []):
                    self._outcomes[eid].remove(fut)
                return {"output": ex.output} if ex.status == SUCCEEDED else dict(
                    ex.error or {"errorType": f"States.{ex.status}", "errorMessage": ""})
            interval = self.leases.interval if self.leases is not None else None
            try:
                return await wait_for(asyncio.shield(fut), interval)
            except asyncio.TimeoutError:
                continue

    async def recover(self, reason: str = "restart") -> int:
        """Resume every running state-machine execution (after a crash or restart); in
        the distributed mode, those whose lease this node could take (`reason`
        "takeover": the takeover loop). One parked at a Wait or a back-off that has not
        ended yet gets its timer armed again instead."""
        running = [ex for ex in self.store.list(status="running", limit=1_000_000)
                   if ex.kind == KIND and ex.id not in self._resuming
                   and ex.id not in self.parked]
        if self.leases is not None:
            running = [ex for ex in running if not self.leases.holds(f"sm:{ex.id}")
                       and await self.leases.acquire(f"sm:{ex.id}")]
        for ex in running:
            wake_at = resume_doc(self.store, ex.id)["wake_at"]
            if wake_at is not None and wake_at > self.clock():
                self._arm(wake_at, ex.id)
            else:
                self._start_resume(ex, reason)
        return len(running)

    def _start_resume(self, ex: Execution, reason: str) -> None:
        task = asyncio.ensure_future(self._resume(ex, reason))
        self._tasks.add(task)
        self._resuming[ex.id] = task
        task.add_done_callback(lambda t, eid=ex.id: (self._tasks.discard(t),
                                                     self._resuming.pop(eid, None)))

    def _started_trace(self, eid: str) -> str | None:
        """The traceparent StateMachineStarted keeps (None: started without one)."""
        trace = self._traces.get(eid)
        if trace is None:
            first = self.store.history(eid)[:1]
            trace = first[0].data.get("trace") if first else None
            if not isinstance(trace, str):
                return None
            self._traces[eid] = trace
        return trace

    async def _resume(self, ex: Execution, reason: str) -> None:
        logs.event("state machine execution resumed", state_machine=ex.name, execution=ex.id,
                   reason=reason)
        stored = self._started_trace(ex.id)
        own, parent = resume_span(stored)  # (its lineage goes on even when not traced)
        start = self.tracer.clock() if self.tracer is not None else 0.0
        result = await self.invoke(ex.name, "event", json.dumps({RESUME: ex.id}),
                                   request_id=str(uuid.uuid4()),
                                   **({"trace": own} if own else {}))
        if own is not None and self.tracer is not None:
            self.tracer.record(own, parent, f"resume {ex.name}", "internal", ex.name, start,
                               max(0.0, (self.tracer.clock() - start) * 1000.0),
                               "ok" if result.ok else result.status,
                               {"execution": ex.id, "state_machine": ex.name,
                                RESUME_ATTR: reason})
        now = self.store.get(ex.id)
        if now is not None and now.status not in FINAL and not result.ok:
            logs.event("state machine execution could not resume", execution=ex.id,
                       error=f"{result.error_type}: {result.error_message}")
            # a caller waiting on it gets the error; it stays running (resumed at the
            # next start), as when a state machine's own worker dies before it parks
            self._settle(ex.id, {"errorType": result.error_type or "States.Runtime",
                                 "errorMessage": result.error_message or ""})

    async def idle(self) -> None:
        """Until the resumed executions have run (tests)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def start_live(self) -> None:
        """Several nodes: resume what is free now, then take over every lease interval."""
        await self.recover()
        self._timer_loop_task = asyncio.ensure_future(self._timer_loop())
        if self.leases is not None:
            self._loop = asyncio.ensure_future(self._takeover_loop())

    async def _takeover_loop(self) -> None:
        while True:
            await asyncio.sleep(self.leases.interval)
            try:
                await self.recover("takeover")
            except Exception as exc:  # the store unreachable for a moment: next interval
                logs.event("state machine takeover scan failed", error=repr(exc))

    async def stop(self) -> None:
        loops = (self._loop, self._timer_loop_task)
        self._loop = self._timer_loop_task = None
        await cancel_all([*loops, *self._tasks])
