"""`@app.workflow`: a mixin of App. Decorators only record.

A workflow is registered as an ordinary function (same name, same settings, same
invocation path) whose handler does one of two things:
- called with a replay request from the engine: replay the user's workflow function
  against the history and answer with a decision (squall.workflows.context);
- called with anything else (`app.invoke`, `squall invoke`, an HTTP route, a test):
  ask the engine, through the "workflow" service, to run an execution to completion and
  return its output. The execution id is the invocation's request id, so a retried
  invocation attaches to the execution rather than starting a second one.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from ..config import ConfigError
from .context import replay
from .engine import MARKER
from .retry import StepRetry


class WorkflowError(RuntimeError):
    """A workflow run through `app.invoke` did not succeed."""


def call_service(app: Any, service: str, payload: list[Any]) -> Any:
    invoker = app._invoker
    if invoker is None or not hasattr(invoker, "call_service"):
        from ..app_calls import NotRunning

        raise NotRunning(f"app {app.name!r} is not running here: {service} calls work inside "
                         "a function, under squall.testing or `squall run`")
    return invoker.call_service(service, payload)


class DeclaresWorkflows:
    name: str
    functions: dict[str, Any]
    _invoker: Any

    @property
    def workflows(self) -> dict[str, dict[str, Any]]:
        """name -> {"retry": default step retry policy} for every declared workflow."""
        return self.__dict__.setdefault("_workflow_specs", {})

    def workflow(self, fn: Callable[..., Any] | None = None, *, name: str | None = None,
                 retry: Any = None, timeout_s: float = 900.0, **settings: Any) -> Any:
        """Declare a durable workflow: `fn(wf, input)` (def or async def). `retry` is the
        default retry policy of its steps (Step Functions shape; no retry by default);
        `timeout_s` bounds a synchronous `invoke` waiting for it."""

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            wname = name or getattr(f, "__name__", None) or "workflow"
            try:
                inspect.signature(f).bind(None, None)
            except TypeError:
                raise ConfigError(f"workflow {wname!r}: the function must take (wf, input)") \
                    from None
            policy = StepRetry.of(retry) if retry is not None else None
            app = self

            def handler(event: Any, ctx: Any) -> Any:
                if isinstance(event, dict) and MARKER in event:
                    return replay(f, event[MARKER])
                try:
                    return call_service(app, "workflow", ["run", wname, event,
                                                          getattr(ctx, "request_id", None)])
                except Exception as exc:
                    raise WorkflowError(str(exc)) from None

            handler.__name__ = wname
            handler.__doc__ = f.__doc__
            self.function(name=wname, timeout_s=timeout_s, **settings)(handler)
            self.workflows[wname] = {"retry": policy.to_dict() if policy else None}
            return f

        return register(fn) if fn is not None else register

    def workflow_manifest(self) -> list[dict[str, Any]]:
        return [{"name": n, **spec} for n, spec in self.workflows.items()]

    # -- calls from app code -----------------------------------------------------------

    def start_workflow(self, name: str, input: Any = None, *, id: str | None = None) -> str:
        """Start an execution of workflow `name`; its id (does not wait)."""
        return call_service(self, "workflow", ["start", name, input, id])

    def signal(self, execution_id: str, signal: str, data: Any = None) -> None:
        """Send signal `signal` with `data` to a running execution."""
        call_service(self, "workflow", ["signal", execution_id, signal, data])

    def cancel_workflow(self, execution_id: str) -> dict[str, Any]:
        return call_service(self, "workflow", ["cancel", execution_id])

    def describe_workflow(self, execution_id: str) -> dict[str, Any]:
        return call_service(self, "workflow", ["describe", execution_id])

    def workflow_history(self, execution_id: str) -> list[dict[str, Any]]:
        return call_service(self, "workflow", ["history", execution_id])
