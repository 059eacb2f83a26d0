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
from .context import MARKER, current, replay
from .retry import StepRetry

ARGS = "__squall_step_args__"  # a step's input when it is not one positional argument


def pack(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A call's arguments as a step's input: one positional argument as itself (so the
    history reads naturally and `wf.step(name, x)` is the same step), else a marker."""
    if len(args) == 1 and not kwargs:
        return args[0]
    return {ARGS: list(args), "kwargs": kwargs}


def unpack(event: Any) -> tuple[list[Any], dict[str, Any]]:
    if isinstance(event, dict) and ARGS in event:
        return list(event[ARGS]), dict(event.get("kwargs") or {})
    return [event], {}


class StepFunction:
    """What `@app.step` returns. Called inside a workflow it is a durable step (its result
    recorded, its retry policy and compensation applied); called anywhere else it is the
    plain function. `async def` steps return an awaitable Pending inside a workflow."""

    def __init__(self, fn: Callable[..., Any], name: str, retry: StepRetry | None,
                 compensate: Any) -> None:
        self.fn, self.name, self.retry, self.compensate = fn, name, retry, compensate
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__wrapped__ = fn
        self.__name__ = name
        self.__doc__ = fn.__doc__

    def call(self, *args: Any, **kwargs: Any) -> Any:
        """Start the step inside a workflow without waiting: a Pending (for `wf.all`)."""
        wf = current.get()
        if wf is None:
            raise RuntimeError(f"step {self.name!r}: .call() starts a step of a running "
                               "workflow; outside one call the function itself")
        return wf.call(self.name, pack(args, kwargs))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if current.get() is None:
            return self.fn(*args, **kwargs)
        pending = self.call(*args, **kwargs)
        return pending if self.is_async else pending.result()

    def spec(self) -> dict[str, Any]:
        return {"retry": self.retry.to_dict() if self.retry else None,
                "compensate": self.compensate}


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
                    return replay(f, event[MARKER], app.workflow_steps)
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

    @property
    def workflow_steps(self) -> dict[str, dict[str, Any]]:
        """name -> {"retry", "compensate"} of every `@app.step`."""
        return self.__dict__.setdefault("_workflow_step_specs", {})

    def step(self, fn: Callable[..., Any] | None = None, *, name: str | None = None,
             retry: Any = None, compensate: Any = None, **settings: Any) -> Any:
        """Declare a plain function as a workflow step (as DBOS's `@DBOS.step` and
        Temporal's activities): it is registered as a function (`settings` are function
        settings); calling it inside a workflow runs it as a durable step with this
        `retry` policy (Step Functions shape) and saga `compensate` (a step or function
        name, a StepFunction, or (that, input); by default it gets the step's input)."""

        def register(f: Callable[..., Any]) -> StepFunction:
            sname = name or getattr(f, "__name__", None)
            if not sname or sname == "<lambda>":
                raise ConfigError("app.step: give a lambda a name= ")
            policy = StepRetry.of(retry) if retry is not None else None
            comp = compensate
            if isinstance(comp, tuple):
                target = comp[0].name if isinstance(comp[0], StepFunction) else comp[0]
                comp = [target, comp[1]]
            elif isinstance(comp, StepFunction):
                comp = comp.name
            if comp is not None and not isinstance(comp, (str, list)):
                raise ConfigError(f"step {sname!r}: compensate must be a function name, a "
                                  f"step, or (one of those, input); got {compensate!r}")
            if inspect.iscoroutinefunction(f):
                async def handler(event: Any) -> Any:
                    a, k = unpack(event)
                    return await f(*a, **k)
            else:
                def handler(event: Any) -> Any:  # type: ignore[misc]
                    a, k = unpack(event)
                    return f(*a, **k)
            handler.__name__ = sname
            handler.__doc__ = f.__doc__
            self.function(name=sname, **settings)(handler)
            step = StepFunction(f, sname, policy, comp)
            self.workflow_steps[sname] = step.spec()
            return step

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
