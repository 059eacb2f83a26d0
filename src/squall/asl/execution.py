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
                 max_payload_bytes: int = 256 * 1024) -> None:
        self.runner = runner
        self.now = now
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.max_workers = max_workers  # >1: Map/Parallel branches run on threads
        self.max_payload_bytes = max_payload_bytes


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


class Fail(Exception):
    """The execution fails now (a Fail state, or an unhandled error)."""

    def __init__(self, error: str | None, cause: str | None) -> None:
        self.error, self.cause = error, cause


class TimedOut(Exception):
    """The machine's TimeoutSeconds passed (ExecutionTimedOut)."""
