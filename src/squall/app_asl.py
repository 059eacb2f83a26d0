"""State machines on `App`: `app.state_machine(name, definition)` runs Amazon States
Language (Step Functions JSON) unchanged. A mixin of `App`.

A state machine is registered as an invoke-only function whose handler is the ASL
interpreter, so everything that runs functions runs it unchanged: `app.invoke(name, input)`
(one execution to completion, like StartSyncExecution), `squall invoke APP NAME`, the
test client, `invoke_async`. Its Task states call the app's functions through
`app.invoke`, which in a worker is a CALL to the supervisor: each step runs in the step
function's own worker, under its own timeout and limits. The definition is validated here,
at declaration time (ConfigError naming the state and the field); nothing else happens
until an invocation.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from .config import TIMEOUT_MAX_S, ConfigError


class StateMachineHandler:
    """The function body of a state machine: run one execution of `machine`."""

    def __init__(self, app: Any, machine: Any, *, now: Callable[[], float] | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        self.app = app
        self.machine = machine
        self.now = now
        self.sleep = sleep
        self.__name__ = machine.name
        self.last: Any = None  # the last Execution run here (its history), for tests

    def __call__(self, event: Any, ctx: Any) -> Any:
        from .asl.engine import Env
        from .asl.runner import FunctionRunner
        from .runtime.adapters import HandlerFailure

        env = Env(FunctionRunner(self.app.invoke), now=self.now or time.time,
                  sleep=self.sleep or time.sleep)
        name = getattr(ctx, "request_id", None)
        ex = self.machine.run(event if event is not None else {}, env, name=name)
        self.last = ex
        if ex.status != "SUCCEEDED":
            raise HandlerFailure(ex.error or "States.Runtime", ex.cause or "", [])
        return ex.output


class DeclaresStateMachines:
    functions: dict[str, Any]
    _config: Any
    _add: Any

    def state_machine(self, name: str, definition: str | dict[str, Any], *,
                      now: Callable[[], float] | None = None,
                      sleep: Callable[[float], None] | None = None,
                      **settings: Any) -> Any:
        """Declare a Step Functions state machine (JSON text or a dict). Task resources
        name the app's functions ("fn", a Lambda ARN, or arn:aws:states:::lambda:invoke).
        `now`/`sleep` replace the clock and sleeper of Wait states and retry back-off
        (tests); other settings are function settings (timeout_s defaults to 900 s)."""
        from .asl.engine import StateMachine
        from .asl.errors import DefinitionError
        from .asl.runner import referenced_functions

        try:
            machine = StateMachine(name, definition)
        except DefinitionError as exc:
            raise ConfigError(str(exc)) from None
        if getattr(self, "strict", False) and "uses" not in settings:
            settings["uses"] = {f: "invoke" for f in referenced_functions(machine.definition)}
        settings.setdefault("timeout_s", TIMEOUT_MAX_S)
        settings.setdefault("description", f"state machine ({len(json.dumps(machine.definition))}"
                                           " bytes of ASL)")
        handler = StateMachineHandler(self, machine, now=now, sleep=sleep)
        self._add(name, self._config(name, "function", "native", settings, ()), handler)
        return handler
