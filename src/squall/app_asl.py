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

Executions are durable: where the app runs with its orchestration services (squall run,
squall dev, squall.testing), the handler checkpoints the execution after every state
through the "state_machine" service (squall.workflows.machines), each finished
branch of a Parallel or Map as it finishes, and each failed attempt inside such a branch;
the supervisor resumes running executions from their last checkpoint after a restart
(without the branches already finished; a branch between two attempts goes on from
there with its retry counts).
Map and Parallel branches run on threads in the worker (BRANCH_THREADS), so their Task
calls to other functions overlap. The execution id is the invocation's request id, so a
retried invocation attaches to its execution.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, Callable

from .config import TIMEOUT_MAX_S, ConfigError

# a longer Wait (or Retry back-off) ends the invocation and becomes a durable timer;
# shorter ones sleep in the worker (cheaper than a checkpoint and a resume)
PARK_AFTER_S = 1.0
# Map and Parallel branches running at once in a state machine's worker (threads whose
# Task calls overlap): a Map's MaxConcurrency 0 ("no limit") means this many, as an AWS
# inline Map runs at most 40 iterations at once; a larger MaxConcurrency is capped here
BRANCH_THREADS = 40


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
        from .runtime.parked import PARKED
        from .workflows.machines import RESUME

        # branches on threads only where `app.invoke` may be called from several at once
        # (a worker); the in-process harness runs them one at a time, deterministically
        threads = BRANCH_THREADS if getattr(getattr(self.app, "_invoker", None),
                                            "concurrent_calls", False) else 1
        env = Env(FunctionRunner(self.app.invoke), now=self.now or time.time,
                  sleep=self.sleep or time.sleep, max_workers=threads)
        doc = None
        resumed = isinstance(event, dict) and RESUME in event
        if self._durable():
            if resumed:
                doc = self._service(["resume", event[RESUME]])
            else:
                name = getattr(ctx, "request_id", None) or str(uuid.uuid4())
                first = self.machine.start(event if event is not None else {}, name=name,
                                           now=env.now())
                state = first.to_dict()
                events = state.pop("history")
                doc = self._service(["begin", self.machine.name, name, first.input, state,
                                     events], optional=True)
        if doc is not None:
            ex = None if doc.get("parked") else self._drive(doc, env)
            if ex is None:  # waiting on a durable timer: the worker is free meanwhile
                return {PARKED: doc["id"], "resumed": resumed}
        else:  # no orchestration here (a bare invoker, a one-shot CLI run): in memory
            ex = self.machine.run(event if event is not None else {}, env,
                                  name=getattr(ctx, "request_id", None))
        self.last = ex
        if ex.status != "SUCCEEDED":
            raise HandlerFailure(ex.error or "States.Runtime", ex.cause or "", [])
        return ex.output

    def _durable(self) -> bool:
        invoker = getattr(self.app, "_invoker", None)
        services = getattr(getattr(invoker, "invoker", None), "services", None)
        if services is not None:  # in-process: only if the harness wired orchestration
            return "state_machine" in services
        return invoker is not None and hasattr(invoker, "call_service")

    def _service(self, payload: list[Any], optional: bool = False) -> Any:
        try:
            return self.app._invoker.call_service("state_machine", payload)
        except Exception as exc:
            err = getattr(exc, "payload", None)
            if optional and isinstance(err, dict) and (
                    err.get("errorType") == "Runtime.UnsupportedOperation"):
                return None  # the runtime has no orchestration services
            raise

    def _drive(self, doc: dict[str, Any], env: Any) -> Any:
        """Step from the last checkpoint to the end, checkpointing after every state (and
        after every failed attempt of a state with Retry, a top-level branch's too);
        None if the execution parked at a long Wait or back-off (the supervisor's timer
        resumes it)."""
        from .asl.engine import Env
        from .asl.execution import Execution, Parked, branch_progress, branch_record
        from .workflows.machines import stored_events

        if doc["state"] is None:
            raise RuntimeError(f"state machine execution {doc['id']!r} has no checkpoint")
        ex = Execution.from_dict(doc["state"])
        eid, length, fire_at = doc["id"], doc["length"], doc.get("fire_at")
        sent = len(ex.history)
        park_after = None if self.sleep is not None else PARK_AFTER_S  # (a test's sleeper)
        timeout = self.machine.timeout_s
        deadline = None if timeout is None else ex.start_time + timeout
        # the branches of the current Parallel or Map that finished before a restart
        recorded = {ex.current: {r["index"]: r for r in doc.get("branches") or []}}
        lock = threading.Lock()  # `length`: branches finish on their own threads
        # the history seq of each branch record, and where recorded branches' events went
        # in ex.history since the last checkpoint: a step stores them as references
        seqs = {(ex.current, r["index"]): r["seq"] for r in doc.get("branches") or []
                if "seq" in r}
        merged: list[tuple[int, int, int, int]] = []
        # where unfinished branches of the current state stood between two attempts, and
        # how many of each top-level branch's events its retry records hold (since the
        # last checkpoint: a step supersedes them)
        retried = {ex.current: {r["index"]: r for r in doc.get("branch_retries") or []}}
        reported = {(ex.current, r["index"]): len(r["events"])
                    for r in doc.get("branch_retries") or []}

        def on_merge(state: str, index: int, start: int, offset: int, count: int) -> None:
            seq = seqs.get((state, index))
            if seq is not None:  # (an aborted branch has no record: its events stay)
                merged.append((start - sent, offset, count, seq))

        def checkpoint(ex: Any) -> None:
            nonlocal length, sent
            # the state without its history (no copy: the call serialises it at once)
            state = {k: getattr(ex, k) for k in ex.__dataclass_fields__ if k != "history"}
            events, refs = stored_events(ex.history[sent:], merged)
            merged.clear()
            with lock:
                length = self._service(["step", eid, state, events, length, refs])
                reported.clear()
            sent = len(ex.history)

        def branch_retry(state: str, index: int, child: Any) -> None:
            nonlocal length
            with lock:
                n = reported.get((state, index), 0)
                length = self._service(["branch_retry", eid, state, branch_progress(
                    index, child, child.history[n:]), length])
                reported[(state, index)] = len(child.history)

        def branch_done(state: str, index: int, child: Any) -> None:
            nonlocal length
            with lock:
                length = self._service(["branch", eid, state, branch_record(index, child),
                                        length])
                seqs[(state, index)] = length  # (the one event appended: its seq)

        def wake_at(fire_at: float) -> float:
            # the machine's deadline if that comes first (it then times out)
            return fire_at if deadline is None else min(fire_at, deadline)

        def park(fire_at: float, record: bool) -> None:
            self._service(["park", eid, ex.current, fire_at, length, record,
                           wake_at(fire_at)])

        while ex.status == "RUNNING":
            wait = self.machine.pending_wait(ex, env)
            if wait:
                record = fire_at is None  # a restart keeps the end of a Wait it had begun
                if record:
                    fire_at = env.now() + wait
                if park_after is not None and wake_at(fire_at) - env.now() > park_after:
                    park(fire_at, record)
                    return None
                if record:
                    length = self._service(["wait", eid, ex.current, fire_at, length])
            step_env = Env(env.runner, now=env.now, rng=env.rng, sleep=env.sleep,
                           max_workers=env.max_workers, checkpoint=checkpoint,
                           park_after_s=park_after, wait_end=fire_at if wait else None,
                           on_branch=branch_done, branches=recorded, on_merge=on_merge,
                           on_branch_retry=branch_retry, branch_retries=retried)
            recorded, retried = {}, {}  # (only the state the restart found running)
            try:
                self.machine.step(ex, step_env)
            except Parked as p:  # a long Retry back-off: checkpointed with its counts
                park(p.fire_at, True)
                return None
            checkpoint(ex)
            fire_at = None
        return ex


class DeclaresStateMachines:
    functions: dict[str, Any]
    _config: Any
    _add: Any

    def state_machine_manifest(self) -> list[str]:
        """The names of the app's state machines (a supervisor wires their durable
        executions, and their Wait timers, when there is one)."""
        return sorted(name for name, f in self.functions.items()  # type: ignore[attr-defined]
                      if isinstance(f.handler, StateMachineHandler))

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
