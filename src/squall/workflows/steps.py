"""Running a workflow's steps and a saga's compensations: a mixin of WorkflowEngine.

A step is invoked with its retry policy. Each failed attempt that will be retried is
recorded (`StepAttemptFailed`: the attempt number, the error, when the retry is due)
before the back-off, so after a crash or restart the step goes on from the attempts it
has used and waits out the rest of its back-off: a restart grants no fresh attempts. An
attempt that was running when the process died is not counted (it had no outcome) and
runs again: steps are at-least-once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from ..backends.workflow_store import (CANCELLED, COMPENSATED, FAILED, FINAL, Execution,
                                       HistoryEvent, WorkflowStoreError)
from .retry import StepRetry

COMPENSATION_RETRY = StepRetry(interval_s=1.0, max_attempts=3, backoff_rate=2.0)


class RunsSteps:
    async def _invoke_with_retry(self, function: str, data: Any, policy: StepRetry,
                                 eid: str, op: int | None = None,
                                 prior: dict[str, Any] | None = None
                                 ) -> tuple[bool, Any, int]:
        """(ok, output or error, attempts). `op`: record failed attempts under it;
        `prior`: the last recorded failed attempt (go on from there after a restart)."""
        attempt = 0
        if prior is not None:
            attempt = int(prior.get("attempt", 0))
            wait = float(prior.get("retry_at") or 0) - self.clock()
            if wait > 0:
                await self.sleep(wait)
        while True:
            attempt += 1
            async with self._parallel:
                result = await self.invoke(function, "event", json.dumps(data),
                                           request_id=str(uuid.uuid4()), **self._trace(eid))
            if result.status == "throttled":  # no slot: not the step's failure
                attempt -= 1
                await asyncio.sleep(0.01)
                continue
            if result.ok:
                return True, result.output, attempt
            err = {"errorType": result.error_type, "errorMessage": result.error_message}
            ex = self.store.get(eid)
            if (attempt > policy.max_attempts or not policy.matches(result.error_type)
                    or ex is None or ex.status in FINAL or eid in self._cancelling):
                return False, err, attempt
            delay = policy.delay(attempt, self.rand)
            if op is not None and not self._note_attempt(eid, {
                    "op": op, "name": function, "attempt": attempt, "error": err,
                    "retry_at": self.clock() + delay}):
                return False, err, attempt  # closed meanwhile, or no longer this node's
            await self.sleep(delay)

    def _note_attempt(self, eid: str, data: dict[str, Any]) -> bool:
        """Record a failed attempt; it resolves nothing, so the driver is not woken."""
        if not self._mine(eid):
            return False
        try:
            self.store.append(eid, [("StepAttemptFailed", data)])
        except WorkflowStoreError:
            return False
        return True

    async def _run_step(self, eid: str, cmd: dict[str, Any],
                        prior: dict[str, Any] | None = None) -> None:
        op, name = cmd["op"], cmd["name"]
        group = cmd.get("group")
        sem = None
        if group:
            sem = self._groups.setdefault((eid, group), asyncio.Semaphore(cmd.get("limit", 1)))
            await sem.acquire()
        try:
            ok, value, attempts = await self._invoke_with_retry(
                name, cmd.get("input"), StepRetry.of(cmd.get("retry")), eid, op, prior)
        finally:
            if sem is not None:
                sem.release()
            self._inflight.discard((eid, op))
            self._stepping.discard((eid, op))
        if ok:
            self._record(eid, "StepCompleted", {"op": op, "name": name, "output": value,
                                                "attempts": attempts})
        else:
            self._record(eid, "StepFailed", {"op": op, "name": name, "error": value,
                                             "attempts": attempts})

    async def _unwind(self, ex: Execution, history: list[HistoryEvent],
                      decision: dict[str, Any], cancelled: bool) -> None:
        """The saga: completed steps' compensations, newest first, each recorded."""
        comps = decision.get("compensations") or []
        done = {e.data["index"] for e in history if e.type == "CompensationCompleted"}
        error = decision["error"]
        if comps and not any(e.type == "CompensationStarted" for e in history):
            self.store.append(ex.id, [("CompensationStarted", {"error": error,
                                                               "steps": len(comps)})])
        for i, comp in enumerate(comps):
            if i in done:
                continue
            ok, value, attempts = await self._invoke_with_retry(
                comp["function"], comp.get("input"), COMPENSATION_RETRY, ex.id)
            data = {"index": i, "step": comp["step"], "step_op": comp["op"],
                    "function": comp["function"], "attempts": attempts}
            if not ok:
                err = {"errorType": "Workflow.CompensationFailed",
                       "errorMessage": f"compensation {comp['function']!r} of step "
                                       f"{comp['step']!r} failed: {value.get('errorType')}: "
                                       f"{value.get('errorMessage')} (after: "
                                       f"{error['errorMessage']})"}
                self._close(ex.id, "CompensationFailed", {**data, "error": value}, FAILED,
                            error=err)
                return
            self.store.append(ex.id, [("CompensationCompleted", {**data, "output": value})])
        status = CANCELLED if cancelled else (COMPENSATED if comps else FAILED)
        self._close(ex.id, "WorkflowCancelled" if cancelled else "WorkflowFailed",
                    {"error": error}, status, error=error)

    async def _cancel_children(self, eid: str, reason: str) -> None:
        """Cancel the running child workflows of `eid` (and so theirs): a parent that is
        cancelled or closes takes its running children with it (Temporal's default
        parent-close policy, TERMINATE, but here the children's compensations run)."""
        for e in self.store.history(eid):
            if e.type != "ChildStarted":
                continue
            child = self.store.get(e.data["child"])
            if child is not None and child.status not in FINAL:
                await self.cancel(child.id, reason)
