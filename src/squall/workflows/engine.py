"""The workflow engine: runs in the supervisor (asyncio), never runs user code.

For each running execution a driver loops: read the history, invoke the workflow's
function with it (the function replays in a worker and answers with a decision, see
squall.workflows.context), then carry the decision out: invoke step functions (with
their retry policies), arm durable timers, match signals, start child workflows, run a
saga's compensations. Every outcome is one append to the workflow store (one durable
write per step checkpoint); the driver replays again once what the code waits for is
there. After a crash or restart `recover()` drives every running execution again from
its history: finished steps are not repeated (a step that was running when the process
died runs again: steps are at-least-once, make their effects idempotent).

Several nodes on one store (the distributed mode: `leases` given) take turns: a driver
first takes the lease `wf:<execution id>` (squall.sources.leases) and drives only while
it holds it, so one node at a time advances an execution, fires its timers and matches
its signals. A parked driver looks at the execution's history length every lease
interval, so what other nodes append (a signal, a child's outcome) wakes it; every
interval each node also offers to drive the running executions nobody drives here, so
a dead node's executions are taken over (replayed from history) once its leases expire.
`result()` then polls the store, as the execution may finish on another node.

One trace per execution (when traced: `spans`, squall.observe.traces.WorkflowSpans):
WorkflowStarted keeps the execution span's traceparent (with its loop lineage) and its
caller's span id; a timer firing or a signal opens a resume span under it, and a driver
for an execution this process did not start (recover() after a restart, a takeover)
restores it from there, so every replay and step of the execution stays in its trace.

Steps and a saga's compensations run in squall.workflows.steps, timers, signals and the
inbox in squall.workflows.waits (mixins of the engine): this module drives.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from typing import Any, Awaitable, Callable

from ..backends.workflow_store import (FINAL, NONDETERMINISTIC,
                                       SUCCEEDED, Execution, ExecutionExists, HistoryEvent,
                                       WorkflowStore, WorkflowStoreError)
from ..aiocompat import wait_for
from ..observe import logs
from .context import MARKER
from .machines import expanded
from .steps import COMPENSATION_RETRY, RunsSteps
from .waits import Waits

Invoke = Callable[..., Awaitable[Any]]  # (function, kind, payload, *, request_id) -> result
DECISION_CRASH_RETRIES = 5  # replays re-run after their worker crashed, before giving up
__all__ = ["COMPENSATION_RETRY", "MARKER", "WorkflowEngine", "WorkflowFailed"]


class WorkflowFailed(Exception):
    """A workflow run with `invoke` ended other than succeeded."""

    def __init__(self, execution: Execution) -> None:
        err = execution.error or {}
        super().__init__(f"workflow {execution.name!r} execution {execution.id!r} "
                         f"{execution.status}: {err.get('errorType')}: {err.get('errorMessage')}")
        self.execution = execution
        self.payload = {"errorType": err.get("errorType") or "Workflow.Failed",
                        "errorMessage": str(self)}


class UnknownExecution(LookupError):
    pass


def _child_op(child_id: str) -> int:
    return int(child_id.rsplit(".c", 1)[1])


class WorkflowEngine(RunsSteps, Waits):
    def __init__(self, store: WorkflowStore, invoke: Invoke, *,
                 workflows: dict[str, dict[str, Any]] | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 rand: Callable[[], float] = random.random, max_parallel: int = 8,
                 inbox_interval_s: float = 0.5, leases: Any = None) -> None:
        self.store = store
        self.invoke = invoke
        self.workflows: dict[str, dict[str, Any]] = dict(workflows or {})
        self.clock = clock
        self.sleep = sleep
        self.rand = rand
        self.inbox_interval_s = inbox_interval_s
        self.leases = leases  # squall.sources.leases.LeaseKeeper: shared store, several nodes
        self._parallel = asyncio.Semaphore(max_parallel)
        self._groups: dict[tuple[str, str], asyncio.Semaphore] = {}
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._force: set[str] = set()
        self._resolved: dict[str, dict[int, str]] = {}  # id -> op -> outcome type
        self._inflight: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waiters: dict[str, list[asyncio.Future[Execution]]] = {}
        self._timers: list[tuple[float, str, int, str]] = []  # (fire_at, id, op, kind)
        self._timer_changed = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._parked: set[str] = set()  # drivers waiting for an outcome, a timer or a signal
        self._parents: set[str] = set()  # executions that started child workflows
        self._stepping: set[tuple[str, int]] = set()  # steps running: (execution, op)
        self._cancelling: set[str] = set()  # their steps are not retried any more
        self._changed = asyncio.Event()
        self._stopping = False
        self.spans: Any = None  # squall.observe.traces.WorkflowSpans: one trace per execution
        # why a driver about to start will drive an execution this process did not start
        # (its resume span's squall.resume; "restart" unless said otherwise)
        self._resume_reason: dict[str, str] = {}
        # an execution reached a final status (squall.workflows.handoff.Handoffs.ended)
        self.on_final: Callable[[str], None] | None = None

    def _trace(self, eid: str) -> dict[str, Any]:
        """invoke() keywords carrying the execution's span to its steps, if traced."""
        trace = self.spans.trace(eid) if self.spans is not None else None
        return {"trace": trace} if trace else {}

    def configure(self, workflows: dict[str, dict[str, Any]]) -> None:
        self.workflows = dict(workflows)

    # -- lifecycle -----------------------------------------------------------------

    async def start_live(self) -> None:
        """Recover running executions; fire timers and read the inbox as time passes."""
        await self.recover()
        self._loops = [asyncio.ensure_future(self._timer_loop()),
                       asyncio.ensure_future(self._inbox_loop())]
        if self.leases is not None:
            self._loops.append(asyncio.ensure_future(self._takeover_loop()))

    async def stop(self) -> None:
        # a flag as well as cancel(): Python 3.11's wait_for can swallow a cancellation
        # that arrives as the awaited invocation completes
        self._stopping = True
        for wake in self._wake.values():
            wake.set()
        self._timer_changed.set()
        for t in [*self._loops, *self._drivers.values(), *self._tasks]:
            t.cancel()
        for t in [*self._loops, *self._drivers.values(), *self._tasks]:
            try:
                await t
            except BaseException:
                pass
        self._loops.clear()

    async def recover(self) -> int:
        """Drive every running execution again from its history."""
        running = [ex for ex in self.store.list(status="running", limit=1_000_000)
                   if ex.kind == "workflow"]  # (state machines: squall.workflows.machines)
        for ex in running:
            self._kick(ex.id)
        return len(running)

    async def idle(self) -> None:
        """Until no driver or step runs (timers and signal waits may still be pending)."""
        while True:
            self._changed.clear()
            busy = [t for t in self._tasks if not t.done()] + [
                t for eid, t in self._drivers.items() if not t.done() and eid not in self._parked]
            if not busy:
                return
            waiter = asyncio.ensure_future(self._changed.wait())
            await asyncio.wait([*busy, waiter], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()

    # -- the API (service calls, CLI, tests) ------------------------------------------

    async def start(self, name: str, input: Any = None, *, id: str | None = None,
                    parent: str | None = None, trace: str | None = None) -> Execution:
        """A new execution of workflow `name` (or the existing one with this id)."""
        if name not in self.workflows:
            raise LookupError(f"no workflow {name!r} in this app; declared: "
                              f"{', '.join(sorted(self.workflows)) or 'none'}")
        eid = id or uuid.uuid4().hex
        # the distributed mode: the lease first, so the starting node drives it (another
        # node's takeover scan never finds it running and unleased)
        leased = self.leases is not None and await self.leases.acquire(f"wf:{eid}")
        started: dict[str, Any] = {"name": name, "input": input}
        planned = self.spans.plan(trace) if self.spans is not None else None
        if planned is not None:  # its span, kept: a restart or takeover goes on in its trace
            started.update(planned)
        try:
            ex = self.store.create(
                Execution(id=eid, name=name, kind="workflow", status="running", input=input,
                          parent=parent), [("WorkflowStarted", started)])
        except ExecutionExists:
            if leased and eid not in self._drivers:
                self._kick(eid)  # its driver releases the lease if it is finished
            ex = self.store.get(eid)
            assert ex is not None
            if ex.name != name:
                raise
            return ex
        except BaseException:
            if leased:
                await self.leases.release(f"wf:{eid}")
            raise
        logs.event("workflow started", workflow=name, execution=eid)
        if self.spans is not None:
            self.spans.begin(eid, name, trace, planned=planned)
        self._kick(eid)
        return ex

    async def result(self, execution_id: str, timeout: float | None = None) -> Execution:
        """Wait until the execution is final."""
        ex = self.store.get(execution_id)
        if ex is None:
            raise UnknownExecution(f"no workflow execution {execution_id!r}")
        if ex.status in FINAL:
            return ex
        fut: asyncio.Future[Execution] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(execution_id, []).append(fut)
        if execution_id not in self._drivers:
            self._kick(execution_id)
        if self.leases is None:
            return await wait_for(fut, timeout)
        # another node may drive (and finish) it: look at the store every lease interval
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = self.leases.interval if deadline is None else min(
                self.leases.interval, max(deadline - time.monotonic(), 0))
            try:
                return await wait_for(asyncio.shield(fut), wait)
            except asyncio.TimeoutError:
                ex = self._get(execution_id)
                if ex.status in FINAL:
                    if fut in self._waiters.get(execution_id, []):
                        self._waiters[execution_id].remove(fut)
                    return ex
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    async def run(self, name: str, input: Any = None, *, id: str | None = None,
                  timeout: float | None = None) -> Any:
        ex = await self.result((await self.start(name, input, id=id)).id, timeout)
        if ex.status != SUCCEEDED:
            raise WorkflowFailed(ex)
        return ex.output

    async def cancel(self, execution_id: str, reason: str = "") -> Execution:
        """Cancel: completed steps' compensations run (newest first), then `cancelled`."""
        ex = self._get(execution_id)
        if ex.status in FINAL or any(e.type == "CancelRequested"
                                     for e in self.store.history(execution_id)):
            return ex  # (already asked: once is enough)
        self._cancelling.add(execution_id)
        self.store.append(execution_id, [("CancelRequested", {"reason": reason})])
        self._force.add(execution_id)
        self._kick(execution_id)
        await self._cancel_children(execution_id, f"parent {execution_id} cancelled")
        return ex

    def describe(self, execution_id: str) -> dict[str, Any]:
        return self._get(execution_id).to_dict()

    def history(self, execution_id: str) -> list[dict[str, Any]]:
        self._get(execution_id)
        return [e.to_dict() for e in expanded(self.store.history(execution_id))]

    def list(self, name: str | None = None, status: str | None = None,
             limit: int = 100) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.store.list(name=name, status=status, limit=limit)]

    async def serve(self, payload: list[Any]) -> Any:
        """The "workflow" service a worker calls (app.invoke of a workflow, ...)."""
        op, *args = payload
        if op == "run":
            name, data, eid = args[0], args[1], (args[2] if len(args) > 2 else None)
            return await self.run(name, data, id=eid)
        if op == "start":
            return (await self.start(args[0], args[1], id=args[2] if len(args) > 2 else None)).id
        if op == "signal":
            await self.signal(args[0], args[1], args[2] if len(args) > 2 else None)
            return None
        if op == "cancel":
            return (await self.cancel(args[0])).to_dict()
        if op == "describe":
            return self.describe(args[0])
        if op == "history":
            return self.history(args[0])
        if op == "list":
            return self.list(*args)
        raise ValueError(f"unknown workflow operation {op!r}")

    # -- driving -----------------------------------------------------------------------

    def _get(self, execution_id: str) -> Execution:
        ex = self.store.get(execution_id)
        if ex is None:
            raise UnknownExecution(f"no workflow execution {execution_id!r}")
        return ex

    def _kick(self, eid: str) -> None:
        self._wake_driver(eid)
        task = self._drivers.get(eid)
        if task is None or task.done():
            self._drivers[eid] = asyncio.ensure_future(self._drive(eid))

    async def _park_shared(self, eid: str, wake: asyncio.Event, seen: int) -> None:
        """Wait for a wake-up, or for another node's append to this history."""
        while not wake.is_set() and not self._stopping:
            try:
                await wait_for(wake.wait(), self.leases.interval)
            except asyncio.TimeoutError:
                ex = self.store.get(eid)
                if ex is None or ex.length != seen or ex.status in FINAL or not self._mine(eid):
                    self._force.add(eid)
                    return

    def _record(self, eid: str, type_: str, data: dict[str, Any], *,
                fenced: bool = True) -> bool:
        """Append an outcome; wake the driver. False if the execution is closed (or, in
        the distributed mode, is no longer this node's to advance; a child's outcome is
        not `fenced`: its own driver reports it to the parent, wherever that runs)."""
        if fenced and not self._mine(eid):
            return False
        try:
            self.store.append(eid, [(type_, data)])
        except WorkflowStoreError:
            return False
        if "op" in data:
            self._resolved.setdefault(eid, {})[data["op"]] = type_
        self._wake_driver(eid)
        return True

    def _wake_driver(self, eid: str) -> None:
        """Wake `eid`'s driver; it counts as busy from now (`idle()` waits for it), not
        only once the loop has resumed it."""
        self._wake.setdefault(eid, asyncio.Event()).set()
        self._parked.discard(eid)

    def _mine(self, eid: str) -> bool:
        """May this node act on the execution (always, without leases)?"""
        return self.leases is None or self.leases.holds(f"wf:{eid}")

    async def _drive(self, eid: str) -> None:
        lease = f"wf:{eid}"
        held = False
        try:
            if self.leases is not None:
                held = await self.leases.acquire(lease)
                if not held:  # another node drives it; the takeover loop offers again
                    self._wake.pop(eid, None)
                    self._force.discard(eid)
                    self._resume_reason.pop(eid, None)
                    return
            await self._drive_loop(eid)
        except Exception as exc:  # pragma: no cover - a bug or the store failing
            logs.event("workflow driver failed", execution=eid, error=repr(exc))
            raise
        finally:
            if self._drivers.get(eid) is asyncio.current_task():
                self._drivers.pop(eid, None)
            if held and not self._stopping:
                self._resolved.pop(eid, None)
                self._inflight.difference_update({k for k in self._inflight if k[0] == eid})
                await self.leases.release(lease)

    async def _drive_loop(self, eid: str) -> None:
        wake = self._wake.setdefault(eid, asyncio.Event())
        waiting: list[int] = []
        seen = 0  # history length at the last replay (shared store: others append too)
        while not self._stopping:
            if not self._mine(eid):
                logs.event("workflow lease lost; another node drives it", execution=eid)
                if self.spans is not None:
                    self.spans.forget(eid)
                return
            ex = self.store.get(eid)
            if ex is None:
                return
            if ex.status in FINAL:
                self._finished(ex)
                return
            resolved = self._resolved.get(eid, {})
            if waiting and eid not in self._force and not (
                    all(op in resolved for op in waiting)
                    or any(resolved.get(op, "").endswith("Failed") for op in waiting)):
                wake.clear()
                self._parked.add(eid)
                self._changed.set()
                try:
                    if self.leases is None:
                        await wake.wait()
                    else:
                        await self._park_shared(eid, wake, seen)
                finally:
                    self._parked.discard(eid)
                continue
            self._force.discard(eid)
            wake.clear()
            history = self.store.history(eid)
            seen = len(history)
            self._resolved[eid] = resolved = {
                e.data["op"]: e.type for e in history
                if e.type in ("StepCompleted", "StepFailed", "TimerFired", "SignalDelivered",
                              "SignalTimedOut", "ChildCompleted", "ChildFailed")}
            cancelled = any(e.type == "CancelRequested" for e in history)
            if self.spans is not None and history and self.spans.trace(eid) is None:
                # started by another process (it restarted, or died and this node took
                # over): go on in the trace its first history event keeps
                self.spans.restore(eid, ex.name, history[0].data, ex.created_at,
                                   self._resume_reason.pop(eid, "restart"))
            decision = await self._decide(ex, history)
            status = decision["status"]
            if status == "suspended" and cancelled:
                status = "failed"
                decision["error"] = {"errorType": "Workflow.Cancelled",
                                     "errorMessage": "cancelled"}
            if status == "completed":
                self._close(eid, "WorkflowCompleted", {"output": decision.get("output")},
                            SUCCEEDED, output=decision.get("output"))
                continue
            if status == "nondeterministic":
                self._close(eid, "WorkflowNonDeterministic", {"error": decision["error"]},
                            NONDETERMINISTIC, error=decision["error"])
                logs.event("workflow is non-deterministic", execution=eid, workflow=ex.name,
                           error=decision["error"]["errorMessage"])
                continue
            if status == "failed":
                # first let steps in flight end (one that completes is compensated with
                # the others), and decide again if outcomes came during the replay
                running = [op for e, op in self._stepping if e == eid]
                now = self.store.get(eid)
                if running or (now is not None and now.length != len(history)):
                    waiting = running
                    continue
                await self._unwind(ex, history, decision, cancelled)
                continue
            for cmd in decision["commands"]:
                self._launch(ex, cmd, history)
            waiting = decision.get("waiting") or []

    async def _decide(self, ex: Execution, history: list[HistoryEvent]) -> dict[str, Any]:
        spec = self.workflows.get(ex.name, {})
        payload = {MARKER: {"id": ex.id, "name": ex.name, "input": ex.input,
                            "retry": spec.get("retry"),
                            "history": [e.to_dict() for e in history]}}
        crashes = 0
        while True:
            result = await self.invoke(ex.name, "event", json.dumps(payload),
                                       request_id=str(uuid.uuid4()), **self._trace(ex.id))
            if result.status == "crash" and crashes < DECISION_CRASH_RETRIES:
                # the worker running the replay died (kill -9, a node's worker lost): a
                # replay has no side effects, so it is run again, not the workflow failed
                crashes += 1
                await asyncio.sleep(0.05 * 2 ** crashes)
                continue
            if result.status != "throttled":
                break
            await asyncio.sleep(0.01)
        if not result.ok:
            return {"status": "failed", "compensations": [], "error": {
                "errorType": "Workflow.TaskFailed",
                "errorMessage": f"the workflow function failed outside of its steps: "
                                f"{result.error_type}: {result.error_message}"}}
        return result.output

    def _close(self, eid: str, type_: str, data: dict[str, Any], status: str, *,
               output: Any = None, error: dict[str, Any] | None = None) -> None:
        if not self._mine(eid):
            return  # the lease lapsed during the replay: the new holder decides
        try:
            self.store.append(eid, [(type_, data)], status=status, output=output, error=error)
        except WorkflowStoreError:
            pass  # closed meanwhile
        logs.event("workflow finished", execution=eid, status=status)

    def _finished(self, ex: Execution) -> None:
        for fut in self._waiters.pop(ex.id, []):
            if not fut.done():
                fut.set_result(ex)
        self._resolved.pop(ex.id, None)
        self._wake.pop(ex.id, None)
        self._cancelling.discard(ex.id)
        if ex.id in self._parents:  # its running children go with it
            self._parents.discard(ex.id)
            self._spawn(self._cancel_children(ex.id, f"parent {ex.id} {ex.status}"))
        if self.spans is not None:
            self.spans.end(ex.id, ex.status)
        if self.on_final is not None:
            self.on_final(ex.id)
        if ex.parent:
            op = _child_op(ex.id)
            if ex.status == SUCCEEDED:
                self._record(ex.parent, "ChildCompleted",
                             {"op": op, "name": ex.name, "output": ex.output}, fenced=False)
            else:
                err = dict(ex.error or {})
                err.setdefault("errorType", f"Workflow.{ex.status}")
                self._record(ex.parent, "ChildFailed", {"op": op, "name": ex.name, "error": err},
                             fenced=False)

    def _launch(self, ex: Execution, cmd: dict[str, Any], history: list[HistoryEvent]) -> None:
        op, kind = cmd["op"], cmd["type"]
        started = {e.data.get("op"): e for e in history
                   if e.type in ("TimerStarted", "SignalWaitStarted", "ChildStarted",
                                 "StepAttemptFailed")}
        if kind == "signal":
            self._match_signal(ex.id, cmd, history, started.get(op))
            return
        if (ex.id, op) in self._inflight:
            return
        if kind == "step":
            self._inflight.add((ex.id, op))
            self._stepping.add((ex.id, op))
            prior = started.get(op)  # its last failed attempt (the history goes on)
            self._spawn(self._run_step(ex.id, cmd, prior.data if prior else None))
        elif kind == "timer":
            self._inflight.add((ex.id, op))
            st = started.get(op)
            fire_at = st.data["fire_at"] if st else self.clock() + cmd["seconds"]
            if st is None:
                self.store.append(ex.id, [("TimerStarted", {"op": op, "name": "sleep",
                                                            "fire_at": fire_at})])
            self._arm(fire_at, ex.id, op, "timer")
        elif kind == "child":
            self._inflight.add((ex.id, op))
            self._parents.add(ex.id)
            child_id = f"{ex.id}.c{op}"
            if started.get(op) is None:
                self.store.append(ex.id, [("ChildStarted", {"op": op, "name": cmd["name"],
                                                            "child": child_id})])
            self._spawn(self._start_child(child_id, cmd, ex.id))

    async def _start_child(self, child_id: str, cmd: dict[str, Any], parent: str) -> None:
        try:
            child = await self.start(cmd["name"], cmd.get("input"), id=child_id, parent=parent,
                                     **self._trace(parent))  # (in the parent's trace)
        except LookupError as exc:
            self._record(parent, "ChildFailed", {"op": cmd["op"], "name": cmd["name"], "error": {
                "errorType": "Workflow.UnknownWorkflow", "errorMessage": str(exc)}})
            return
        if child.status in FINAL:
            self._finished(child)
            return
        up = self.store.get(parent)
        if up is None or up.status in FINAL:  # the parent ended while this one started
            await self.cancel(child.id, f"parent {parent} {up.status if up else 'gone'}")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _takeover_loop(self) -> None:
        """Offer to drive every running execution no driver here drives (a dead node's,
        once its lease has expired; one whose driver here gave up its lease)."""
        while not self._stopping:
            await asyncio.sleep(self.leases.interval)
            if not self.workflows:
                continue  # an app without workflows: nothing to take over
            try:
                running = self.store.list(status="running", limit=1_000_000)
            except Exception as exc:  # the store unreachable for a moment: next interval
                logs.event("workflow takeover scan failed", error=repr(exc))
                continue
            for ex in running:  # (this app's workflows: not state machines, not other apps')
                if ex.kind == "workflow" and ex.name in self.workflows and (
                        ex.id not in self._drivers):
                    self._resume_reason[ex.id] = "takeover"
                    self._kick(ex.id)
