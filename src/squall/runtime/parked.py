"""Parked invocations: an invocation whose work goes on after its worker is done.

A state machine that reaches a long Wait (or a long Retry back-off) checkpoints its
execution, arms a durable timer in the supervisor and ENDS its invocation, answering
`{PARKED: execution id}` instead of an output, so no worker is held while it waits. The
invoker (Runtime, the test harness) then asks the supervisor's "parked" service for the
execution's outcome and hands that to the caller as the invocation's result, so
`app.invoke(state_machine, …)` still returns the final output (StartSyncExecution).
The service is awaited on the supervisor's loop: waiting costs a future, not a process.

An invocation that resumes a parked execution (the timer fired) answers with
`"resumed": true`; nobody waits on it: its first caller already does.

An asynchronous delivery does not wait either: it invokes with `follow=False`, gets the
parked answer itself, hands the execution its destinations and is done
(squall.sources.events, squall.workflows.handoff).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ..types import InvocationResult
from . import protocol as P

PARKED = "__squall_parked__"
SERVICE = "parked"  # async (payload {PARKED: id}) -> {"output"} or {"errorType", …}


def parked(value: Any) -> dict[str, Any] | None:
    """A parked answer (the handler's result, as a value or as the JSON text workers
    answer with), or None for an ordinary output."""
    if isinstance(value, str) and value.startswith('{"' + PARKED):
        value = json.loads(value)
    if isinstance(value, dict) and isinstance(value.get(PARKED), str):
        return value
    return None


async def follow(services: dict[str, Any], result: InvocationResult) -> InvocationResult:
    """`result`, or for a parked answer the outcome of the work it parked."""
    answer = parked(result.value) if result.ok else None
    if answer is None or answer.get("resumed"):
        return result
    service = services.get(SERVICE)
    if service is None:  # a runtime without orchestration cannot park: a bug if seen
        return dataclasses.replace(
            result, ok=False, status=P.ERROR, value=None, error_type="Runtime.Parked",
            error_message=f"{result.function} parked execution {answer[PARKED]!r} "
                          "but this runtime has no orchestration to resume it")
    outcome = await service(answer)
    if "errorType" in outcome:
        return dataclasses.replace(result, ok=False, status=P.ERROR, value=None,
                                   error_type=outcome["errorType"],
                                   error_message=outcome.get("errorMessage") or "")
    out = outcome.get("output")
    return dataclasses.replace(result, value=json.dumps(out) if isinstance(result.value, str)
                               else out)
