"""Asynchronous invocations handed over to durable executions.

An asynchronous invocation (`app.invoke_async`, or a bus rule, topic subscription or
destination that targets a function) of a workflow or a state machine is done once its
execution is durably started, as Step Functions' StartExecution is: the queue message is
acknowledged then, not when the execution ends. An execution that waits for hours or
days (a long Wait or Retry back-off, `wf.sleep`, a signal) is so never redelivered,
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

Several nodes on one store (the distributed mode: `leases` given): an execution may end
on a node that dies before it delivers, and every node may find the handoff. Whoever
settles one first takes the lease `handoff:<execution id>` (squall.sources.leases) and
reads the handoff again under it, so one node delivers it and the others find it gone
(a holder paused past its lease could overlap with the next: the broker's dedup key
covers that, as after a crash). Every lease interval each node settles the handoffs of
ended executions nobody delivered (`start_live`: the takeover scan of handoffs, beside
the engine's and the state machines'), so a dead node's deliveries are made without a
restart. Only this app's handoffs are settled (`owns`: the store may be shared by apps).

The record (Lambda's destination shape) is built by whoever `deliver`s it
(squall.sources.messaging): this module keeps and times obligations, it knows no queue.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from ..backends.workflow_store import FINAL, SUCCEEDED, Execution, WorkflowStore
from ..observe import logs
from ..runtime.aio import cancel_all

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

    def __init__(self, store: WorkflowStore, *, leases: Any = None) -> None:
        self.store = store
        self.leases = leases  # squall.sources.leases.LeaseKeeper: several nodes, one store
        self.deliver: Deliver | None = None  # set where messaging runs (not a CLI invoke)
        # is this handoff (its data: the async invocation's function, …) this app's?
        self.owns: Callable[[dict[str, Any]], bool] = lambda data: True
        self._settling: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.Task[None] | None = None
        self.delivered = 0  # outcomes delivered so far (the test client's drain)

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
            return  # nobody here can deliver: the next start (or scan) that can does
        task = asyncio.ensure_future(self.settle(execution_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self, execution_id: str) -> bool:
        """Deliver the handoff of a final execution and drop it; False if there is none,
        the execution is not final, another node is settling it, or the delivery failed
        (kept for the next scan or start)."""
        if self.deliver is None or execution_id in self._settling:
            return False
        self._settling.add(execution_id)
        claim = f"handoff:{execution_id}"
        claimed = False
        try:
            if self.leases is not None:
                claimed = await self.leases.acquire(claim)
                if not claimed:
                    return False  # another node is delivering it
            held = self.store.handoffs(execution_id)  # (again: under the claim)
            ex = self.store.get(execution_id) if held else None
            if ex is None or ex.status not in FINAL:
                return False
            try:
                await self.deliver(held[0].data, outcome(ex))
            except Exception as exc:  # the destination is part of the contract: say so
                logs.event("execution outcome not delivered; retried at the next scan or start",
                           logging.ERROR, execution=execution_id,
                           error=f"{type(exc).__name__}: {exc}")
                return False
            self.store.drop_handoff(execution_id)
            self.delivered += 1
            return True
        finally:
            if claimed:
                await self.leases.release(claim)
            self._settling.discard(execution_id)

    async def recover(self) -> int:
        """Deliver this app's handoffs of executions that ended while nobody could (a
        crash, a stop between the end and the delivery, a node that died); how many
        were delivered."""
        if self.deliver is None:
            return 0
        done = 0
        for h in self.store.handoffs(limit=1_000_000, ended=True):
            if self.owns(h.data):
                done += await self.settle(h.execution_id)
        return done

    def start_live(self) -> None:
        """Several nodes: settle what nobody delivered every lease interval."""
        if self.leases is not None and self._loop is None:
            self._loop = asyncio.ensure_future(self._takeover_loop())

    async def _takeover_loop(self) -> None:
        while True:
            await asyncio.sleep(self.leases.interval)
            try:
                await self.recover()
            except Exception as exc:  # the store unreachable for a moment: next interval
                logs.event("handoff takeover scan failed", logging.WARNING,
                           error=f"{type(exc).__name__}: {exc}")

    async def idle(self) -> None:
        """Until the deliveries under way have run (tests)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def stop(self) -> None:
        loop, self._loop = self._loop, None
        await cancel_all([loop, *self._tasks])
