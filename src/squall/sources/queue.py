"""The queue consumer: feeds a function batches from its queue (Lambda's SQS
event-source mapping, run by the supervisor).

At most `concurrency` batches are in flight; the rest of a burst waits durably in the
queue (load levelling). After an invocation, the batch is settled item by item:
succeeded items are acknowledged, failed ones go back with exponential backoff and
jitter, and an item that has been delivered `max_receive` times goes to the
dead-letter queue with its last error. Items older than `max_age_s` are dead-lettered
without being run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from ..backends.broker import BrokerError, Delivery, QueueBroker
from ..config import FunctionConfig, QueueTrigger
from ..events.lineage import RECURSIVE_LOOP
from ..observe import logs
from ..runtime.aio import cancel
from ..types import InvocationResult

LONG_POLL_S = 20.0
ERROR_PAUSE_S = 1.0
# A run that failed with IdempotencyInProgress did not fail: another run holds the key (a
# concurrent duplicate, or a run killed at its timeout whose claim ends shortly after).
# Its retries wait at least this long and do not use up `max_receive`: up to this many
# receives more are allowed before it is dead-lettered.
IN_PROGRESS = "IdempotencyInProgress"
IN_PROGRESS_MIN_DELAY_S = 1.0
IN_PROGRESS_EXTRA_RECEIVES = 10
# How many receives of a message ended in IdempotencyInProgress travels with it, as a
# note on the last error its nack records (the broker keeps no other per-message field),
# so a later ordinary failure does not count them against `max_receive`.
_IN_PROGRESS_NOTE = re.compile(r" \[in-progress receives: ([0-9]{1,6})\]$")


def in_progress_receives(last_error: str | None) -> int:
    m = _IN_PROGRESS_NOTE.search(last_error or "")
    return int(m.group(1)) if m else 0


def retry_plan(trigger: QueueTrigger, receive_count: int, error_type: str | None,
               rand: float, *, in_progress: int = 0) -> float | None:
    """The delay before the next attempt, or None when the message has had its attempts.
    `in_progress`: how many of its `receive_count` receives ended in
    IdempotencyInProgress (they do not use up `max_receive`)."""
    if error_type == RECURSIVE_LOOP:  # retrying a stopped loop would only loop again
        return None
    if error_type == IN_PROGRESS:
        if receive_count >= trigger.max_receive + IN_PROGRESS_EXTRA_RECEIVES:
            return None
        return max(trigger.retry.delay(receive_count, rand), IN_PROGRESS_MIN_DELAY_S)
    if receive_count - in_progress >= trigger.max_receive:
        return None
    return trigger.retry.delay(receive_count, rand)


def plan_retry(trigger: QueueTrigger, d: Delivery, error_type: str | None, error: str,
               rand: float) -> tuple[float | None, str]:
    """For a failed delivery: (the delay before its next attempt or None to give up, the
    error to record with its nack, carrying the count of IdempotencyInProgress waits)."""
    waits = in_progress_receives(d.last_error) + (error_type == IN_PROGRESS)
    delay = retry_plan(trigger, d.receive_count, error_type, rand, in_progress=waits)
    return delay, error + (f" [in-progress receives: {waits}]" if waits else "")

Invoke = Callable[..., Awaitable[InvocationResult]]


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    succeeded: int = 0
    retried: int = 0
    dead_lettered: int = 0


def batch_payload(queue: str, deliveries: list[Delivery]) -> str:
    return json.dumps({
        "queue": queue,
        "messages": [
            {"id": d.message_id, "body": d.body.decode("utf-8", errors="replace"),
             "attributes": d.attributes, "receive_count": d.receive_count,
             "sent_at": d.sent_at, "trace": d.trace, "receipt": d.receipt}
            for d in deliveries
        ],
    })


class QueueConsumer:
    def __init__(self, broker: QueueBroker, invoke: Invoke, cfg: FunctionConfig, *,
                 trigger: QueueTrigger | None = None,
                 clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random) -> None:
        trigger = trigger or cfg.queue
        assert trigger is not None
        self.broker = broker
        self.invoke = invoke
        self.cfg = cfg
        self.trigger = trigger
        self.clock = clock
        self.rand = rand
        self.visibility_s = self.trigger.visibility_for(cfg.timeout_s)
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[BatchOutcome]] = set()

    @property
    def queue(self) -> str:
        return self.trigger.queue

    # -- running ---------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        if self._inflight:  # let started batches settle (their invocations are running)
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _run(self) -> None:
        slots = asyncio.Semaphore(self.trigger.concurrency)
        while True:
            await slots.acquire()
            try:
                batch = await self.next_batch(LONG_POLL_S)
            except BrokerError as exc:
                slots.release()
                logs.event("queue receive failed", logging.ERROR, queue=self.queue,
                           error=str(exc))
                await asyncio.sleep(ERROR_PAUSE_S)
                continue
            except BaseException:
                slots.release()
                raise
            if not batch:
                slots.release()
                continue
            task = asyncio.ensure_future(self.process(batch))
            self._inflight.add(task)
            task.add_done_callback(lambda t: (self._inflight.discard(t), slots.release()))

    async def next_batch(self, wait_s: float, *, window: bool = True) -> list[Delivery]:
        t = self.trigger
        got = await self.broker.receive(self.queue, t.batch_size,
                                        visibility_timeout_s=self.visibility_s, wait_s=wait_s)
        if window and got and t.batch_window_s > 0 and len(got) < t.batch_size:
            deadline = time.monotonic() + t.batch_window_s
            while len(got) < t.batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                got += await self.broker.receive(
                    self.queue, t.batch_size - len(got),
                    visibility_timeout_s=self.visibility_s, wait_s=remaining)
        return got

    # -- one batch -------------------------------------------------------------------

    async def process(self, deliveries: list[Delivery]) -> BatchOutcome:
        t = self.trigger
        live: list[Delivery] = []
        dead = 0
        now = self.clock()
        for d in deliveries:
            if t.max_age_s is not None and now - d.sent_at > t.max_age_s:
                await self.broker.dead_letter(
                    self.queue, d.receipt, dlq=t.dead_letter_queue, reason="max_age",
                    error=f"older than max_age_s={t.max_age_s:g} s; not processed")
                dead += 1
            else:
                live.append(d)
        if not live:
            return BatchOutcome(dead_lettered=dead)
        try:
            result = await self.invoke(self.cfg.name, "event", batch_payload(self.queue, live),
                                       trace=live[0].trace)
        except Exception as exc:  # the runtime could not run it at all
            result = None
            error = f"{type(exc).__name__}: {exc}"
        if result is not None and result.ok:
            failed = set(json.loads(result.value)["failed"])
            error = "reported failed by the handler (partial batch failure)"
        else:
            failed = {d.message_id for d in live}
            if result is not None:
                error = f"{result.error_type}: {result.error_message}"
        ok = [d for d in live if d.message_id not in failed]
        if ok:
            await self.broker.ack(self.queue, [d.receipt for d in ok])
        retried = 0
        error_type = result.error_type if result is not None and not result.ok else None
        for d in live:
            if d.message_id not in failed:
                continue
            delay, noted = plan_retry(t, d, error_type, error, self.rand())
            if delay is None:
                await self.broker.dead_letter(
                    self.queue, d.receipt, dlq=t.dead_letter_queue, error=error,
                    reason="recursive_loop" if error_type == RECURSIVE_LOOP else "max_receive")
                dead += 1
                logs.event("message dead-lettered", logging.WARNING, queue=self.queue,
                           message_id=d.message_id, attempts=d.receive_count, error=error,
                           dlq=t.dead_letter_queue)
            else:
                await self.broker.nack(self.queue, d.receipt, delay_s=delay, error=noted)
                retried += 1
        return BatchOutcome(succeeded=len(ok), retried=retried, dead_lettered=dead)
