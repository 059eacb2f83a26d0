"""Parallel and Map: branches run as child executions of the same machine.

A mixin of the engine's state runner: each branch (a Parallel branch, a Map iteration) is
an `Execution` over the branch's own States, run to its end by a runner of the same class;
its history events are appended to the parent's (except for a DISTRIBUTED Map, whose
items are a Map Run of their own on AWS).

Branches run on threads, up to `Env.max_workers` at once and, for a Map, its
MaxConcurrency (0: up to `Env.max_workers`); all branches of a Parallel at once. A state
machine's worker sets `max_workers` to BRANCH_THREADS (squall.app_asl), so the branches'
Task calls overlap; with `max_workers=1` (the default, and the in-process test harness)
they run one at a time, in order. The outputs keep the branches' order whatever order they
finish in. As on AWS, the first failure that fails the state (a Parallel: any branch; a
Map: one past its tolerated failures) aborts the others: no branch starts after it, and
running ones stop before their next state (a Task already running finishes; its result is
ignored; a Map records those iterations as MapIterationAborted). The state fails with the
error of the branch that failed first.

Durable runners (`Env.on_branch`, `Env.branches`): each finished branch of a top-level
Parallel or Map is handed to `on_branch` as it finishes, and a state run again after a
restart takes the branches recorded before it as done (`branch_record`) instead of
running them again. A failed attempt of a state with Retry directly inside such a
branch is handed to `Env.on_branch_retry` (the branch at that state, with its `retry`
counts), and a restart resumes an unfinished branch from the last one
(`Env.branch_retries`) with its counts instead of from its first state. Nested
Parallels and Maps (inside a branch) are part of their branch: they run again with it.
`Env.on_merge` hears where each branch's events land in the execution's history, so the
runner's checkpoint can refer to the branch's record for them instead of storing them
twice.
"""

from __future__ import annotations

import copy
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from .errors import BRANCH_FAILED, DATA_LIMIT_EXCEEDED, RUNTIME, TOLERATED_FAILURE, StatesError
from .execution import Env, Execution, Fail
from .history import History, dumps


# runs one branch; its args: abort now?, and where a restart found it (`branch_progress`
# with all its events so far: it goes on from there) or None (from its first state)
Job = Callable[[Callable[[], bool], "dict[str, Any] | None"], Execution]


def _restored(parent: Execution, record: dict[str, Any]) -> Execution:
    """A branch finished before a restart, rebuilt from its record (`branch_record`)."""
    return Execution(id=parent.id, name=parent.name, machine=parent.machine,
                     input=parent.input, start_time=parent.start_time, current=None,
                     status=record["status"], output=record.get("output"),
                     error=record.get("error"), cause=record.get("cause"),
                     history=copy.deepcopy(record.get("events") or []))


class FanOut:
    machine: Any
    ex: Execution
    env: Env
    hist: History
    select: Any
    template: Any
    runtime: Any
    _finish: Any
    _input: Any
    run_state: Any

    _aborted: Callable[[], bool] = staticmethod(lambda: False)  # the enclosing branch's
    top: bool
    # a branch of a top-level Parallel or Map (its state's name, its index): its states'
    # failed attempts are reported (`Env.on_branch_retry`), so their retries are durable
    branch: tuple[str, int] | None = None

    def _branches(self, name: str, jobs: list[Job], limit: int,
                  stop: Callable[[list[Execution]], bool]
                  ) -> tuple[list[tuple[int, Execution]], Execution | None]:
        """Run branch jobs, at most `limit` (0: no limit) and `Env.max_workers` at once.
        `stop(done)`, over the branches finished so far in the order they finished, says
        the state has failed: the rest are abandoned (see the module docstring). Returns
        the branches that ran, (index, execution) in index order, and the first that
        failed (None if none did)."""
        recorded = self.env.branches.pop(name, {}) if self.top else {}
        retried = self.env.branch_retries.pop(name, {}) if self.top else {}

        def run(i: int, aborted: Callable[[], bool]) -> Execution:
            if i in recorded:  # finished before a restart: not run again
                return _restored(self.ex, recorded[i])
            child = jobs[i](aborted, retried.get(i))
            if self.top and self.env.on_branch is not None and child.status != "ABORTED":
                self.env.on_branch(name, i, child)
            return child

        workers = min(self.env.max_workers, limit or self.env.max_workers, len(jobs) or 1)
        if workers <= 1:
            done: list[Execution] = []
            for i in range(len(jobs)):
                done.append(run(i, self._aborted))
                if stop(done) or self._aborted():
                    break
            ran = list(enumerate(done))
        else:
            abort, lock = threading.Event(), threading.Lock()
            finished: dict[int, Execution] = {}
            done = []

            def aborted() -> bool:
                return abort.is_set() or self._aborted()

            def tracked(i: int) -> None:
                # the bookkeeping on the branch's own thread, so an abort is set before
                # that thread can take the next branch (which then stops at once)
                try:
                    child = run(i, aborted)
                except BaseException:
                    abort.set()  # (a branch raised: the machine timed out, or a bug)
                    raise
                with lock:
                    finished[i] = child
                    if child.status != "ABORTED":
                        done.append(child)
                        if not abort.is_set() and stop(done):
                            abort.set()  # AWS aborts the rest

            with ThreadPoolExecutor(workers, thread_name_prefix="squall-asl") as pool:
                for fut in [pool.submit(tracked, i) for i in range(len(jobs))]:
                    fut.result()
            ran = [(i, finished[i]) for i in sorted(finished)
                   if finished[i].history or finished[i].status != "ABORTED"]
        if self._aborted():  # this state is inside a branch being aborted: so is its own
            raise Fail(BRANCH_FAILED, "aborted")  # branch (see _child)
        return ran, next((c for c in done if c.status != "SUCCEEDED"), None)

    def _child(self, spec: dict[str, Any], data: Any, map_item: dict[str, Any] | None,
               name: str, index: int) -> Job:
        def run(aborted: Callable[[], bool], progress: dict[str, Any] | None
                ) -> Execution:
            child = Execution(id=self.ex.id, name=self.ex.name, machine=self.ex.machine,
                              input=self.ex.input, start_time=self.ex.start_time,
                              current=spec["StartAt"], state_input=data,
                              variables=dict(self.ex.variables), map_item=map_item)
            if progress is not None:  # a restart between two attempts of one of its states
                child.current = progress["current"]
                child.state_input = copy.deepcopy(progress["state_input"])
                child.variables = copy.deepcopy(progress["variables"])
                child.retry = copy.deepcopy(progress["retry"])
                child.history = copy.deepcopy(progress["events"])
            hist = History(child.history)
            scope = type(self)(self.machine, spec, child, self.env, hist)
            scope._aborted = aborted
            if self.top:
                scope.branch = (name, index)
            try:
                while child.current is not None:
                    if aborted():  # another branch failed the state: stop here
                        child.status = "ABORTED"
                        return child
                    nxt, out = scope.run_state(child.current, child.state_input)
                    child.current, child.state_input = nxt, out
                child.status, child.output = "SUCCEEDED", child.state_input
            except Fail as f:
                child.status, child.error, child.cause = "FAILED", f.error, f.cause
                if aborted():  # (a nested Parallel or Map stopped by the same abort)
                    child.status = "ABORTED"
            return child
        return run

    def _parallel(self, name: str, spec: dict[str, Any], raw: Any, ctx: dict[str, Any]
                  ) -> tuple[str | None, Any]:
        data = self._input(name, spec, raw)
        if "Parameters" in spec:
            data = self.template(name, spec["Parameters"], data, ctx, "Parameters")
        self.hist.add("ParallelStateStarted", self.env.now())
        ran, failed = self._branches(
            name, [self._child(b, copy.deepcopy(data), self.ex.map_item, name, i)
                   for i, b in enumerate(spec["Branches"])], 0,
            lambda done: done[-1].status != "SUCCEEDED")
        for i, c in ran:
            self._merge(name, i, c)
        if failed is not None:
            self.hist.add("ParallelStateFailed", self.env.now())
            self._raise_child(failed)
        self.hist.add("ParallelStateSucceeded", self.env.now())
        return self._finish(name, spec, raw, data, [c.output for _, c in ran], ctx)

    def _merge(self, name: str, index: int, child: Execution) -> None:
        """A branch's events into this history (renumbered); a durable runner is told
        where they went (`Env.on_merge`), so it can store them once (in the branch's
        record) and have the state's checkpoint refer to them."""
        start, offset = len(self.hist.events), self.hist.last_id
        self.hist.extend(child.history)
        if self.top and self.env.on_merge is not None and child.history:
            self.env.on_merge(name, index, start, offset, len(child.history))

    def _raise_child(self, child: Execution) -> None:
        if child.error == RUNTIME or child.error == DATA_LIMIT_EXCEEDED:
            raise Fail(child.error, child.cause)
        raise StatesError(child.error or BRANCH_FAILED, child.cause)

    def _map(self, name: str, spec: dict[str, Any], raw: Any, ctx: dict[str, Any]
             ) -> tuple[str | None, Any]:
        data = self._input(name, spec, raw)
        items = self.select(name, spec.get("ItemsPath", "$"), data, "ItemsPath")
        if not isinstance(items, list):
            raise self.runtime(name, f"Invalid path '{spec.get('ItemsPath', '$')}': the "
                                     f"ItemsPath value is not a JSON array: {dumps(items)}")
        limit = self._int_field(name, spec, data, "MaxConcurrency", 0)
        tol_count = self._int_field(name, spec, data, "ToleratedFailureCount", None)
        tol_pct = self._pct_field(name, spec, data)
        proc = spec.get("ItemProcessor", spec.get("Iterator"))
        selector = spec.get("ItemSelector", spec.get("Parameters"))
        self.hist.add("MapStateStarted", self.env.now(), {"length": len(items)})
        jobs = []
        for i, item in enumerate(items):
            mi = {"Index": i, "Value": item}
            if selector is not None:
                ictx = dict(ctx, Map={"Item": mi})
                value = self.template(name, selector, data, ictx, "ItemSelector")
            else:
                value = copy.deepcopy(item)
            jobs.append(self._child(proc, value, mi, name, i))
        def exceeded(done: list[Execution]) -> bool:
            failed = sum(1 for c in done if c.status != "SUCCEEDED")
            if not failed:
                return False
            if tol_count is None and tol_pct is None:
                return True
            return (tol_count is not None and failed > tol_count) or (
                tol_pct is not None and failed * 100.0 / len(items) > tol_pct)

        ran, first_failed = self._branches(name, jobs, limit, exceeded)
        # a DISTRIBUTED map runs its items as child executions (a Map Run): their states
        # are not in this execution's history, as on AWS
        distributed = isinstance(proc, dict) and (proc.get("ProcessorConfig") or {}).get(
            "Mode") == "DISTRIBUTED"
        if distributed:
            self.hist.add("MapRunStarted", self.env.now())
        failures = 0
        results = []
        for i, c in ran:
            if not distributed:
                self.hist.add("MapIterationStarted", self.env.now(),
                              {"index": i, "name": name})
                self._merge(name, i, c)
            if c.status == "ABORTED":  # another iteration failed the Map first
                if not distributed:
                    self.hist.add("MapIterationAborted", self.env.now(),
                                  {"index": i, "name": name})
                failures += 1
            elif c.status == "SUCCEEDED":
                if not distributed:
                    self.hist.add("MapIterationSucceeded", self.env.now(),
                                  {"index": i, "name": name})
                results.append(c.output)
            else:
                if not distributed:
                    self.hist.add("MapIterationFailed", self.env.now(),
                                  {"index": i, "name": name})
                failures += 1
                results.append(StatesError(c.error or "", c.cause).as_output())
        if distributed:
            self.hist.add("MapRunFailed" if failures else "MapRunSucceeded", self.env.now())
        if failures:
            tolerated = tol_count is not None or tol_pct is not None
            within = tolerated and (tol_count is None or failures <= tol_count) and (
                tol_pct is None or failures * 100.0 / len(items) <= tol_pct)
            if not tolerated:
                self.hist.add("MapStateFailed", self.env.now())
                self._raise_child(first_failed or next(c for _, c in ran
                                                       if c.status != "SUCCEEDED"))
            if not within:
                self.hist.add("MapStateFailed", self.env.now())
                raise StatesError(TOLERATED_FAILURE,
                                  "The specified tolerated failure threshold was exceeded")
        self.hist.add("MapStateSucceeded", self.env.now())
        return self._finish(name, spec, raw, data, results, ctx)

    def _int_field(self, name: str, spec: dict[str, Any], data: Any, f: str,
                   default: int | None) -> int | None:
        if f in spec:
            v = spec[f]
        elif f + "Path" in spec:
            v = _as_number(self.select(name, spec[f + "Path"], data, f + "Path"), int)
            if not (isinstance(v, int) and not isinstance(v, bool)):
                raise self.runtime(name, f"The {f}Path field refers to value \"{dumps(v)}\" "
                                         f"which is not a valid integer: {spec[f + 'Path']}")
        else:
            return default
        if v < 0:
            raise self.runtime(name, f"{f} cannot be negative.")
        return v

    def _pct_field(self, name: str, spec: dict[str, Any], data: Any) -> float | None:
        f = "ToleratedFailurePercentage"
        if f in spec:
            v = spec[f]
        elif f + "Path" in spec:
            v = _as_number(self.select(name, spec[f + "Path"], data, f + "Path"), float)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool)):
                raise self.runtime(name, f"The {f}Path field refers to value \"{dumps(v)}\" "
                                         f"which is not a valid float: {spec[f + 'Path']}")
        else:
            return None
        if not 0 <= v <= 100:
            raise self.runtime(name, f"{f} must be between 0 and 100.")
        return float(v)


def _as_number(v: Any, kind: type) -> Any:
    """AWS reads a numeric string ("1") in the *Path fields of Map as the number."""
    if isinstance(v, str):
        try:
            return kind(v)
        except ValueError:
            return v
    return v
