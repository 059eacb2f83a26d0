"""Task runners: how a Task state's `Resource` runs.

- `FunctionRunner(invoke)`: Squall functions through `app.invoke` (in a worker that is a
  CALL to the supervisor; under squall.testing it runs in-process). Accepted resources:
  `"fn-name"`, `arn:aws:lambda:REGION:ACCOUNT:function:fn-name[:qualifier]` (the result
  is the function's output) and `arn:aws:states:::lambda:invoke` with
  `Parameters.FunctionName` and `Parameters.Payload` (the result is Lambda's Invoke
  response: `{"Payload": …, "StatusCode": 200, …}`).
- `InMemoryRunner({resource: callable})`: plain Python callables, for tests and for
  running a definition without an app.

A failing function becomes StatesError(errorType, cause) with AWS's cause shape (the
Lambda error JSON); a function timeout becomes States.Timeout.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from .execution import TaskRequest
from .errors import RUNTIME, TASK_FAILED, TIMEOUT, StatesError

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
_TIMEOUT_TYPES = {"Sandbox.Timedout", "States.Timeout"}


def function_name(resource: str, parameters: Any) -> tuple[str, bool]:
    """(function name, wrap the result as lambda:invoke does) for a Task resource."""
    if resource in (LAMBDA_INVOKE, LAMBDA_INVOKE + ".sync"):
        if not isinstance(parameters, dict) or not isinstance(
                parameters.get("FunctionName"), str):
            raise StatesError(RUNTIME, f"{resource} needs Parameters.FunctionName")
        return _strip_arn(parameters["FunctionName"]), True
    if resource.startswith("arn:"):
        if ":lambda:" in resource and ":function:" in resource:
            return _strip_arn(resource), False
        raise StatesError(RUNTIME, f"resource {resource!r} is not supported: use a "
                                   "function name, a Lambda function ARN or "
                                   f"{LAMBDA_INVOKE}")
    return resource, False


def _strip_arn(name: str) -> str:
    if name.startswith("arn:") and ":function:" in name:
        name = name.split(":function:", 1)[1]
    return name.split(":", 1)[0]  # drop a version or alias qualifier


def referenced_functions(definition: dict[str, Any]) -> set[str]:
    """Function names a definition's Task states name statically (for uses= and checks)."""
    out: set[str] = set()

    def walk(machine: dict[str, Any]) -> None:
        for state in machine.get("States", {}).values():
            t = state.get("Type")
            if t == "Task":
                try:
                    name, _ = function_name(state["Resource"], state.get("Parameters"))
                    out.add(name)
                except StatesError:
                    pass
            elif t == "Parallel":
                for b in state.get("Branches", []):
                    walk(b)
            elif t == "Map":
                proc = state.get("ItemProcessor", state.get("Iterator"))
                if isinstance(proc, dict):
                    walk(proc)
    walk(definition)
    return out


def _lambda_response(payload: Any) -> dict[str, Any]:
    return {"ExecutedVersion": "$LATEST", "Payload": payload,
            "SdkHttpMetadata": {"HttpStatusCode": 200}, "SdkResponseMetadata": {},
            "StatusCode": 200}


class FunctionRunner:
    """Task resources as Squall functions, called with `invoke(name, data)`."""

    def __init__(self, invoke: Callable[[str, Any], Any]) -> None:
        self.invoke = invoke

    def run(self, request: TaskRequest) -> Any:
        name, wrap = function_name(request.resource, request.parameters)
        payload = request.parameters
        if wrap:
            payload = request.parameters.get("Payload", {}) if isinstance(
                request.parameters, dict) else {}
        try:
            out = self.invoke(name, payload)
        except LookupError as exc:
            raise StatesError(TASK_FAILED, str(exc)) from None
        except Exception as exc:
            err = getattr(exc, "payload", None)
            if not isinstance(err, dict):
                raise StatesError(type(exc).__name__, str(exc)) from None
            etype = err.get("errorType") or "Exception"
            cause = json.dumps({k: err[k] for k in ("errorMessage", "errorType", "requestId",
                                                    "stackTrace") if k in err})
            if etype in _TIMEOUT_TYPES:
                raise StatesError(TIMEOUT, cause) from None
            if etype in ("UnknownFunction", "LookupError"):
                raise StatesError("Lambda.ResourceNotFoundException", cause) from None
            raise StatesError(etype, cause) from None
        return _lambda_response(out) if wrap else out


class InMemoryRunner:
    """Resources → Python callables `fn(parameters)`; an exception is a Task failure
    named after its class (or StatesError's error)."""

    def __init__(self, handlers: dict[str, Callable[[Any], Any]]) -> None:
        self.handlers = handlers
        self.calls: list[tuple[str, Any]] = []

    def run(self, request: TaskRequest) -> Any:
        name, wrap = function_name(request.resource, request.parameters)
        fn = self.handlers.get(request.resource) or self.handlers.get(name)
        if fn is None:
            raise StatesError(TASK_FAILED, f"no handler for resource {request.resource!r}")
        payload = request.parameters
        if wrap and request.resource not in self.handlers:
            payload = request.parameters.get("Payload", {})
        self.calls.append((name, payload))
        try:
            out = fn(payload)
        except StatesError:
            raise
        except Exception as exc:
            raise StatesError(type(exc).__name__, json.dumps(
                {"errorMessage": str(exc), "errorType": type(exc).__name__})) from None
        return _lambda_response(out) if wrap and request.resource not in self.handlers \
            else out
