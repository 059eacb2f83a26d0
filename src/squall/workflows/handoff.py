"""Asynchronous invocations handed over to durable executions.

An asynchronous invocation (`app.invoke_async`, or a bus rule, topic subscription or
destination that targets a function) of a workflow or a state machine is done once its
execution is durably started, as Step Functions' StartExecution is: the queue message is
acknowledged then, not when the execution ends. An execution that waits for hours or
days (a long Wait or Retry back-off, `ctx.sleep`, a signal) is so never redelivered,
never counted against `max_receive` and never dead-lettered while it is healthy, and no
worker or delivery waits on it.

What the delivery still owes, the on-success / on-failure destination record of the
final outcome, is handed to the execution: `hold()` records it in the workflow store
(beside the history, see squall.backends.workflow_store) before the message is
acknowledged, and `settle()` delivers it when the execution reaches a final status (the
engine and the state-machine supervisor call `ended()`), or `recover()` at the next start
for one that ended while nobody could deliver it. A handoff is dropped once delivered, so
each outcome goes out once; a crash between delivering and dropping delivers it again at
the next start, which the destination's broker deduplicates (queue and function
destinations carry a key made of the execution id).

The record (Lambda's destination shape) is built by whoever `deliver`s it
(squall.sources.messaging): this module keeps and times obligations, it knows no queue.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from ..backends.workflow_store import FINAL, SUCCEEDED, Execution, WorkflowStore
from ..observe import logs

# (the handoff as recorded, the outcome: {"status", "output"} or {"status", "errorType",
# "errorMessage"}) -> None once the destination has it
Deliver = Callable[[dict[str, Any], dict[str, Any]], Awaitable[None]]


def outcome(ex: Execution) -> dict[str, Any]:
    """A final execution's outcome, as a destination record reports it."""
    if ex.status == SUCCEEDED:
        return {"status": ex.status, "output": ex.output}
    prefix = "States" if ex.kind == "state_machine" else "Workflow"
    err = dict(ex.error or {})
    return {"status": ex.status,
            "errorType": err.get("errorType") or f"{prefix}.{ex.status}",
            "errorMessage": err.get("errorMessage") or f"execution {ex.id} {ex.status}"}


class Handoffs:
    """The obligations of one app's executions to their asynchronous invokers."""

    def __init__(self, store: WorkflowStore) -> None:
        self.store = store
        self.deliver: Deliver | None = None  # set where messaging runs (not a CLI invoke)
        self._settling: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def hold(self, execution_id: str, data: dict[str, Any]) -> None:
        """Record what `execution_id` owes when it ends; durable on return. One that has
        ended already (it finished between its start and this call) settles now."""
        self.store.hand_off(execution_id, data)
        ex = self.store.get(execution_id)
        if ex is not None and ex.status in FINAL:
            await self.settle(execution_id)

    def ended(self, execution_id: str) -> None:
        """An execution reached a final status: deliver its handoff, if it has one."""
        if self.deliver is None:
            return  # nobody here can deliver: the next start that can does (recover)
        task = asyncio.ensure_future(self.settle(execution_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self, execution_id: str) -> bool:
        """Deliver the handoff of a final execution and drop it; False if there is none,
        the execution is not final, or the delivery failed (kept for the next start)."""
        if self.deliver is None or execution_id in self._settling:
            return False
        self._settling.add(execution_id)
        try:
            held = self.store.handoffs(execution_id)
            ex = self.store.get(execution_id) if held else None
            if ex is None or ex.status not in FINAL:
                return False
            try:
                await self.deliver(held[0].data, outcome(ex))
            except Exception as exc:  # the destination is part of the contract: say so
                logs.event("execution outcome not delivered; retried at the next start",
                           logging.ERROR, execution=execution_id,
                           error=f"{type(exc).__name__}: {exc}")
                return False
            self.store.drop_handoff(execution_id)
            return True
        finally:
            self._settling.discard(execution_id)

    async def recover(self) -> int:
        """Deliver the handoffs of executions that ended while nobody could (a crash, a
        stop between the end and the delivery); how many were delivered."""
        if self.deliver is None:
            return 0
        done = 0
        for h in self.store.handoffs(limit=1_000_000):
            done += await self.settle(h.execution_id)
        return done

    async def idle(self) -> None:
        """Until the deliveries under way have run (tests)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            try:
                await t
            except BaseException:
                pass
