"""Recursive loop detection: how many times each function has run in one event chain.

Lambda stops a chain of events (queue -> function -> queue -> the same function ...) once
it has passed through the same function more than 16 times. Squall does the same with a
lineage carried beside the W3C `traceparent` of every event, invocation and message:

    00-<trace id>-<span id>-01;loop=charge:3,notify:1

`step(trace, function)` is called for every invocation (squall.runtime.runtime, the test
harness): it adds one to the function's count and raises `RecursiveLoop` past the limit.
`child_traceparent` (squall.events.trace) keeps the lineage on every child span, so it
follows the event through workers, queues, topics, the bus and async invocations; stream
records, table change records and object events store it beside the record (the state
service takes the writing invocation's trace: squall.sources.state). A fan-out (one event
causing many) is not a loop: each branch carries its own count.
Pure and standard-library only.
"""

from __future__ import annotations

import re

MAX_HOPS = 16
RECURSIVE_LOOP = "Squall.RecursiveLoopDetected"  # the error type of a stopped invocation
_ENTRY = re.compile(r"^[A-Za-z0-9_.-]{1,64}:[0-9]{1,4}$")
MAX_ENTRIES = 64  # a lineage never grows past this many functions (oldest dropped)


class RecursiveLoop(Exception):
    def __init__(self, function: str, count: int, limit: int) -> None:
        super().__init__(f"function {function!r} was invoked {count} times in one event chain "
                         f"(more than {limit}): a recursive loop; the event was stopped and "
                         "dead-lettered. Break the cycle (e.g. do not send to the queue or "
                         "topic that triggers this function)")
        self.function = function
        self.count = count
        self.limit = limit


def split(trace: str | None) -> tuple[str | None, dict[str, int]]:
    """(the plain traceparent, the lineage counts); malformed lineage entries are dropped."""
    if trace is None or ";" not in trace:
        return trace, {}
    head, _, rest = trace.partition(";")
    counts: dict[str, int] = {}
    for part in rest.split(";"):
        key, _, value = part.partition("=")
        if key.strip() != "loop":
            continue
        for entry in value.split(","):
            if _ENTRY.fullmatch(entry):
                name, _, n = entry.rpartition(":")
                counts[name] = int(n)
    return head, counts


def join(traceparent: str | None, counts: dict[str, int]) -> str | None:
    if traceparent is None or not counts:
        return traceparent
    items = list(counts.items())[-MAX_ENTRIES:]
    return f"{traceparent};loop=" + ",".join(f"{k}:{v}" for k, v in items)


def suffix(trace: str | None) -> str:
    """The lineage part of `trace` ("" if none), to carry over to a child span."""
    if trace is None:
        return ""
    i = trace.find(";")
    return "" if i < 0 else trace[i:]


def step(trace: str | None, function: str, limit: int = MAX_HOPS) -> str | None:
    """`trace` with one more pass through `function`; RecursiveLoop past `limit`. A trace
    without lineage (a new request) starts counting at 1; no trace is left alone."""
    if trace is None:
        return None
    head, counts = split(trace)
    n = counts.pop(function, 0) + 1
    if n > limit:
        raise RecursiveLoop(function, n, limit)
    counts[function] = n
    return join(head, counts)


def strip(trace: str | None) -> str | None:
    """A traceparent from outside (an HTTP header) without any lineage: clients do not get
    to set (or reset) the loop counts."""
    if trace is None or ";" not in trace:
        return trace
    return trace.partition(";")[0]
