"""Execution history: the events Step Functions' GetExecutionHistory returns, with AWS's
type names and detail keys (`ExecutionStarted` + `executionStartedEventDetails`, …).

Inputs and outputs are kept as JSON text, as AWS does, so a history is plain data that a
durable store can append and a resume can replay. Events are appended to a list; the
durable-workflow store persists the same dicts (see docs/asl.md, "Durability").
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

# the detail key of each event type (AWS: lowerCamel type + "EventDetails")
_DETAIL = {
    "ExecutionStarted": "executionStartedEventDetails",
    "ExecutionSucceeded": "executionSucceededEventDetails",
    "ExecutionFailed": "executionFailedEventDetails",
    "ExecutionTimedOut": "executionTimedOutEventDetails",
    "ExecutionAborted": "executionAbortedEventDetails",
    "TaskScheduled": "taskScheduledEventDetails",
    "TaskStarted": "taskStartedEventDetails",
    "TaskSucceeded": "taskSucceededEventDetails",
    "TaskFailed": "taskFailedEventDetails",
    "TaskTimedOut": "taskTimedOutEventDetails",
    "LambdaFunctionScheduled": "lambdaFunctionScheduledEventDetails",
    "LambdaFunctionStarted": None,
    "LambdaFunctionSucceeded": "lambdaFunctionSucceededEventDetails",
    "LambdaFunctionFailed": "lambdaFunctionFailedEventDetails",
    "LambdaFunctionTimedOut": "lambdaFunctionTimedOutEventDetails",
    "MapStateStarted": "mapStateStartedEventDetails",
    "MapIterationStarted": "mapIterationStartedEventDetails",
    "MapIterationSucceeded": "mapIterationSucceededEventDetails",
    "MapIterationFailed": "mapIterationFailedEventDetails",
    "MapIterationAborted": "mapIterationAbortedEventDetails",
    "MapStateSucceeded": None,
    "MapStateFailed": None,
    "ParallelStateStarted": None,
    "ParallelStateSucceeded": None,
    "ParallelStateFailed": None,
}

STATE_TYPES = ("Task", "Pass", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class History:
    """An append-only list of history events; ids count from 1 as in AWS."""

    def __init__(self, events: list[dict[str, Any]] | None = None) -> None:
        self.events: list[dict[str, Any]] = events if events is not None else []

    @property
    def last_id(self) -> int:
        return self.events[-1]["id"] if self.events else 0

    def add(self, type_: str, ts: float, details: dict[str, Any] | None = None,
            previous: int | None = None) -> int:
        event: dict[str, Any] = {
            "id": self.last_id + 1,
            "previousEventId": self.last_id if previous is None else previous,
            "timestamp": iso(ts),
            "type": type_,
        }
        if details is not None:
            key = _DETAIL.get(type_)
            if key is None and type_.endswith("StateEntered"):
                key = "stateEnteredEventDetails"
            elif key is None and type_.endswith("StateExited"):
                key = "stateExitedEventDetails"
            if key is not None:
                event[key] = details
        self.events.append(event)
        return event["id"]

    def extend(self, other: list[dict[str, Any]]) -> None:
        """Append a child's events (a Map iteration, a Parallel branch), renumbered."""
        self.events.extend(renumbered(other, self.last_id))


def renumbered(events: list[dict[str, Any]], offset: int) -> list[dict[str, Any]]:
    """A child's events (its ids from 1) as they read in the parent's history after the
    event with id `offset`: what `History.extend` appends, and what a durable store that
    keeps a branch's events once (squall.workflows.machines) rebuilds."""
    out = []
    for e in events:
        e = dict(e)
        e["id"] = e["id"] + offset
        e["previousEventId"] = e["previousEventId"] + offset if e["previousEventId"] \
            else offset
        out.append(e)
    return out
