"""Amazon States Language (Step Functions) for Squall: `app.state_machine(name, definition)`.

Layout: `execution` (the plain-data vocabulary: Execution, Env, TaskRequest), `engine`
(the state-transition interpreter, one state per `step`), `fanout` (Parallel and Map),
`paths` (JSONPath), `intrinsics` (States.* functions), `choice` (Choice rules), `validate`
(static checks at declaration), `history` (AWS history events), `runner` (Task resources →
Squall functions, or callables). See docs/asl.md.
"""

from .engine import StateMachine
from .execution import Env, Execution, TaskRequest, TaskRunner
from .errors import DefinitionError, ExecutionFailed, StatesError
from .validate import validate

__all__ = ["Env", "Execution", "StateMachine", "TaskRequest", "TaskRunner",
           "DefinitionError", "ExecutionFailed", "StatesError", "validate"]
