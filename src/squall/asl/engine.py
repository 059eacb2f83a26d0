"""The Amazon States Language interpreter: a state-transition engine over an explicit,
JSON-serialisable execution state.

    machine = StateMachine("orders", definition)          # validated once
    execution = machine.start(input, name="run-1")        # ExecutionStarted
    while execution.status == "RUNNING":
        machine.step(execution, env)                      # one state, retries included
    execution.output / execution.error, execution.cause, execution.history

`Execution` holds everything needed to resume: the current state's name and input, the
variables, the start time, the history events. `step` runs one whole state (a Task with
its retries and catchers, a Wait, a whole Parallel or Map) and leaves the execution at
the next state; a durable runner persists the execution after each step and, after a
crash, calls `step` again from the last persisted one (a Parallel or Map runs again
with only the branches it had not finished, given `Env.on_branch`/`Env.branches`: see
fanout.py).

The outside world comes in through `Env`: a `TaskRunner` that runs Task resources, a clock
(`now()`, epoch seconds) and a sleeper (`sleep(seconds)`) for Wait and retry back-off, and
a random source for jitter and States.MathRandom. Tests inject fakes, so nothing here
waits or does I/O.
"""

from __future__ import annotations

import copy
import functools
import time
import uuid
from typing import Any, Callable

from . import choice, intrinsics, paths
from .errors import (ALL, DATA_LIMIT_EXCEEDED, NO_CHOICE_MATCHED, RUNTIME, TASK_FAILED,
                     TIMEOUT, UNCATCHABLE, StatesError)
from .execution import (ARN_PREFIX, Env, Execution, Fail, Parked, TaskRequest,
                        TaskRunner, TimedOut)
from .fanout import FanOut
from .history import History, dumps, iso
from .validate import validate

__all__ = ["StateMachine", "Env", "Execution", "Parked", "TaskRequest", "TaskRunner",
           "ARN_PREFIX"]


class StateMachine:
    def __init__(self, name: str, definition: str | dict[str, Any], *,
                 validated: bool = False) -> None:
        self.name = name
        self.definition = definition if validated and isinstance(definition, dict) \
            else validate(definition, name)
        self.arn = f"{ARN_PREFIX}:stateMachine:{name}"
        self.timeout_s = self.definition.get("TimeoutSeconds")

    # -- lifecycle -------------------------------------------------------------------

    def start(self, input: Any = None, *, name: str | None = None, now: float | None = None
              ) -> Execution:
        ename = name or str(uuid.uuid4())
        t = time.time() if now is None else now
        ex = Execution(id=f"{ARN_PREFIX}:execution:{self.name}:{ename}", name=ename,
                       machine=self.name, input=input if input is not None else {},
                       start_time=t, current=self.definition["StartAt"])
        ex.state_input = ex.input
        History(ex.history).add("ExecutionStarted", t, {
            "input": dumps(ex.input), "inputDetails": {"truncated": False},
            "roleArn": f"{ARN_PREFIX}:role/squall"})
        return ex

    def run(self, input: Any = None, env: Env | None = None, *, name: str | None = None
            ) -> Execution:
        env = env or Env()
        ex = self.start(input, name=name, now=env.now())
        return self.resume(ex, env)

    def resume(self, ex: Execution, env: Env) -> Execution:
        while ex.status == "RUNNING":
            self.step(ex, env)
        return ex

    def pending_wait(self, ex: Execution, env: Env) -> float | None:
        """If the next state is a Wait, how many seconds it will wait (no side effects).

        A durable runner arms a durable timer for this long, and when it fires calls
        `step` with a no-op sleeper, instead of letting `step` sleep in a process."""
        if ex.current is None:
            return None
        spec = self.definition["States"][ex.current]
        if spec["Type"] != "Wait":
            return None
        scope = _Scope(self, self.definition, ex, env, History([]))
        try:
            data = scope._input(ex.current, spec, ex.state_input)
            return scope.wait_delay(ex.current, spec, data)
        except Fail:
            return 0.0  # the step itself will fail the execution with the right error

    def step(self, ex: Execution, env: Env) -> Execution:
        """Run the current state; leave `ex` at the next state or finished."""
        hist = History(ex.history)
        if ex.current is None:
            return ex
        try:
            nxt, out = _Scope(self, self.definition, ex, env, hist, top=True).run_state(
                ex.current, ex.state_input)
        except Fail as f:
            ex.status, ex.error, ex.cause, ex.current = "FAILED", f.error, f.cause, None
            det = {"error": f.error} if f.error is not None else {}
            if f.cause is not None:
                det["cause"] = f.cause
            hist.add("ExecutionFailed", env.now(), det)
            return ex
        except TimedOut:
            ex.status, ex.error, ex.current = "TIMED_OUT", TIMEOUT, None
            ex.cause = "The execution timed out"
            hist.add("ExecutionTimedOut", env.now(), {"error": TIMEOUT})
            return ex
        if nxt is None:
            ex.status, ex.output, ex.current = "SUCCEEDED", out, None
            hist.add("ExecutionSucceeded", env.now(), {
                "output": dumps(out), "outputDetails": {"truncated": False}})
        else:
            ex.current, ex.state_input = nxt, out
        return ex


class _Scope(FanOut):
    """Runs states of one state list (the machine, a branch, a Map iteration)."""

    def __init__(self, machine: StateMachine, spec: dict[str, Any], ex: Execution, env: Env,
                 hist: History, *, top: bool = False) -> None:
        self.machine, self.spec, self.ex, self.env, self.hist = machine, spec, ex, env, hist
        self.top = top  # the machine's own states (a top-level branch's: `branch`)
        self._ctx: dict[str, Any] = {}
        self._pending: dict[str, Any] = {}
        self._entered_id = 0
        self.lang = machine.definition.get("QueryLanguage", "JSONPath")

    # -- data ------------------------------------------------------------------------

    def context(self, state: str, entered: float, retry: int) -> dict[str, Any]:
        ctx: dict[str, Any] = {
            "Execution": {"Id": self.ex.id, "Input": self.ex.input, "Name": self.ex.name,
                          "RoleArn": f"{ARN_PREFIX}:role/squall",
                          "StartTime": iso(self.ex.start_time), "RedriveCount": 0},
            "State": {"EnteredTime": iso(entered), "Name": state, "RetryCount": retry},
            "StateMachine": {"Id": self.machine.arn, "Name": self.machine.name},
        }
        if self.ex.map_item is not None:
            ctx["Map"] = {"Item": self.ex.map_item}
        return ctx

    def runtime(self, state: str, msg: str) -> Fail:
        return Fail(RUNTIME, f"An error occurred while executing the state '{state}' "
                              f"(entered at the event id #{self._entered_id}). {msg}")

    def select(self, state: str, path: str | None, data: Any, field_: str) -> Any:
        """A path field (InputPath, ItemsPath, SecondsPath, …): `$…`, `$$…` or `$var…`."""
        if path is None:
            return {}
        try:
            return self.lookup(path, data, self._ctx)
        except paths.PathNotFound as exc:
            raise self.runtime(state, str(exc)) from None

    def lookup(self, path: str, data: Any, ctx: dict[str, Any] | None) -> Any:
        if path.startswith("$$"):
            return paths.get(path[1:], ctx or {})
        if path == "$" or path[1:2] in (".", "["):
            return paths.get(path, data)
        return self._var(path[1:])

    def resolve(self, state: str, value: str, data: Any, ctx: dict[str, Any],
                field_: str) -> Any:
        """A `.$` value: $$ context path, $ path, intrinsic call or $variable."""
        try:
            if value.startswith("$$"):
                return paths.get(value[1:], ctx)
            if intrinsics.is_intrinsic(value):
                return intrinsics.evaluate(
                    value, lambda kind, text: self._ref(state, kind, text, data, ctx),
                    rng=self.env.rng)
            if value == "$" or value[1:2] in (".", "["):
                return paths.get(value, data)
            return self._var(value[1:])
        except paths.PathNotFound as exc:
            raise self.runtime(state, f"The JSONPath '{value}' specified for the field "
                                      f"'{field_}' could not be found in the input "
                                      f"'{dumps(data)}'") from exc

    def _ref(self, state: str, kind: str, text: str, data: Any, ctx: dict[str, Any]) -> Any:
        if kind == "ctx":
            return paths.get(text, ctx)
        if kind == "path":
            return paths.get(text, data)
        return self._var(text)

    def _var(self, ref: str) -> Any:
        name, _, rest = ref.partition(".")
        if "[" in name:
            name, rest = name.split("[", 1)[0], ref[len(name.split("[", 1)[0]):]
        if name not in self.ex.variables:
            raise paths.PathNotFound("$" + ref, f"variable {name!r} is not defined")
        value = self.ex.variables[name]
        if rest:
            path = "$" + ("." + rest if not rest.startswith("[") else rest)
            return paths.get(path, value)
        return value

    def template(self, state: str, tpl: Any, data: Any, ctx: dict[str, Any], field_: str
                 ) -> Any:
        if isinstance(tpl, dict):
            out = {}
            for k, v in tpl.items():
                if k.endswith(".$") and isinstance(v, str):
                    out[k[:-2]] = self.resolve(state, v, data, ctx, k)
                else:
                    out[k] = self.template(state, v, data, ctx, field_)
            return out
        if isinstance(tpl, list):
            return [self.template(state, v, data, ctx, field_) for v in tpl]
        return tpl

    def put_result(self, state: str, spec: dict[str, Any], raw: Any, result: Any,
                   path_field: str = "ResultPath") -> Any:
        rp = spec.get(path_field, "$") if path_field in spec else "$"
        try:
            return paths.put(rp, raw, result)
        except paths.PathNotFound as exc:
            raise self.runtime(state, str(exc)) from None

    def assign(self, state: str, spec: dict[str, Any], data: Any, result: Any,
               ctx: dict[str, Any]) -> None:
        """Evaluate `Assign` now (over the state's result, or its input when it has
        none; with the variables as they were), apply it when the state exits."""
        if "Assign" not in spec:
            return
        source = result if result is not None else data
        self._pending.update(self.template(state, spec["Assign"], source, ctx, "Assign"))

    def check_size(self, state: str, value: Any) -> None:
        if len(dumps(value).encode()) > self.env.max_payload_bytes:
            raise Fail(DATA_LIMIT_EXCEEDED,
                        f"The state/task '{state}' returned a result with a size exceeding "
                        f"the maximum number of bytes service limit.")

    # -- states ----------------------------------------------------------------------

    def run_state(self, name: str, raw: Any) -> tuple[str | None, Any]:
        spec = self.spec["States"][name]
        t = spec["Type"]
        durable = self.top or self.branch is not None  # (retries recorded: see _back_off)
        resumed = self.ex.retry if durable and self.ex.retry and (
            self.ex.retry["state"] == name) else None
        if resumed:  # a restart between attempts: go on with the recorded counts
            entered, self._entered_id = resumed["entered"], resumed["entered_id"]
            retries, attempt = list(resumed["counts"]), resumed["attempt"]
            self._sleep(resumed["fire_at"] - self.env.now())  # what is left of it
        else:
            entered = self.env.now()
            self._check_deadline(entered)
            self._entered_id = self.hist.add(f"{t}StateEntered", entered, {
                "input": dumps(raw), "inputDetails": {"truncated": False}, "name": name})
            retries = [0] * len(spec.get("Retry", []))
            attempt = 0
        self._entered = entered
        while True:
            ctx = self._ctx = self.context(name, entered, attempt)
            self._pending = {}
            try:
                nxt, out = getattr(self, "_" + t.lower())(name, spec, raw, ctx)
                break
            except StatesError as err:
                handled = self._recover(name, spec, raw, err, retries, attempt)
                if handled is None:
                    attempt += 1
                    continue
                nxt, out = handled
                break
        if durable:
            self.ex.retry = None
        self.ex.variables.update(self._pending)
        if t != "Fail":
            self.hist.add(f"{t}StateExited", self.env.now(), {
                "name": name, "output": dumps(out), "outputDetails": {"truncated": False}})
        if nxt is None and not (spec.get("End") or t in ("Succeed", "Fail")):
            raise AssertionError(f"state {name!r} did not transition")  # pragma: no cover
        return nxt, out

    def _recover(self, name: str, spec: dict[str, Any], raw: Any, err: StatesError,
                 retries: list[int], attempt: int) -> tuple[str | None, Any] | None:
        """Retry (None: run again) or catch (next, output); raise Fail if neither."""
        task_like = spec["Type"] in ("Task", "Parallel", "Map")

        def matches(names: list[str]) -> bool:
            if err.error in names:
                return True
            if err.error in UNCATCHABLE:
                return False
            if ALL in names:
                return True
            return TASK_FAILED in names and task_like and err.error != TIMEOUT

        if err.error != RUNTIME:
            for i, r in enumerate(spec.get("Retry", [])):
                if matches(r["ErrorEquals"]):
                    if retries[i] < r.get("MaxAttempts", 3):
                        delay = r.get("IntervalSeconds", 1) * r.get("BackoffRate", 2.0) \
                            ** retries[i]
                        if "MaxDelaySeconds" in r:
                            delay = min(delay, r["MaxDelaySeconds"])
                        if r.get("JitterStrategy") == "FULL":
                            delay = self.env.rng.uniform(0, delay)
                        retries[i] += 1
                        self._back_off(name, retries, attempt + 1, delay)
                        return None
                    break
            for c in spec.get("Catch", []):
                if matches(c["ErrorEquals"]):
                    out = self.put_result(name, c, raw, err.as_output())
                    self._pending = {}
                    self.assign(name, c, raw, err.as_output(), self._ctx)
                    return c["Next"], out
        raise Fail(err.error, err.cause)

    def _back_off(self, name: str, retries: list[int], attempt: int, delay: float) -> None:
        """Record the failed attempt (durable runners: a checkpoint, or inside a branch of
        a top-level Parallel or Map its `on_branch_retry`, so a restart goes on counting),
        then wait: in the worker, or (top level) parked on a durable timer if long."""
        record: Callable[[Execution], None] | None = self.env.checkpoint if self.top \
            else None
        if self.branch is not None and self.env.on_branch_retry is not None:
            record = functools.partial(self.env.on_branch_retry, *self.branch)
        if record is not None:
            fire_at = self.env.now() + delay
            self.ex.retry = {"state": name, "counts": list(retries), "attempt": attempt,
                             "entered": self._entered, "entered_id": self._entered_id,
                             "fire_at": fire_at}
            record(self.ex)
            if self.top and self.env.park_after_s is not None and (
                    delay > self.env.park_after_s):
                raise Parked(fire_at)
        self._sleep(delay)

    def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        deadline = self._deadline()
        if deadline is not None and self.env.now() + seconds > deadline:
            self.env.sleep(max(0.0, deadline - self.env.now()))
            raise TimedOut()
        self.env.sleep(seconds)

    def _deadline(self) -> float | None:
        t = self.machine.timeout_s
        return None if t is None else self.ex.start_time + t

    def _check_deadline(self, now: float) -> None:
        deadline = self._deadline()
        if deadline is not None and now > deadline:
            raise TimedOut()

    def _input(self, name: str, spec: dict[str, Any], raw: Any) -> Any:
        return self.select(name, spec.get("InputPath", "$"), raw, "InputPath") \
            if "InputPath" in spec else raw

    def _output(self, name: str, spec: dict[str, Any], data: Any) -> Any:
        out = self.select(name, spec.get("OutputPath", "$"), data, "OutputPath") \
            if "OutputPath" in spec else data
        self.check_size(name, out)
        return out

    def _next(self, spec: dict[str, Any]) -> str | None:
        return None if spec.get("End") else spec["Next"]

    def _pass(self, name: str, spec: dict[str, Any], raw: Any, ctx: dict[str, Any]
              ) -> tuple[str | None, Any]:
        data = self._input(name, spec, raw)
        if "Parameters" in spec:
            data = self.template(name, spec["Parameters"], data, ctx, "Parameters")
        result = copy.deepcopy(spec["Result"]) if "Result" in spec else data
        self.assign(name, spec, data, result, ctx)
        out = self.put_result(name, spec, raw, result)
        return self._next(spec), self._output(name, spec, out)

    def _succeed(self, name: str, spec: dict[str, Any], raw: Any, ctx: dict[str, Any]
                 ) -> tuple[str | None, Any]:
        return None, self._output(name, spec, self._input(name, spec, raw))

    def _fail(self, name: str, spec: dict[str, Any], raw: Any, ctx: dict[str, Any]
              ) -> tuple[str | None, Any]:
        error, cause = spec.get("Error"), spec.get("Cause")
        if "ErrorPath" in spec:
            error = self.resolve(name, spec["ErrorPath"], raw, ctx, "ErrorPath")
        if "CausePath" in spec:
            cause = self.resolve(name, spec["CausePath"], raw, ctx, "CausePath")
        for f, v in (("ErrorPath", error), ("CausePath", cause)):
            if f in spec and not isinstance(v, str):
                raise self.runtime(name, f"The {f} field refers to value "
                                         f"\"{dumps(v)}\" which is not a valid string: "
                                         f"{spec[f]}")
        raise Fail(error, cause)

    def _choice(self, name: str, spec: dict[str, Any], raw: Any, ctx: dict[str, Any]
                ) -> tuple[str | None, Any]:
        data = self._input(name, spec, raw)

        def look(path: str) -> Any:
            return self.lookup(path, data, ctx)

        for rule in spec["Choices"]:
            try:
                hit = choice.evaluate(rule, data, look)
            except paths.PathNotFound as exc:
                raise self.runtime(name, str(exc)) from None
            if hit:
                self.assign(name, rule, data, None, ctx)
                return rule["Next"], self._output(name, spec, data)
        if "Default" in spec:
            self.assign(name, spec, data, None, ctx)
            return spec["Default"], self._output(name, spec, data)
        raise Fail(NO_CHOICE_MATCHED, f"An error occurred while executing the state "
                                       f"'{name}' (entered at the event id "
                                       f"#{self._entered_id}). No Matches!")

    def _wait(self, name: str, spec: dict[str, Any], raw: Any, ctx: dict[str, Any]
              ) -> tuple[str | None, Any]:
        data = self._input(name, spec, raw)
        end = self.env.wait_end
        self._sleep(self.wait_delay(name, spec, data) if end is None
                    else end - self.env.now())
        self.assign(name, spec, data, None, ctx)
        return self._next(spec), self._output(name, spec, data)

    def wait_delay(self, name: str, spec: dict[str, Any], data: Any) -> float:
        """Seconds a Wait state waits from now, for its effective input `data`."""
        now = self.env.now()
        if "Seconds" in spec:
            delay = float(spec["Seconds"])
        elif "SecondsPath" in spec:
            v = self.select(name, spec["SecondsPath"], data, "SecondsPath")
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                    and float(v).is_integer()):
                raise self.runtime(name, f"The SecondsPath parameter does not reference a "
                                         f"valid integer value: {spec['SecondsPath']}")
            delay = float(v)
        else:
            ts = spec.get("Timestamp")
            if "TimestampPath" in spec:
                ts = self.select(name, spec["TimestampPath"], data, "TimestampPath")
            when = choice.parse_timestamp(ts)
            if when is None:
                raise self.runtime(name, f"The TimestampPath parameter does not reference a "
                                         f"valid ISO-8601 extended offset date-time format "
                                         f"string: {spec.get('TimestampPath')}")
            delay = max(0.0, when.timestamp() - now)
        return delay

    def _task(self, name: str, spec: dict[str, Any], raw: Any, ctx: dict[str, Any]
              ) -> tuple[str | None, Any]:
        data = self._input(name, spec, raw)
        params = self.template(name, spec["Parameters"], data, ctx, "Parameters") \
            if "Parameters" in spec else data
        timeout = self._seconds(name, spec, data, "TimeoutSeconds", 99999999)
        heartbeat = self._seconds(name, spec, data, "HeartbeatSeconds", None)
        if self.env.runner is None:
            raise StatesError("States.Runtime", f"no task runner to run {spec['Resource']}")
        req = TaskRequest(spec["Resource"], params, name, timeout, heartbeat, ctx)
        started = self.env.now()
        self.hist.add("TaskScheduled", started, {
            "resource": spec["Resource"], "parameters": dumps(params),
            "timeoutInSeconds": timeout, "heartbeatInSeconds": heartbeat})
        self.hist.add("TaskStarted", started, {"resource": spec["Resource"]})
        try:
            result = self.env.runner.run(req)
            if timeout is not None and self.env.now() - started > timeout:
                raise StatesError(TIMEOUT, f"The task '{name}' did not finish within its "
                                           f"TimeoutSeconds ({timeout} s)")
        except StatesError as err:
            kind = "TaskTimedOut" if err.error == TIMEOUT else "TaskFailed"
            self.hist.add(kind, self.env.now(), {"resource": spec["Resource"],
                                                 "error": err.error, "cause": err.cause})
            raise
        self.hist.add("TaskSucceeded", self.env.now(), {
            "resource": spec["Resource"], "output": dumps(result)})
        return self._finish(name, spec, raw, data, result, ctx)

    def _finish(self, name: str, spec: dict[str, Any], raw: Any, data: Any, result: Any,
                ctx: dict[str, Any]) -> tuple[str | None, Any]:
        if "ResultSelector" in spec:
            result = self.template(name, spec["ResultSelector"], result, ctx, "ResultSelector")
        self.assign(name, spec, data, result, ctx)
        out = self.put_result(name, spec, raw, result)
        return self._next(spec), self._output(name, spec, out)

    def _seconds(self, name: str, spec: dict[str, Any], data: Any, f: str,
                 default: float | None) -> float | None:
        if f in spec:
            return spec[f]
        if f + "Path" in spec:
            v = self.select(name, spec[f + "Path"], data, f + "Path")
            if not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
                raise self.runtime(name, f"The {f}Path parameter does not reference a valid "
                                         f"positive integer: {spec[f + 'Path']}")
            return v
        return default
