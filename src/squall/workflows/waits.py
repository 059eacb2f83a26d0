"""What a workflow execution waits on besides its steps: durable timers (`wf.sleep`),
signals (`wf.wait_for_signal`, with their timeouts), and the store's inbox that brings
signals and cancels from other processes (the CLI). A mixin of WorkflowEngine.

A timer is recorded in the history when armed (TimerStarted: its `fire_at`; a signal
wait's SignalWaitStarted: its `deadline`), so a restart re-arms it from there, and it
fires by the engine's clock: the live timer loop (squall.workflows.timers) or
`fire_due()` (tests, and TestClient.drain). A signal is appended as SignalReceived and
matched to the first wait for its name that has not had one (SignalDelivered names the
signal's seq, so each signal is delivered once). In the distributed mode only the node
holding the execution's lease fires its timers (another re-arms them from the history
when it takes the execution over), and one node at a time reads the shared inbox (the
lease `wf:inbox`).
"""

from __future__ import annotations

import asyncio
import heapq
from typing import Any

from ..backends.workflow_store import FINAL, HistoryEvent, WorkflowStoreError
from ..observe import logs
from .timers import timer_loop


class Waits:
    async def signal(self, execution_id: str, name: str, data: Any = None) -> None:
        ex = self._get(execution_id)
        if ex.status in FINAL:
            raise WorkflowStoreError(f"execution {execution_id!r} is {ex.status}: it takes "
                                     "no more signals")
        self.store.append(execution_id, [("SignalReceived", {"signal": name, "data": data})])
        if self.spans is not None:  # (its driver, if here, goes on under a resume span)
            self.spans.resume(execution_id, "signal")
        self._force.add(execution_id)
        self._kick(execution_id)

    async def fire_due(self) -> int:
        """Fire every timer due by the clock (the live loop does this; tests call it after
        advancing an injected clock). Returns how many fired."""
        fired = 0
        now = self.clock()
        while self._timers and self._timers[0][0] <= now:
            _, eid, op, kind = heapq.heappop(self._timers)
            if op in self._resolved.get(eid, {}) or not self._mine(eid):
                continue  # (a lost lease: the new holder re-arms it from the history)
            ex = self.store.get(eid)
            if ex is None or ex.status in FINAL:
                continue
            t = "TimerFired" if kind == "timer" else "SignalTimedOut"
            if self._record(eid, t, {"op": op, "name": "sleep" if kind == "timer" else kind[7:]}
                            ) and self.spans is not None:
                self.spans.resume(eid, "timer")
            fired += 1
        return fired

    async def poll_inbox(self) -> int:
        """Signals and cancels left in the store by other processes (the CLI)."""
        items = self.store.inbox()
        for item in items:
            try:
                if item.kind == "signal":
                    await self.signal(item.execution_id, item.data["name"], item.data.get("data"))
                elif item.kind == "cancel":
                    await self.cancel(item.execution_id, item.data.get("reason", ""))
            except (LookupError, WorkflowStoreError) as exc:
                logs.event("workflow inbox item dropped", execution=item.execution_id,
                           kind=item.kind, error=str(exc))
        self.store.done([i.id for i in items])
        return len(items)

    def _match_signal(self, eid: str, cmd: dict[str, Any], history: list[HistoryEvent],
                      started: HistoryEvent | None) -> None:
        op, name = cmd["op"], cmd["name"]
        if started is None:
            timeout = cmd.get("timeout")
            deadline = self.clock() + timeout if timeout is not None else None
            self.store.append(eid, [("SignalWaitStarted", {"op": op, "name": name,
                                                           "deadline": deadline})])
        else:
            deadline = started.data.get("deadline")
        used = {e.data.get("signal_seq") for e in history if e.type == "SignalDelivered"}
        for e in history:
            if e.type == "SignalReceived" and e.data.get("signal") == name and e.seq not in used:
                self._record(eid, "SignalDelivered", {"op": op, "name": name,
                                                      "output": e.data.get("data"),
                                                      "signal_seq": e.seq})
                return
        if deadline is not None and (eid, op) not in self._inflight:
            self._inflight.add((eid, op))
            self._arm(deadline, eid, op, f"signal:{name}")

    def _arm(self, fire_at: float, eid: str, op: int, kind: str) -> None:
        heapq.heappush(self._timers, (fire_at, eid, op, kind))
        self._timer_changed.set()
        if fire_at <= self.clock():
            self._spawn(self.fire_due())

    async def _timer_loop(self) -> None:
        await timer_loop(self.fire_due, self._timers, self._timer_changed, self.clock,
                         lambda: not self._stopping)

    async def _inbox_loop(self) -> None:
        while not self._stopping:
            if self.leases is not None and (not self.workflows
                                            or not await self.leases.acquire("wf:inbox")):
                await asyncio.sleep(self.inbox_interval_s)
                continue  # another node reads the shared inbox (or there are no workflows)
            try:
                await self.poll_inbox()
            except WorkflowStoreError as exc:  # pragma: no cover
                logs.event("workflow inbox failed", error=str(exc))
            await asyncio.sleep(self.inbox_interval_s)
