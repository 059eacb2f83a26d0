"""The vocabulary of an execution: what a Task asks for (`TaskRequest`), who runs it
(`TaskRunner`), the injected outside world (`Env`) and the execution's whole state
(`Execution`, plain data). Imports nothing else of the engine."""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .errors import ExecutionFailed

ARN_PREFIX = "arn:aws:states:local:000000000000"


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """What a Task state asks the runner to do."""

    resource: str
    parameters: Any
    state: str
    timeout_s: float | None
    heartbeat_s: float | None
    context: dict[str, Any]


class TaskRunner(Protocol):
    def run(self, request: TaskRequest) -> Any:
        """Run the resource; return its result or raise StatesError(error, cause)."""
        ...


class Env:
    """The injected outside world of an execution."""

    def __init__(self, runner: TaskRunner | None = None, *,
                 now: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None, max_workers: int = 1,
                 max_payload_bytes: int = 256 * 1024,
                 checkpoint: Callable[[Execution], None] | None = None,
                 park_after_s: float | None = None, wait_end: float | None = None,
                 on_branch: Callable[[str, int, Execution], None] | None = None,
                 branches: dict[str, dict[int, dict[str, Any]]] | None = None,
                 on_merge: Callable[[str, int, int, int, int], None] | None = None,
                 on_branch_retry: Callable[[str, int, Execution], None] | None = None,
                 branch_retries: dict[str, dict[int, dict[str, Any]]] | None = None
                 ) -> None:
        self.runner = runner
        self.now = now
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.max_workers = max_workers  # >1: Map/Parallel branches run on threads
        self.max_payload_bytes = max_payload_bytes
        # a durable runner: called with the execution after each failed attempt of a
        # state with Retry (before its back-off), and a back-off longer than
        # park_after_s raises Parked instead of sleeping
        self.checkpoint = checkpoint
        self.park_after_s = park_after_s
        self.wait_end = wait_end  # a Wait begun before (a durable timer): when it ends
        # a durable runner: called (from the branch's thread) with each finished branch of
        # a top-level Parallel or Map (state name, index, the branch's execution); and the
        # branches recorded before a restart, {state: {index: record}} (`branch_record`),
        # which the state's next run takes as done instead of running them again
        self.on_branch = on_branch
        self.branches = branches if branches is not None else {}
        # a durable runner: the events of such a branch were appended to the execution's
        # history (state name, index, position in the history, the id they follow, count)
        self.on_merge = on_merge
        # a durable runner: called (from the branch's thread) after each failed attempt of
        # a state with Retry directly inside such a branch, before its back-off (state
        # name, index, the branch's execution, at the state it retries, with its `retry`);
        # and the positions so recorded before a restart, {state: {index: progress}}
        # (`branch_progress`, its `events` all the branch's events so far), from which
        # the state's next run resumes those branches instead of starting them again
        self.on_branch_retry = on_branch_retry
        self.branch_retries = branch_retries if branch_retries is not None else {}


@dataclass
class Execution:
    """One execution's whole state: plain data, safe to persist and resume."""

    id: str
    name: str
    machine: str
    input: Any
    start_time: float
    status: str = "RUNNING"  # RUNNING | SUCCEEDED | FAILED | TIMED_OUT
    current: str | None = None
    state_input: Any = None
    output: Any = None
    error: str | None = None
    cause: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    map_item: dict[str, Any] | None = None  # $$.Map.Item inside a Map iteration
    # the current state's retries so far, while it has any: {"state", "counts" (per
    # retrier), "attempt", "entered", "entered_id", "fire_at" (the back-off's end)}
    retry: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: copy.deepcopy(getattr(self, k)) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Execution:
        return cls(**copy.deepcopy(data))

    def result(self) -> Any:
        """The output, or raise ExecutionFailed with the ASL error and cause."""
        if self.status == "SUCCEEDED":
            return self.output
        raise ExecutionFailed(self.error or "States.Runtime", self.cause, self.history)


def branch_record(index: int, child: Execution) -> dict[str, Any]:
    """A finished branch (Parallel) or iteration (Map) as plain data: what a durable
    runner keeps so a restart inside the state does not run it again."""
    return {"index": index, "status": child.status, "output": child.output,
            "error": child.error, "cause": child.cause, "events": child.history}


def branch_progress(index: int, child: Execution, new_events: list[dict[str, Any]]
                    ) -> dict[str, Any]:
    """An unfinished branch (Parallel) or iteration (Map) between two attempts of one of
    its states, as plain data: where it is (`current`, `state_input`, `variables`), its
    retry counts (`retry`) and its history events since its last such record. A durable
    runner keeps one per failed attempt; a restart resumes the branch from the last one
    (its `events` then: all of them, concatenated) with the retry counts it had."""
    return {"index": index, "current": child.current, "state_input": child.state_input,
            "variables": child.variables, "retry": child.retry, "new_events": new_events}


class Fail(Exception):
    """The execution fails now (a Fail state, or an unhandled error)."""

    def __init__(self, error: str | None, cause: str | None) -> None:
        self.error, self.cause = error, cause


class TimedOut(Exception):
    """The machine's TimeoutSeconds passed (ExecutionTimedOut)."""


class Parked(Exception):
    """A Retry back-off longer than `Env.park_after_s`: the execution was checkpointed
    with its retry counts; resume it (call `step` again) at `fire_at`."""

    def __init__(self, fire_at: float) -> None:
        super().__init__(f"parked until {fire_at}")
        self.fire_at = fire_at
