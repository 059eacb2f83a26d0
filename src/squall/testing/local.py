"""In-process invocation for tests: the worker's adapters, run on threads of the test
process, with per-invocation output capture and Lambda-style metering.

Timeouts are enforced by answering "Task timed out" at the deadline; the abandoned call
keeps running on its thread until it returns (Python cannot kill a thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import json
import logging
import resource
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from ..app import App
from ..events.lineage import strip as strip_lineage
from ..observe.traces import current_span
from ..runtime import loops, parked
from ..runtime import protocol as P
from ..runtime.adapters import HandlerFailure, call, http_response_from_wire
from ..runtime.worker import _child_span, _with_trace
from ..types import Context, InvocationResult

_local = threading.local()


def current_function() -> str | None:
    """The function running on this thread (who asks for a secret, a table, ...)."""
    return getattr(_local, "function", None)


class _Tee(io.TextIOBase):
    """sys.stdout/sys.stderr stand-in: writes go to the current invocation's buffer."""

    def __init__(self, original: Any) -> None:
        self.original = original

    def write(self, s: str) -> int:
        buf = getattr(_local, "buffer", None)
        if buf is not None:
            return buf.write(s)
        return self.original.write(s)

    def flush(self) -> None:
        if getattr(_local, "buffer", None) is None:
            self.original.flush()


class _CaptureHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        buf = getattr(_local, "buffer", None)
        if buf is not None:
            buf.write(f"[{record.levelname}]\t{getattr(_local, 'request_id', '')}\t"
                      f"{self.format(record)}\n")


_install_lock = threading.Lock()
_installed = 0
_handler = _CaptureHandler()


def _install() -> None:
    global _installed
    with _install_lock:
        if _installed == 0:
            logging.getLogger().addHandler(_handler)
        _installed += 1
    _ensure_tee()


def _ensure_tee() -> None:
    """(Re)wrap sys.stdout/sys.stderr: test runners swap them between test phases."""
    if not isinstance(sys.stdout, _Tee):
        sys.stdout = _Tee(sys.stdout)
    if not isinstance(sys.stderr, _Tee):
        sys.stderr = _Tee(sys.stderr)


def _uninstall() -> None:
    global _installed
    with _install_lock:
        _installed -= 1
        if _installed == 0:
            if isinstance(sys.stdout, _Tee):
                sys.stdout = sys.stdout.original
            if isinstance(sys.stderr, _Tee):
                sys.stderr = sys.stderr.original
            logging.getLogger().removeHandler(_handler)


_env_lock = threading.RLock()


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Any:
    """A function's `environment`, set for the duration of its call. os.environ is
    process-wide: calls running at the same time see each other's variables (the lock
    only keeps each update whole). `TestClient(isolated=True)` gives every worker its own."""
    if not env:
        yield
        return
    with _env_lock:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
    try:
        yield
    finally:
        with _env_lock:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


class NestedInvokeError(RuntimeError):
    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(f"{payload.get('errorType')}: {payload.get('errorMessage')}")
        self.payload = payload


class _Binding:
    """`app.invoke` inside an in-process test: run the callee right here, synchronously."""

    def __init__(self, invoker: LocalInvoker) -> None:
        self.invoker = invoker

    def _authorize(self, op: str, payload: Any) -> None:
        """Least privilege, as the supervisor checks it for a worker's CALL."""
        if self.invoker.authorize is not None:
            self.invoker.authorize(op, payload, getattr(_local, "function", None))

    def invoke(self, function: str, data: Any) -> Any:
        self._authorize("invoke", [function])
        result = self.invoker.run(function, P.KIND_EVENT, json.dumps(data), str(uuid.uuid4()),
                                  _child_span(getattr(_local, "trace", None)))
        self.invoker.record(result, P.KIND_EVENT)
        if not result.ok:
            raise NestedInvokeError(result.error_payload())
        return result.output

    def send(self, queue: str, messages: list[dict[str, Any]]) -> list[str]:
        self._authorize("send", [queue])
        for m in messages:
            m.setdefault("trace", _child_span(getattr(_local, "trace", None)))
        service = self.invoker.services.get("send")
        if service is None:
            raise NestedInvokeError({"errorType": "Runtime.UnsupportedOperation",
                                     "errorMessage": "queues are not available here"})
        return service(queue, messages)

    def invoke_async(self, function: str, body: str) -> str:
        self._authorize("invoke_async", [function])
        service = self.invoker.services.get("invoke_async")
        if service is None:
            raise NestedInvokeError({"errorType": "Runtime.UnsupportedOperation",
                                     "errorMessage": "async invocation is not available here"})
        return service(function, body, _child_span(getattr(_local, "trace", None)))

    def publish(self, entry_json: str) -> str:
        self._authorize("publish", entry_json)
        service = self.invoker.services.get("publish")
        if service is None:
            raise NestedInvokeError({"errorType": "Runtime.UnsupportedOperation",
                                     "errorMessage": "the event bus is not available here"})
        return service(_with_trace(entry_json, _child_span(getattr(_local, "trace", None))))

    def notify(self, message_json: str) -> str:
        self._authorize("notify", message_json)
        service = self.invoker.services.get("notify")
        if service is None:
            raise NestedInvokeError({"errorType": "Runtime.UnsupportedOperation",
                                     "errorMessage": "topics are not available here"})
        return service(_with_trace(message_json, _child_span(getattr(_local, "trace", None))))

    def idempotency(self, op: str, args: list[Any]) -> Any:
        return self.invoker.services["idempotency"](op, args)

    def put_records(self, stream: str, items: list[list[str]]) -> list[str]:
        self._authorize("put_records", [stream])
        return self.invoker.services["put_records"](
            stream, items, _child_span(getattr(_local, "trace", None)))

    def call_service(self, service: str, payload: Any) -> Any:
        """A supervisor service by name (workflows, the event store)."""
        self._authorize(service, payload)
        fn = self.invoker.services.get(service)
        if fn is None:
            raise NestedInvokeError({"errorType": "Runtime.UnsupportedOperation",
                                     "errorMessage": f"{service!r} is not available here"})
        # the calling invocation's span, as the supervisor's pool sets it per call (the
        # service runs on the client's loop, in a copy of this thread's context): a
        # state machine's execution keeps it (squall.workflows.machines)
        token = current_span.set(getattr(_local, "trace", None))
        try:
            return fn(payload)
        finally:
            current_span.reset(token)

    def state(self, kind: str, resource: str, op: str, args: list[Any]) -> Any:
        service = self.invoker.services.get("state")
        if service is None:
            raise NestedInvokeError({"errorType": "Runtime.UnsupportedOperation",
                                     "errorMessage": "state is not available here"})
        # the caller's trace, loop lineage included: a write's change or object event
        # continues this event chain (squall.sources.state)
        return service(getattr(_local, "function", None), kind, resource, op, args,
                       getattr(_local, "trace", None))


class LocalInvoker:
    def __init__(self, app: App, *,
                 on_result: Callable[[InvocationResult, str], None] | None = None,
                 services: dict[str, Callable[..., Any]] | None = None) -> None:
        self.app = app
        self.on_result = on_result
        self.services = services or {}
        # least privilege: (op, payload, caller) -> None or raise (AccessPolicy.check_call)
        self.authorize: Callable[[str, Any, str | None], None] | None = None
        self.warm: set[str] = set()
        self._executor = ThreadPoolExecutor(32, thread_name_prefix="squall-fn")
        self._loops = threading.local()
        self._all_loops: list[asyncio.AbstractEventLoop] = []
        app.bind(_Binding(self))
        _install()

    def close(self) -> None:
        self.app.bind(None)
        self._executor.shutdown(wait=False, cancel_futures=True)
        for loop in self._all_loops:
            if not loop.is_running():
                loop.close()
        self._all_loops.clear()
        _uninstall()

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = getattr(self._loops, "loop", None)
        if loop is None:
            loop = self._loops.loop = asyncio.new_event_loop()
            self._all_loops.append(loop)
        return loop

    def record(self, result: InvocationResult, kind: str) -> None:
        if self.on_result is not None:
            self.on_result(result, kind)

    def run(self, function: str, kind: str, payload: Any, request_id: str,
            trace: str | None = None) -> InvocationResult:
        """One invocation on the calling thread."""
        fn = self.app.functions.get(function)
        if fn is None:
            raise LookupError(f"app {self.app.name!r} has no function {function!r}")
        cfg = fn.config
        own, stopped = loops.check(function, _child_span(trace), request_id)
        if stopped is not None:  # a recursive loop: not run (squall.events.lineage)
            return stopped
        cold = function not in self.warm
        self.warm.add(function)
        ctx = Context(request_id=request_id, function_name=cfg.name, app_name=self.app.name,
                      memory_mb=cfg.memory_mb, timeout_s=cfg.timeout_s, cold_start=cold)
        ctx.trace_parent = strip_lineage(own)  # W3C for the handler; children keep it
        _ensure_tee()
        outer = (getattr(_local, "buffer", None), getattr(_local, "request_id", None),
                 getattr(_local, "trace", None), getattr(_local, "function", None))
        _local.buffer, _local.request_id, _local.trace = io.StringIO(), request_id, own
        _local.function = function  # who is calling, for state access (least privilege)
        status, value, etype, emsg, stack = P.OK, None, None, None, None
        t_wall, t0 = time.time(), time.perf_counter()
        try:
            with _environment(cfg.environment):
                value = call(fn, kind, payload, ctx, self._loop)
        except HandlerFailure as f:
            status, etype, emsg, stack = P.ERROR, f.error_type, f.message, f.stack
            _local.buffer.write(f"[ERROR] {etype}: {emsg}\n")
        finally:
            duration_ms = (time.perf_counter() - t0) * 1000.0
            logs = _local.buffer.getvalue()
            _local.buffer, _local.request_id, _local.trace, _local.function = outer
        if status == P.OK and kind == P.KIND_HTTP:
            value = http_response_from_wire(value)
        return InvocationResult(
            request_id=request_id, function=function, ok=status == P.OK, value=value,
            error_type=etype, error_message=emsg, stack_trace=stack, started_at=t_wall,
            duration_ms=duration_ms, memory_mb=cfg.memory_mb,
            max_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            cold=cold, init_ms=0.0 if cold else None, logs=logs, status=status, trace=own,
        )

    async def invoke(self, function: str, kind: str, payload: Any, *,
                     request_id: str | None = None, trace: str | None = None,
                     follow: bool = True) -> InvocationResult:
        rid = request_id or str(uuid.uuid4())
        fn = self.app.functions.get(function)
        if fn is None:
            raise LookupError(f"app {self.app.name!r} has no function {function!r}")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self.run, function, kind, payload, rid,
                                      trace)
        try:
            result = await asyncio.wait_for(asyncio.shield(future), fn.config.timeout_s)
        except asyncio.TimeoutError:
            result = InvocationResult(
                request_id=rid, function=function, ok=False, status="timeout",
                error_type="Sandbox.Timedout",
                error_message=(f"RequestId: {rid} Error: Task timed out after "
                               f"{fn.config.timeout_s:.2f} seconds"),
                started_at=time.time() - fn.config.timeout_s,
                duration_ms=fn.config.timeout_s * 1000.0, memory_mb=fn.config.memory_mb,
            )
        self.record(result, kind)
        if not follow:  # (an async delivery: it hands the parked execution its destinations)
            return result
        return await parked.follow(self.services, result)  # (a state machine's long Wait)
