"""Event consumers: one message = one invocation, with retries, a maximum event age and
destinations. Behind `app.invoke_async` (Lambda's Event invocation type) and, later,
topic subscriptions, bus rule targets and schedules.

Each delivery runs the function with the message body as its event. Success goes to the
on-success destination; a failure is retried with backoff until the attempts run out (or
the event is too old), then the Lambda-style destination record goes to the on-failure
destination, or the message to the dead-letter queue when there is none.

A workflow or state machine is a durable execution, not a run to wait for
(squall.workflows.handoff): a delivery to a workflow starts its execution (the message
id is the execution id, so a redelivery finds it) and is acknowledged; one to a state
machine is acknowledged once its invocation answers "parked" (the execution waits on a
durable timer). Either way the execution is handed the destinations (`handoff`), and
they get the final outcome when it ends. A state machine that ends within its
invocation is settled here as any function. Every delivery runs with the message id as
its request id (as Lambda keeps one request id across an async invocation's retries),
so a redelivered state machine attaches to its execution instead of starting another.
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
from ..runtime.parked import PARKED, parked
from ..types import InvocationResult
from .queue import BatchOutcome, QueueConsumer, plan_retry

Deliver = Callable[[str, dict[str, Any]], Awaitable[None]]


def lambda_record(function: str, request_id: str, body: bytes, invoke_count: int,
                  condition: str, response: dict[str, Any] | None) -> dict[str, Any]:
    """The record Lambda sends to an asynchronous invocation's destination. `response`:
    {"output": …} or {"errorType", "errorMessage", "stackTrace"}, None if it never ran."""
    try:
        request_payload: Any = json.loads(body)
    except ValueError:
        request_payload = body.decode("utf-8", "replace")
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "requestContext": {
            "requestId": request_id,
            "functionArn": f"arn:aws:lambda:local:000000000000:function:{function}:$LATEST",
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "requestPayload": request_payload,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
    }
    if response is not None and "errorType" not in response:
        record["responsePayload"] = response.get("output")
    elif response is not None:
        record["responseContext"]["functionError"] = "Unhandled"
        record["responsePayload"] = {
            "errorMessage": response.get("errorMessage") or "",
            "errorType": response.get("errorType") or "",
            "stackTrace": response.get("stackTrace") or [],
        }
    return record


def destination_record(cfg: FunctionConfig, d: Delivery, condition: str,
                       result: InvocationResult | None) -> dict[str, Any]:
    """The destination record of a delivery that ran (or could not run: `result` None)."""
    response: dict[str, Any] | None = None
    if result is not None and result.ok:
        response = {"output": result.output}
    elif result is not None:
        response = {"errorType": result.error_type or "", "stackTrace": result.stack_trace,
                    "errorMessage": result.error_message or ""}
    return lambda_record(cfg.name, d.message_id, d.body, d.receive_count, condition, response)


def handoff(cfg: FunctionConfig, request_id: str, body: bytes,
            invoke_count: int) -> dict[str, Any] | None:
    """What an execution owes the async invocation that started it: its destinations
    and what their record says of the request (squall.workflows.handoff); None when
    the function has no destination."""
    if not (cfg.on_success or cfg.on_failure):
        return None
    return {"function": cfg.name, "on_success": cfg.on_success, "on_failure": cfg.on_failure,
            "request_id": request_id, "payload": body.decode("utf-8", "replace"),
            "invoke_count": invoke_count}


def handoff_record(data: dict[str, Any], outcome: dict[str, Any]) -> tuple[str | None,
                                                                           dict[str, Any]]:
    """(the destination, its record) for a handed-over execution's final outcome."""
    ok = "errorType" not in outcome
    record = lambda_record(data["function"], data["request_id"], data["payload"].encode(),
                           data.get("invoke_count") or 1,
                           "Success" if ok else "RetriesExhausted", outcome)
    return (data.get("on_success") if ok else data.get("on_failure")), record


class EventConsumer(QueueConsumer):
    def __init__(self, broker: Any, invoke: Any, cfg: FunctionConfig, trigger: QueueTrigger,
                 deliver: Deliver, durable: Callable[[], Any] = lambda: None,
                 **kw: Any) -> None:
        super().__init__(broker, invoke, cfg, trigger=trigger, **kw)
        self.deliver = deliver
        # the app's orchestration (squall.workflows.wiring.Orchestration), if attached
        self.durable = durable

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
        durable = self.durable()
        owed = handoff(self.cfg, d.message_id, d.body, d.receive_count)
        if durable is not None:
            try:  # a workflow: done once its execution is durably started
                started = await durable.start_async(self.cfg.name, d.body.decode("utf-8"),
                                                    d.message_id, d.trace, owed)
            except Exception as exc:  # the store failed: try again later
                return await self._retry_or_give_up(d, None, type(exc).__name__,
                                                    f"{type(exc).__name__}: {exc}")
            if started is not None:
                await self.broker.ack(self.queue, [d.receipt])
                return "ok"
        try:
            result = await self.invoke(self.cfg.name, "event", d.body.decode("utf-8"),
                                       trace=d.trace, request_id=d.message_id,
                                       **({"follow": False} if durable is not None else {}))
        except Exception as exc:  # could not run at all (e.g. an unknown function)
            return await self._give_up(d, "RetriesExhausted", None,
                                       f"{type(exc).__name__}: {exc}")
        answer = parked(result.value) if durable is not None and result.ok else None
        if answer is not None:  # a state machine parked: its execution owes the rest
            try:
                if owed is not None:
                    await durable.hand_off(answer[PARKED], owed)
            except Exception as exc:
                return await self._retry_or_give_up(d, None, type(exc).__name__,
                                                    f"{type(exc).__name__}: {exc}")
            await self.broker.ack(self.queue, [d.receipt])
            return "ok"
        if result.ok:
            if self.cfg.on_success:
                await self._send(self.cfg.on_success, destination_record(self.cfg, d, "Success",
                                                                         result))
            await self.broker.ack(self.queue, [d.receipt])
            return "ok"
        return await self._retry_or_give_up(d, result, result.error_type,
                                            f"{result.error_type}: {result.error_message}")

    async def _retry_or_give_up(self, d: Delivery, result: InvocationResult | None,
                                error_type: str | None, error: str) -> str:
        delay, noted = plan_retry(self.trigger, d, error_type, error, self.rand())
        if delay is not None:
            await self.broker.nack(self.queue, d.receipt, delay_s=delay, error=noted)
            return "retry"
        return await self._give_up(d, "RecursiveLoopDetected" if error_type ==
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
