"""The worker: one function's execution environment, forked from the app's zygote.

It runs a blocking, single-threaded loop over its socket and serves one invocation at a
time (Lambda's model). Frames may arrive pipelined; they wait in the socket and in
`pending` until their turn. Within an invocation, several threads may call the
supervisor at once (a state machine's Map and Parallel branches: `call`): each CALL
carries its own id, one waiting thread at a time reads the socket and hands every reply
to the thread that asked for it, so the calls overlap instead of running in turn.
Everything the function writes to fd 1/2 (print, logging, tracebacks, C extensions) lands
in a memfd the supervisor also holds, and is shipped with each result; if the worker is
killed mid-invocation the supervisor reads what was left.

After each invocation the worker checks its peak RSS against the function's memory
limit; over it, the invocation fails with a memory error and the worker exits.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import resource
import signal
import socket
import sys
import threading
import time
from collections import deque
from typing import Any

from ..app import App, Function
from ..events.envelope import child_traceparent
from ..events.lineage import strip as strip_lineage
from ..observe import funclog
from ..types import Context
from . import protocol as P
from ..backends.state import ERRORS as _STATE_ERRORS
from .adapters import HandlerFailure, call
from .sandbox import drop_privileges

_LOG_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(request_id)s\t%(message)s\n"


def _stream(fd: int) -> io.TextIOWrapper:
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", errors="backslashreplace")


class _RequestIdFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = self.request_id
        return True


class Prepared:
    """Objects every worker needs, built once in the zygote before it forks: the stdio
    wrappers over fds 1 and 2 (pointed at the log memfd after the fork), the logging
    handler and its request-id filter."""

    def __init__(self) -> None:
        self.stdout = _stream(1)
        self.stderr = _stream(2)
        self.log_filter = _RequestIdFilter()
        self.handler = logging.StreamHandler(self.stderr)
        self.handler.setFormatter(logging.Formatter(_LOG_FORMAT.rstrip("\n"),
                                                    "%Y-%m-%dT%H:%M:%S"))
        self.handler.addFilter(self.log_filter)


def prepare() -> Prepared:
    return Prepared()


class _WorkerInvoker:
    """`app.invoke`/`app.send` inside a worker: a CALL frame to the supervisor, then wait.
    Safe to use from several threads of one invocation (`concurrent_calls`)."""

    concurrent_calls = True

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def _child(self) -> str:
        """A traceparent for work this invocation starts: same trace, new span."""
        return _child_span(self.worker.trace)

    def invoke(self, function: str, data: Any) -> Any:
        value = self.worker.call("invoke", [function, json.dumps(data), self._child()])
        return json.loads(value) if value else None

    def send(self, queue: str, messages: list[dict[str, Any]]) -> list[str]:
        for m in messages:
            m.setdefault("trace", self._child())
        return self.worker.call("send", [queue, messages])

    def invoke_async(self, function: str, body: str) -> str:
        return self.worker.call("invoke_async", [function, body, self._child()])

    def publish(self, entry_json: str) -> str:
        return self.worker.call("publish", _with_trace(entry_json, self._child()))

    def notify(self, message_json: str) -> str:
        return self.worker.call("notify", _with_trace(message_json, self._child()))

    def idempotency(self, op: str, args: list[Any]) -> Any:
        return self.worker.call("idempotency", [op, args])

    def remaining_s(self) -> float | None:
        """Seconds left before this invocation's timeout kills it."""
        deadline = self.worker.deadline
        return None if deadline is None else deadline - time.monotonic()

    def put_records(self, stream: str, items: list[list[str]]) -> list[str]:
        return self.worker.call("put_records", [stream, items, self._child()])

    def call_service(self, service: str, payload: Any) -> Any:
        """A supervisor service by name (workflows, the event store)."""
        return self.worker.call(service, payload)

    def state(self, kind: str, resource: str, op: str, args: list[Any]) -> Any:
        """Tables, caches, buckets: the supervisor knows which function asks (the
        worker's pool), so the caller is not sent; state errors come back as themselves."""
        try:
            return self.worker.call("state", [kind, resource, op, args])
        except NestedInvokeError as exc:
            raise state_error(exc.payload) from None


def _child_span(trace: str | None) -> str:
    """Same trace, new span; a missing or malformed parent starts a new trace."""
    try:
        return child_traceparent(trace)
    except ValueError:
        return child_traceparent(None)


def _with_trace(doc_json: str, trace: str) -> str:
    doc = json.loads(doc_json)
    doc.setdefault("traceparent", trace)
    return json.dumps(doc)


def state_error(payload: dict[str, Any]) -> Exception:
    """A state error from the supervisor, rebuilt as its own class (ConditionFailed, …)."""
    cls = _STATE_ERRORS.get(payload.get("errorType", ""))
    if cls is None:
        return NestedInvokeError(payload)
    return cls(payload.get("errorMessage", ""))


class NestedInvokeError(RuntimeError):
    """`app.invoke`/`app.send` from a function failed; carries the error type and message."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(f"{payload.get('errorType')}: {payload.get('errorMessage')}")
        self.payload = payload


class Worker:
    def __init__(self, app: App, fn: Function, sock: socket.socket, log_fd: int,
                 prepared: Prepared | None = None) -> None:
        self.app = app
        self.fn = fn
        self.sock = sock
        self.log_fd = log_fd
        self.unpacker = P.unpacker()
        self.pending: deque[list] = deque()
        self.replies: dict[int, list] = {}
        self.next_call = 0
        # CALLs from several threads: ids and the reply table under `_calls`; one thread
        # at a time reads the socket (`_reading`) and wakes the others; frames are written
        # whole under `_send_lock`
        self._calls = threading.Condition(threading.Lock())
        self._reading = False
        self._send_lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.invocations = 0
        self.trace: str | None = None
        self.deadline: float | None = None
        self.init_ms = 0.0
        self.limit_kb = fn.config.memory_mb * 1024
        self.prepared = prepared or Prepared()
        self.log_filter = self.prepared.log_filter

    # -- set-up after fork -----------------------------------------------------------

    def setup(self, t_request: float) -> None:
        cfg = self.fn.config
        drop_privileges()  # SQUALL_WORKER_USER: a less privileged user (squall.runtime.sandbox)
        os.environ.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": cfg.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.memory_mb),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{cfg.name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": f"squall/{self.app.name}/{cfg.name}",
                "AWS_REGION": os.environ.get("AWS_REGION", "local"),
                "AWS_EXECUTION_ENV": "squall",
                "SQUALL_APP": self.app.name,
                "SQUALL_FUNCTION": cfg.name,
            }
        )
        os.environ.update(cfg.environment)
        # fd 1 and 2 -> the log memfd, shared offset; Python's streams rebuilt over them
        os.dup2(self.log_fd, 1)
        os.dup2(self.log_fd, 2)
        sys.stdout = self.prepared.stdout
        sys.stderr = self.prepared.stderr
        root = logging.getLogger()
        for h in list(root.handlers):
            root.removeHandler(h)
        root.addHandler(self.prepared.handler)
        logging.Formatter.converter = time.gmtime
        self.app.bind(_WorkerInvoker(self))
        self.init_ms = (time.monotonic() - t_request) * 1000.0
        self.send([P.READY, os.getpid(), self.init_ms])

    # -- I/O -----------------------------------------------------------------------

    def send(self, frame: list) -> None:
        data = P.pack(frame)
        with self._send_lock:  # (sendall may write in pieces: never interleave two)
            self.sock.sendall(data)

    def _read(self) -> None:
        """Read what the socket has: replies go to `replies`, the rest to `pending`. Only
        the serving loop between invocations, or the one thread `call` elected, reads."""
        data = self.sock.recv(1 << 16)
        if not data:
            os._exit(0)  # the supervisor closed us: reaped, or gone
        self.unpacker.feed(data)
        for frame in self.unpacker:
            if frame[0] == P.CALL_REPLY:
                with self._calls:
                    self.replies[frame[1]] = frame
            else:
                self.pending.append(frame)

    def _loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
        return self.loop

    def call(self, op: str, payload: Any) -> Any:
        """Ask the supervisor for a service (invoke, send, ...) and wait for the answer.

        Thread-safe: the supervisor serves each CALL as it comes and answers by id, in
        any order. The first waiting thread reads the socket for everyone (until its own
        reply came), the others sleep on `_calls` and are woken after each read."""
        with self._calls:
            self.next_call += 1
            call_id = self.next_call
        try:
            self.send([P.CALL, call_id, op, payload])
        except OverflowError:  # msgpack carries integers up to 64 bits (hostile input)
            raise _STATE_ERRORS["InvalidItem"](
                f"{op}: an integer does not fit in 64 bits; store it as a string") from None
        with self._calls:
            while call_id not in self.replies:
                if self._reading:  # another thread reads: it wakes us after each read
                    self._calls.wait()
                    continue
                self._reading = True
                self._calls.release()
                try:
                    self._read()
                finally:
                    self._calls.acquire()
                    self._reading = False
                    self._calls.notify_all()
            _, _, ok, value = self.replies.pop(call_id)
        if ok:
            return value
        if value.get("errorType") == "AccessDenied":  # least privilege, for any service
            raise _STATE_ERRORS["AccessDenied"](value.get("errorMessage", ""))
        raise NestedInvokeError(value)

    def _drain_logs(self) -> str:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # a handler may have closed or replaced them
            pass
        size = os.fstat(self.log_fd).st_size
        if not size:
            return ""
        data = os.pread(self.log_fd, size, 0)
        os.ftruncate(self.log_fd, 0)
        os.lseek(self.log_fd, 0, os.SEEK_SET)
        return data.decode("utf-8", errors="backslashreplace")

    # -- serving -------------------------------------------------------------------

    def serve(self) -> None:
        cfg = self.fn.config
        while True:
            while not self.pending:
                self._read()
            frame = self.pending.popleft()
            if frame[0] != P.INVOKE:
                continue
            _, fid, request_id, kind, payload, trace = frame
            # this invocation's span in the trace (the supervisor made it: see
            # Runtime.invoke); the work it starts gets children of it
            self.trace = trace or _child_span(None)
            cold = self.invocations == 0
            self.invocations += 1
            ctx = Context(
                request_id=request_id, function_name=cfg.name, app_name=self.app.name,
                memory_mb=cfg.memory_mb, timeout_s=cfg.timeout_s, cold_start=cold,
            )
            # W3C for the handler; the loop lineage stays on self.trace for the children
            ctx.trace_parent = strip_lineage(self.trace)
            self.deadline = ctx.deadline
            self.log_filter.request_id = request_id
            funclog.bind(app=self.app.name, function=cfg.name, request_id=request_id,
                         trace=ctx.trace_parent, cold=cold)
            status, value, etype, emsg, stack = P.OK, None, None, None, None
            exit_after = False
            t0 = time.perf_counter()
            try:
                value = call(self.fn, kind, payload, ctx, self._loop)
            except HandlerFailure as f:
                status, etype, emsg, stack = P.ERROR, f.error_type, f.message, f.stack
                print(f"[ERROR] {etype}: {emsg}", file=sys.stderr)
                if stack:
                    print("Traceback (most recent call last):\n" + "".join(stack).rstrip(),
                          file=sys.stderr)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                status, etype = P.EXIT, "Runtime.ExitError"
                emsg = f"RequestId: {request_id} Error: Runtime exited with error: exit status {code}"
                exit_after = True
            duration_ms = (time.perf_counter() - t0) * 1000.0
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if peak_kb > self.limit_kb:
                status, value, etype = P.MEMORY, None, "Runtime.OutOfMemory"
                emsg = (f"RequestId: {request_id} Error: Runtime exited: function {cfg.name!r} "
                        f"used {peak_kb // 1024} MB, over its memory limit of {cfg.memory_mb} MB")
                exit_after = True
            logs = self._drain_logs()
            self.send([
                P.RESULT, fid, status, value, etype, emsg, stack, duration_ms,
                peak_kb // 1024, cold, self.init_ms if cold else None, logs,
            ])
            if exit_after:
                os._exit(1)


def run_worker(app: App, fn: Function, sock_fd: int, log_fd: int, t_request: float,
               prepared: Prepared | None = None) -> None:
    """Entry point in the forked child; never returns."""
    code = 0
    try:
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        sock = socket.socket(fileno=sock_fd)
        sock.setblocking(True)
        worker = Worker(app, fn, sock, log_fd, prepared)
        worker.setup(t_request)
        worker.serve()
    except BaseException:  # pragma: no cover - reported through the log memfd
        import traceback

        traceback.print_exc()
        code = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
