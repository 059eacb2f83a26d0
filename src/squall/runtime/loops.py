"""Stop recursive loops at the invoker (squall.events.lineage): an invocation that would
be the 17th pass of one event chain through a function does not run; it fails with
`Squall.RecursiveLoopDetected`, which the queue, event, stream, table-change and object
event consumers never retry (the event goes straight to the dead-letter queue or
on-failure destination), and it is logged."""

from __future__ import annotations

import logging
import time

from ..events.lineage import RECURSIVE_LOOP, RecursiveLoop, step
from ..observe import logs
from ..types import InvocationResult


def check(function: str, trace: str | None,
          request_id: str) -> tuple[str | None, InvocationResult | None]:
    """(the trace with this pass counted, None) or (trace, the failed result)."""
    try:
        return step(trace, function), None
    except RecursiveLoop as exc:
        logs.event("recursive loop detected; invocation stopped", logging.WARNING,
                   function=function, request_id=request_id, count=exc.count,
                   limit=exc.limit, trace=trace.partition(";")[0] if trace else None)
        return trace, InvocationResult(
            request_id=request_id, function=function, ok=False, status="error",
            error_type=RECURSIVE_LOOP, error_message=str(exc), started_at=time.time(),
            trace=trace)
