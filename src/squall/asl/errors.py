"""The errors of Amazon States Language: a failure carries an `Error` name and a `Cause`,
exactly as Step Functions reports them (States.Runtime, States.TaskFailed, …)."""

from __future__ import annotations

from typing import Any

ALL = "States.ALL"
RUNTIME = "States.Runtime"
TIMEOUT = "States.Timeout"
TASK_FAILED = "States.TaskFailed"
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
NO_CHOICE_MATCHED = "States.NoChoiceMatched"
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"
BRANCH_FAILED = "States.BranchFailed"
TOLERATED_FAILURE = "States.ExceedToleratedFailureThreshold"
PERMISSIONS = "States.Permissions"
RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
PARAMETER_PATH_FAILURE = "States.ParameterPathFailure"

# Retry/Catch on States.ALL never catch these (AWS: "terminal" errors)
UNCATCHABLE = frozenset({RUNTIME, DATA_LIMIT_EXCEEDED})


class StatesError(Exception):
    """A failure inside an execution: what a Catch sees as {"Error", "Cause"}."""

    def __init__(self, error: str, cause: str | None = None) -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause

    def as_output(self) -> dict[str, Any]:
        """What a Catch puts at its ResultPath; AWS always has both keys (null if unset)."""
        return {"Error": self.error, "Cause": self.cause}


class DefinitionError(ValueError):
    """A state machine definition is invalid; `problems` lists each, naming state and field."""

    def __init__(self, problems: list[str], name: str | None = None) -> None:
        self.problems = problems
        head = f"state machine {name!r}: " if name else ""
        super().__init__(head + "invalid definition: " + "; ".join(problems))


class ExecutionFailed(RuntimeError):
    """`run` finished with a failure (ExecutionFailed / ExecutionTimedOut)."""

    def __init__(self, error: str, cause: str | None, history: list[dict[str, Any]] | None = None
                 ) -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause
        self.history = history or []
