"""The workflow context `wf` and deterministic replay. Pure: no I/O, no clock.

The orchestration function runs from the top every time it is asked to make progress,
with the execution's history. Each operation (`step`/`call`, `sleep`,
`wait_for_signal`, `child`) takes the next operation number; if the history holds its
outcome, the operation returns it at once, otherwise it becomes a command and, as soon as
the code needs a value it does not have, `Suspend` unwinds the function. The decision
(commands to run, or the output, or the failure with the compensations to run) goes back
to the engine, which runs the commands, records their outcomes and replays again.
"""

from __future__ import annotations

import contextvars
import random as _random
import uuid as _uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from .retry import StepRetry

# The key of the replay request the engine sends a workflow's function (defined here, not
# in engine.py, so that `@app.workflow` can recognise it without importing the engine).
MARKER = "__squall_workflow__"

# the workflow replaying in this thread (decorated step functions become steps in it)
current: contextvars.ContextVar[WorkflowContext | None] = contextvars.ContextVar(
    "squall_workflow", default=None)


class Suspend(BaseException):
    """The code needs an outcome the history does not have yet (not an Exception: a
    bare `except Exception` in user code must not swallow it)."""


class NonDeterminism(BaseException):
    """The code asked for another operation than the history recorded at its position."""


class StepFailed(Exception):
    """A step (or child workflow) failed after its retries; catch it to handle it."""

    def __init__(self, name: str, error: dict[str, Any]) -> None:
        super().__init__(f"{name} failed: {error.get('errorType')}: {error.get('errorMessage')}")
        self.step = name
        self.error_type = error.get("errorType")
        self.error = error


class SignalTimeout(Exception):
    """`wait_for_signal` timed out."""


@dataclass
class _Op:
    n: int
    kind: str  # step | timer | signal | child
    name: str
    command: dict[str, Any]


class Pending:
    """An operation's outcome, maybe not known yet. `result()` (or `await`) returns it or
    suspends the workflow until it is."""

    def __init__(self, wf: WorkflowContext, op: _Op) -> None:
        self._wf, self._op = wf, op

    @property
    def op(self) -> int:
        return self._op.n

    def done(self) -> bool:
        return self._op.n in self._wf._outcomes

    def result(self) -> Any:
        return self._wf._resolve([self])[0]

    def __await__(self) -> Any:
        return self.result()
        yield  # pragma: no cover - makes this a generator


class Results(list):
    """The outcomes of `wf.all`/`wf.map`: a list, also awaitable in async workflows."""

    def __await__(self) -> Any:
        return self
        yield  # pragma: no cover


class WorkflowContext:
    """What a workflow function receives as `wf`."""

    def __init__(self, execution_id: str, name: str, history: Sequence[dict[str, Any]],
                 *, default_retry: StepRetry | None = None,
                 steps: dict[str, dict[str, Any]] | None = None) -> None:
        self.execution_id = execution_id
        self.workflow_name = name
        self._default_retry = default_retry or StepRetry()
        self._steps = steps or {}  # name -> {"retry", "compensate"} of `@app.step`s
        self._n = 0
        self._rand_n = 0
        self._ops: dict[int, _Op] = {}
        self._outcomes: dict[int, dict[str, Any]] = {}  # op -> resolution event data
        self._started: dict[int, dict[str, Any]] = {}  # op -> Timer/Child/Wait started
        self._recorded: dict[int, tuple[str, str]] = {}  # op -> (kind, name) in history
        self._completed_steps: list[dict[str, Any]] = []
        self._ts: dict[int, float] = {}
        self.started_at = 0.0
        self.cancel_requested = False
        for e in history:
            t, d = e["type"], e.get("data") or {}
            if t == "WorkflowStarted":
                self.started_at = e.get("ts", 0.0)
                continue
            if t == "CancelRequested":
                self.cancel_requested = True
                continue
            op = d.get("op")
            if op is None:
                continue
            if t in ("StepCompleted", "StepFailed", "TimerFired", "SignalDelivered",
                     "SignalTimedOut", "ChildCompleted", "ChildFailed"):
                self._outcomes[op] = {"type": t, **d}
                self._ts[op] = e.get("ts", 0.0)
            elif t in ("TimerStarted", "ChildStarted", "SignalWaitStarted"):
                self._started[op] = d
            kind = {"Step": "step", "Time": "timer", "Sign": "signal", "Chil": "child"}.get(t[:4])
            if kind and "name" in d:
                self._recorded.setdefault(op, (kind, d["name"]))

    # -- deterministic helpers ---------------------------------------------------------

    def now(self) -> float:
        """Epoch seconds: when the latest outcome this code has consumed was recorded (the
        execution's start before any). The same on every replay."""
        return self._now

    @property
    def _now(self) -> float:
        seen = [self._ts[n] for n in self._ops if n in self._ts]
        return max(seen) if seen else self.started_at

    def random(self) -> float:
        """A float in [0, 1), the same on every replay."""
        self._rand_n += 1
        return _random.Random(f"{self.execution_id}:{self._rand_n}").random()

    def uuid(self) -> str:
        """A UUID4 string, the same on every replay."""
        self._rand_n += 1
        rnd = _random.Random(f"{self.execution_id}:{self._rand_n}")
        return str(_uuid.UUID(int=rnd.getrandbits(128), version=4))

    # -- operations --------------------------------------------------------------------

    def _new(self, kind: str, name: str, command: dict[str, Any]) -> _Op:
        self._n += 1
        n = self._n
        recorded = self._recorded.get(n)
        if recorded is not None and recorded != (kind, name):
            raise NonDeterminism(
                f"workflow {self.workflow_name!r} execution {self.execution_id!r}: operation "
                f"#{n} is {kind} {name!r} in the code but {recorded[0]} {recorded[1]!r} in the "
                "history: the code changed under a running execution. Finish or cancel old "
                "executions before deploying, or version the workflow under a new name.")
        op = _Op(n, kind, name, {"op": n, "type": kind, "name": name, **command})
        self._ops[n] = op
        return op

    def call(self, function: str, input: Any = None, *, retry: Any = None,
             compensate: str | tuple[str, Any] | None = None) -> Pending:
        """Start step `function` with `input`; returns a Pending (parallel with others).
        Without `retry`/`compensate`, a function declared with `@app.step` brings its own."""
        declared = self._steps.get(function) or {}
        if retry is None and declared.get("retry") is not None:
            retry = declared["retry"]
        if compensate is None and declared.get("compensate") is not None:
            compensate = declared["compensate"]
            if isinstance(compensate, list):
                compensate = (compensate[0], compensate[1])
        policy = StepRetry.of(retry) if retry is not None else self._default_retry
        comp = None
        if compensate is not None:
            comp = ({"function": compensate[0], "input": compensate[1]}
                    if isinstance(compensate, tuple)
                    else {"function": compensate, "input": input})
        return Pending(self, self._new("step", function, {
            "input": input, "retry": policy.to_dict(), "compensate": comp}))

    def step(self, function: str, input: Any = None, **kw: Any) -> Any:
        """Run step `function` with `input` and return its output (or raise StepFailed)."""
        return self.call(function, input, **kw).result()

    def all(self, pendings: Iterable[Pending]) -> Results:
        """Wait for all of them; their outputs in order (the first failure raises)."""
        return Results(self._resolve(list(pendings)))

    def map(self, function: str, items: Iterable[Any], *, concurrency: int | None = None,
            **kw: Any) -> Results:
        """`function` over every item, at most `concurrency` at a time; outputs in order."""
        pendings = [self.call(function, item, **kw) for item in items]
        if concurrency is not None:
            if concurrency < 1:
                raise ValueError("wf.map: concurrency must be >= 1")
            group = f"map{pendings[0].op}" if pendings else "map"
            for p in pendings:
                p._op.command.update(group=group, limit=concurrency)
        return self.all(pendings)

    def sleep(self, seconds: float) -> Results:
        """A durable timer: the execution sleeps `seconds` (seconds to days), surviving
        restarts; returns when it fires."""
        if seconds < 0:
            raise ValueError("wf.sleep: seconds must be >= 0")
        self._resolve([Pending(self, self._new("timer", "sleep", {"seconds": float(seconds)}))])
        return Results()

    def wait_for_signal(self, name: str, *, timeout: float | None = None) -> Any:
        """The data of the next signal `name` sent to this execution (`squall signal`,
        `client.signal`); raises SignalTimeout after `timeout` seconds."""
        p = Pending(self, self._new("signal", name, {"timeout": timeout}))
        return p.result()

    def start_child(self, workflow: str, input: Any = None) -> Pending:
        """Start child workflow `workflow`; its id is derived from this one's."""
        return Pending(self, self._new("child", workflow, {"input": input}))

    def child(self, workflow: str, input: Any = None) -> Any:
        """Run child workflow `workflow` to completion; its output (or StepFailed)."""
        return self.start_child(workflow, input).result()

    # -- resolution --------------------------------------------------------------------

    def _resolve(self, pendings: list[Pending]) -> list[Any]:
        values = []
        missing = []
        for p in pendings:
            out = self._outcomes.get(p.op)
            if out is None:
                missing.append(p.op)
                values.append(None)
                continue
            t = out["type"]
            if t in ("StepFailed", "ChildFailed"):
                raise StepFailed(p._op.name, out.get("error") or {})
            if t == "SignalTimedOut":
                raise SignalTimeout(f"signal {p._op.name!r} did not come within "
                                    f"{p._op.command.get('timeout')} s")
            if t == "StepCompleted" and p._op.command.get("compensate"):
                self._completed_steps.append(
                    {"op": p.op, **p._op.command["compensate"], "output": out.get("output")})
            values.append(out.get("output", out.get("data")))
        if missing:
            self._waiting = missing
            raise Suspend()
        return values

    # -- the decision ------------------------------------------------------------------

    def commands(self) -> list[dict[str, Any]]:
        """Operations the code has asked for whose outcome is not in the history."""
        return [op.command for n, op in sorted(self._ops.items()) if n not in self._outcomes]

    def compensations(self) -> list[dict[str, Any]]:
        """Completed steps' compensations, newest first (a saga unwinds in reverse)."""
        done = {}
        for n, op in self._ops.items():
            out = self._outcomes.get(n)
            comp = op.command.get("compensate")
            if comp and out is not None and out["type"] == "StepCompleted":
                done[n] = {"op": n, "step": op.name, **comp}
        return [done[n] for n in sorted(done, reverse=True)]


def replay(fn: Callable[..., Any], payload: dict[str, Any],
           steps: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run workflow function `fn` against its history; the decision for the engine.
    `steps`: the app's `@app.step` declarations (their retry and compensation)."""
    wf = WorkflowContext(payload["id"], payload["name"], payload.get("history") or [],
                         default_retry=StepRetry.of(payload.get("retry")), steps=steps)
    token = current.set(wf)
    try:
        out = fn(wf, payload.get("input"))
        if hasattr(out, "__await__") and hasattr(out, "send"):  # an async workflow
            out = _drive(out)
    except Suspend:
        return {"status": "suspended", "commands": wf.commands(),
                "waiting": getattr(wf, "_waiting", []),
                "compensations": wf.compensations()}  # should it be cancelled
    except NonDeterminism as exc:
        return {"status": "nondeterministic", "error": {
            "errorType": "Workflow.NonDeterministic", "errorMessage": str(exc)}}
    except Exception as exc:  # the workflow failed: the saga unwinds
        return {"status": "failed", "compensations": wf.compensations(), "error": {
            "errorType": getattr(exc, "error_type", None) or type(exc).__name__,
            "errorMessage": str(exc)}}
    finally:
        current.reset(token)
    if wf.cancel_requested:
        return {"status": "failed", "compensations": wf.compensations(), "error": {
            "errorType": "Workflow.Cancelled", "errorMessage": "cancelled"}}
    return {"status": "completed", "output": out}


def _drive(coro: Any) -> Any:
    """Run an async workflow: its awaits of wf operations never really suspend."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("an async workflow awaited something other than a wf operation "
                       "(asyncio.sleep, I/O): do that in a step, and use wf.sleep for time")
