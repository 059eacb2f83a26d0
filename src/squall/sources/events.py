"""Event consumers: one message = one invocation, with retries, a maximum event age and
destinations. Behind `app.invoke_async` (Lambda's Event invocation type) and, later,
topic subscriptions, bus rule targets and schedules.

Each delivery runs the function with the message body as its event. Success goes to the
on-success destination; a failure is retried with backoff until the attempts run out (or
the event is too old), then the Lambda-style destination record goes to the on-failure
destination, or the message to the dead-letter queue when there is none.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from ..backends.broker import Delivery
from ..config import FunctionConfig, QueueTrigger
from ..events.lineage import RECURSIVE_LOOP
from ..observe import logs
from ..types import InvocationResult
from .queue import BatchOutcome, QueueConsumer, plan_retry

Deliver = Callable[[str, dict[str, Any]], Awaitable[None]]


def destination_record(cfg: FunctionConfig, d: Delivery, condition: str,
                       result: InvocationResult | None) -> dict[str, Any]:
    """The record Lambda sends to an asynchronous invocation's destination."""
    try:
        request_payload: Any = json.loads(d.body)
    except ValueError:
        request_payload = d.body.decode("utf-8", "replace")
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "requestContext": {
            "requestId": d.message_id,
            "functionArn": f"arn:aws:lambda:local:000000000000:function:{cfg.name}:$LATEST",
            "condition": condition,
            "approximateInvokeCount": d.receive_count,
        },
        "requestPayload": request_payload,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
    }
    if result is not None and result.ok:
        record["responsePayload"] = result.output
    elif result is not None:
        record["responseContext"]["functionError"] = "Unhandled"
        record["responsePayload"] = {
            "errorMessage": result.error_message or "", "errorType": result.error_type or "",
            "stackTrace": result.stack_trace or [],
        }
    return record


class EventConsumer(QueueConsumer):
    def __init__(self, broker: Any, invoke: Any, cfg: FunctionConfig, trigger: QueueTrigger,
                 deliver: Deliver, **kw: Any) -> None:
        super().__init__(broker, invoke, cfg, trigger=trigger, **kw)
        self.deliver = deliver

    async def process(self, deliveries: list[Delivery]) -> BatchOutcome:
        ok = retried = dead = 0
        for d in deliveries:
            outcome = await self._one(d)
            ok += outcome == "ok"
            retried += outcome == "retry"
            dead += outcome == "dead"
        return BatchOutcome(ok, retried, dead)

    async def _one(self, d: Delivery) -> str:
        t = self.trigger
        if t.max_age_s is not None and self.clock() - d.sent_at > t.max_age_s:
            return await self._give_up(d, "EventAgeExceeded", None,
                                       f"older than max_event_age_s={t.max_age_s:g} s")
        try:
            result = await self.invoke(self.cfg.name, "event", d.body.decode("utf-8"),
                                       trace=d.trace)
        except Exception as exc:  # could not run at all (e.g. an unknown function)
            return await self._give_up(d, "RetriesExhausted", None,
                                       f"{type(exc).__name__}: {exc}")
        if result.ok:
            if self.cfg.on_success:
                await self._send(self.cfg.on_success, destination_record(self.cfg, d, "Success",
                                                                         result))
            await self.broker.ack(self.queue, [d.receipt])
            return "ok"
        error = f"{result.error_type}: {result.error_message}"
        delay, noted = plan_retry(t, d, result.error_type, error, self.rand())
        if delay is not None:
            await self.broker.nack(self.queue, d.receipt, delay_s=delay, error=noted)
            return "retry"
        return await self._give_up(d, "RecursiveLoopDetected" if result.error_type ==
                                   RECURSIVE_LOOP else "RetriesExhausted", result, error)

    async def _give_up(self, d: Delivery, condition: str, result: InvocationResult | None,
                       error: str) -> str:
        if self.cfg.on_failure:
            await self._send(self.cfg.on_failure,
                             destination_record(self.cfg, d, condition, result))
            await self.broker.ack(self.queue, [d.receipt])
        else:
            await self.broker.dead_letter(self.queue, d.receipt, dlq=self.trigger.dead_letter_queue,
                                          reason=condition, error=error)
        logs.event("async invocation failed", logging.WARNING, function=self.cfg.name,
                   request_id=d.message_id, condition=condition, attempts=d.receive_count,
                   error=error, destination=self.cfg.on_failure or self.trigger.dead_letter_queue)
        return "dead"

    async def _send(self, destination: str, record: dict[str, Any]) -> None:
        try:
            await self.deliver(destination, record)
        except Exception as exc:  # the destination is part of the contract: say so loudly
            logs.event("destination delivery failed", logging.ERROR, function=self.cfg.name,
                       destination=destination, error=f"{type(exc).__name__}: {exc}")
            raise
