"""Warm pools: per function, the workers, how a request picks one, and what happens when
one times out, runs out of memory, crashes or idles.

Dispatch policy (see shared/research/invocation-path-prototype.md):
* A function whose recent invocations are fast (EWMA under `PIPELINE_FAST_MS`) may have up
  to `PIPELINE_DEPTH` frames in flight per worker: frames wait in the socket, the worker
  still runs one at a time, and one wake-up serves several requests. Workers are filled
  in creation order, which keeps a hot set and lets the rest idle and be reaped.
* Any other function gets one request per worker: Lambda's execution-environment model.
* No worker can take it -> fork one (a cold start) while under the concurrency limit;
  at the limit, wait up to `max_wait_s` for a slot, then the call is throttled (429).

Timeouts run on the supervisor's clock from the moment a request reaches the head of its
worker's line (after a cold worker's init, as in Lambda); past `timeout_s` the worker is
SIGKILLed. Requests queued behind a failed head never started, so they are re-dispatched.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from ..config import FunctionConfig
from ..observe.traces import current_span
from . import protocol as P
from .zygote_client import describe_wait_status

if TYPE_CHECKING:  # annotations only
    from .runtime import Runtime

PIPELINE_DEPTH = 4
PIPELINE_FAST_MS = 2.0
PIPELINE_HEAD_AGE_S = 0.005
READY_TIMEOUT_S = 30.0
EXIT_STATUS_WAIT_S = 0.25
PAGE = os.sysconf("SC_PAGE_SIZE")


class Pending:
    """One request on its way through the pool."""

    __slots__ = ("request_id", "kind", "payload", "future", "t_enqueued", "started_at", "cold",
                 "trace", "parent_span")

    def __init__(self, request_id: str, kind: str, payload: Any, future: asyncio.Future) -> None:
        self.request_id = request_id
        self.kind = kind
        self.payload = payload
        self.future = future
        self.t_enqueued = time.monotonic()
        self.started_at = 0.0
        self.cold = False  # this request waited for its worker's init
        self.trace: str | None = None  # this invocation's own span (W3C traceparent)
        self.parent_span: str | None = None  # the caller's span id, if any


class WorkerConn(asyncio.Protocol):
    """The supervisor's end of one worker."""

    def __init__(self, pool: FunctionPool, sock: socket.socket, log_fd: int,
                 on_demand: bool = True) -> None:
        self.pool = pool
        self.on_demand = on_demand  # forked for a waiting request (not provisioned ahead)
        self.sock = sock
        self.log_fd = log_fd
        self.transport: asyncio.Transport | None = None
        self.unpacker = P.unpacker()
        self.inflight: deque[tuple[int, Pending]] = deque()
        self.next_id = 0
        self.pid = 0
        self.ready = False
        self.head_started = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.kill_reason: str | None = None
        self.nested = 0
        self.created = time.monotonic()
        self.last_used = self.created
        self.served = 0
        self.dead = False
        self.retired = False  # closed on purpose (idle reap, a retired version)
        self.peak_mb = 0
        self._out: list[bytes] | None = None  # frames waiting for this iteration's write
        self.exit_status: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.unpacker.feed(data)
        for frame in self.unpacker:
            op = frame[0]
            if op == P.RESULT:
                self._on_result(frame)
            elif op == P.READY:
                self.pid, self.ready = frame[1], True
                self.pool.runtime.pids[self.pid] = self
                if self.inflight:
                    self._start_head()
            elif op == P.CALL:
                self.nested += 1
                asyncio.ensure_future(self._nested(frame[1], frame[2], frame[3]))

    def connection_lost(self, exc: Exception | None) -> None:
        asyncio.ensure_future(self.pool.worker_lost(self))

    # -- requests ------------------------------------------------------------------

    def submit(self, pending: Pending) -> None:
        # the request a worker was forked for waits for its init: a cold start (even if
        # READY raced ahead of this submit). A provisioned worker's first request is warm
        # unless it arrives before that worker finished its init.
        pending.cold = self.next_id == 0 and (self.on_demand or not self.ready)
        self.next_id += 1
        self.inflight.append((self.next_id, pending))
        frame = P.pack([P.INVOKE, self.next_id, pending.request_id, pending.kind,
                        pending.payload, pending.trace])
        if self._out is None:  # first frame this loop iteration: write once, at its end
            self._out = [frame]
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._out.append(frame)
        if self.ready and len(self.inflight) == 1:
            self._start_head()

    def _flush(self) -> None:
        out, self._out = self._out, None
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _start_head(self) -> None:
        now = time.monotonic()
        self.head_started = now
        self.inflight[0][1].started_at = now
        loop = asyncio.get_running_loop()
        self.timer = loop.call_at(now + self.pool.cfg.timeout_s, self._on_timeout)

    def _on_result(self, frame: list) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        fid = frame[1]
        if not self.inflight or self.inflight[0][0] != fid:  # pragma: no cover - protocol bug
            return
        _, pending = self.inflight.popleft()
        self.served += 1
        self.last_used = time.monotonic()
        if self.inflight and self.ready:
            self._start_head()
        self.pool.completed(self, pending, frame)

    def _on_timeout(self) -> None:
        self.timer = None
        self.kill("timeout")

    def kill(self, reason: str) -> None:
        if self.kill_reason is None:
            self.kill_reason = reason
            self.peak_mb = self._vm_hwm_mb()
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        elif self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        """Retire an idle worker: it sees EOF and exits. It takes no request from now on
        (until its connection_lost removes it from the pool, `_pick` would still see it
        idle, and a request written to it then would be lost with "exit status 0")."""
        self.retired = True
        if self.transport is not None:
            self.transport.close()

    def read_logs(self) -> str:
        try:
            size = os.fstat(self.log_fd).st_size
            return os.pread(self.log_fd, size, 0).decode("utf-8", "backslashreplace") if size else ""
        except OSError:
            return ""

    def _vm_hwm_mb(self) -> int:
        """Peak RSS so far, read just before a kill (a dead process cannot tell)."""
        try:
            with open(f"/proc/{self.pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmHWM:"):
                        return int(line.split()[1]) // 1024
        except (OSError, ValueError, IndexError):
            pass
        return 0

    def rss_bytes(self) -> int:
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as f:
                return int(f.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            return 0

    async def _nested(self, call_id: int, op: str, payload: Any) -> None:
        # the calling invocation's span, for the spans of work this call sends on
        current_span.set(self.inflight[0][1].trace if self.inflight else None)
        try:
            reply = [P.CALL_REPLY, call_id, True,
                     await self.pool.runtime.serve_call(op, payload, self.pool.cfg.name)]
        except ServiceError as exc:
            reply = [P.CALL_REPLY, call_id, False, exc.payload]
        except Exception as exc:  # an unknown function, a stopped runtime
            reply = [P.CALL_REPLY, call_id, False,
                     {"errorType": type(exc).__name__, "errorMessage": str(exc)}]
        finally:
            self.nested -= 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(P.pack(reply))


class FunctionPool:
    """The workers of one function and the requests waiting for them."""

    def __init__(self, runtime: Runtime, cfg: FunctionConfig, max_workers: int) -> None:
        self.runtime = runtime
        self.cfg = cfg
        self.max_workers = cfg.concurrency if cfg.concurrency is not None else max_workers
        self.workers: list[WorkerConn] = []
        self.starting = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.ewma_ms: float | None = None

    # -- choosing a worker ---------------------------------------------------------

    def _fast(self) -> bool:
        return self.ewma_ms is not None and self.ewma_ms < PIPELINE_FAST_MS

    def _pick(self) -> WorkerConn | None:
        depth = PIPELINE_DEPTH if self._fast() else 1
        now = time.monotonic()
        for w in self.workers:
            if w.dead or w.kill_reason or w.nested or w.retired:
                continue
            n = len(w.inflight)
            if n == 0:
                return w
            if n < depth and (not w.ready or now - w.head_started < PIPELINE_HEAD_AGE_S):
                return w
        return None

    async def submit(self, pending: Pending) -> None:
        while True:
            w = self._pick()
            if w is not None:
                w.submit(pending)
                return
            if len(self.workers) + self.starting < self.max_workers:
                w = await self.spawn()
                if w is not None:
                    w.submit(pending)
                    return
                raise RuntimeError(f"could not start a worker for function {self.cfg.name!r}")
            # at the concurrency limit: wait for a slot, bounded
            remaining = self.cfg.max_wait_s - (time.monotonic() - pending.t_enqueued)
            if remaining <= 0:
                raise Throttled(self.cfg)
            slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.waiters.append(slot)
            try:
                await asyncio.wait_for(slot, remaining)
            except asyncio.TimeoutError:
                raise Throttled(self.cfg) from None
            finally:
                if slot in self.waiters:
                    self.waiters.remove(slot)

    def _wake_one(self) -> None:
        while self.waiters:
            slot = self.waiters.popleft()
            if not slot.done():
                slot.set_result(None)
                return

    async def spawn(self, on_demand: bool = True) -> WorkerConn | None:
        self.starting += 1
        try:
            sock, log_fd = await self.runtime.zygote_fork(self.cfg.name)
            loop = asyncio.get_running_loop()
            sock.setblocking(False)
            try:
                _, conn = await loop.create_unix_connection(
                    lambda: WorkerConn(self, sock, log_fd, on_demand), sock=sock
                )
            except BaseException:  # cancelled (shutting down) or failed: nothing leaks
                sock.close()
                os.close(log_fd)
                raise
        finally:
            self.starting -= 1
        self.workers.append(conn)
        loop.call_later(READY_TIMEOUT_S, self._check_ready, conn)
        return conn

    def _check_ready(self, conn: WorkerConn) -> None:
        if not conn.ready and not conn.dead:
            conn.kill("init-timeout")

    # -- outcomes ------------------------------------------------------------------

    def completed(self, w: WorkerConn, pending: Pending, frame: list) -> None:
        (_, _, status, value, etype, emsg, stack, duration_ms, max_mem, cold, init_ms,
         logs) = frame
        self.ewma_ms = duration_ms if self.ewma_ms is None else 0.8 * self.ewma_ms + 0.2 * duration_ms
        if status in (P.MEMORY, P.EXIT):
            w.kill_reason = status  # it exits now: send it nothing more
        self.runtime.finish(
            self.cfg, pending, status=status, value=value, error_type=etype, error_message=emsg,
            stack=stack, duration_ms=duration_ms, max_memory_mb=max_mem, cold=pending.cold,
            init_ms=init_ms if pending.cold else None, logs=logs,
        )
        self._wake_one()

    async def worker_lost(self, w: WorkerConn) -> None:
        if w.dead:
            return
        w.dead = True
        if w.timer is not None:
            w.timer.cancel()
        if w in self.workers:
            self.workers.remove(w)
        head = w.inflight.popleft()[1] if w.inflight else None
        queued = [p for _, p in w.inflight]
        w.inflight.clear()
        try:
            if head is not None:
                reason = w.kill_reason
                if reason is None:
                    try:
                        status = await asyncio.wait_for(asyncio.shield(w.exit_status),
                                                        EXIT_STATUS_WAIT_S)
                    except asyncio.TimeoutError:
                        status = None
                    how = describe_wait_status(status)
                    etype, emsg, kind = "Runtime.ExitError", (
                        f"RequestId: {head.request_id} Error: Runtime exited with error: {how}"
                    ), "crash"
                    if not w.ready:
                        etype = "Runtime.InitError"
                elif reason == "timeout":
                    etype, kind = "Sandbox.Timedout", "timeout"
                    emsg = (f"RequestId: {head.request_id} Error: Task timed out after "
                            f"{self.cfg.timeout_s:.2f} seconds")
                elif reason == "memory":
                    etype, kind = "Runtime.OutOfMemory", "memory"
                    emsg = (f"RequestId: {head.request_id} Error: Runtime exited: function "
                            f"{self.cfg.name!r} went over its memory limit of "
                            f"{self.cfg.memory_mb} MB")
                else:
                    etype, kind = "Runtime.ExitError", "crash"
                    emsg = f"RequestId: {head.request_id} Error: worker stopped ({reason})"
                now = time.monotonic()
                started = head.started_at or now
                duration_ms = (now - started) * 1000.0 if head.started_at else 0.0
                peak = w.peak_mb
                self.runtime.finish(
                    self.cfg, head, status=kind, value=None, error_type=etype, error_message=emsg,
                    stack=None, duration_ms=duration_ms, max_memory_mb=peak,
                    cold=head.cold, init_ms=None, logs=w.read_logs(),
                )
        finally:  # also when cancelled while waiting for the exit status (shutdown)
            if w.pid:
                self.runtime.pids.pop(w.pid, None)
            try:
                os.close(w.log_fd)
            except OSError:  # pragma: no cover
                pass
            w.sock.close()
        for p in queued:  # never started: safe to run elsewhere
            asyncio.ensure_future(self._resubmit(p))
        self._wake_one()
        self.runtime.replenish(self)

    async def _resubmit(self, pending: Pending) -> None:
        try:
            await self.submit(pending)
        except Exception as exc:
            if not pending.future.done():
                pending.future.set_exception(exc)

    # -- housekeeping --------------------------------------------------------------

    def reap_idle(self, now: float) -> None:
        keep = self.cfg.provisioned
        idle = [w for w in self.workers if not w.inflight and not w.dead and w.ready]
        excess = len(self.workers) - keep
        for w in sorted(idle, key=lambda w: w.last_used):
            if excess <= 0:
                break
            if now - w.last_used >= self.cfg.keep_warm_s:
                w.close()
                excess -= 1

    def check_memory(self, min_running_s: float = 0.0) -> None:
        """Stop workers over their memory limit. Only invocations that have been running
        for `min_running_s` are looked at: a shorter one is covered by the worker's own
        peak-RSS check when it ends, and reading /proc for every busy worker of a fast
        function would cost the loop for nothing."""
        limit = self.cfg.memory_mb * 1024 * 1024
        now = time.monotonic()
        for w in self.workers:
            if (w.inflight and w.pid and not w.kill_reason and w.ready
                    and now - w.head_started >= min_running_s and w.rss_bytes() > limit):
                w.kill("memory")

    def stats(self) -> dict[str, Any]:
        return {
            "workers": len(self.workers),
            "busy": sum(1 for w in self.workers if w.inflight),
            "inflight": sum(len(w.inflight) for w in self.workers),
            "waiting": len(self.waiters),
            "ewma_ms": self.ewma_ms,
        }


class ServiceError(Exception):
    """A worker's service call failed; `payload` is what the worker raises with."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload.get("errorMessage", ""))
        self.payload = payload


class Throttled(Exception):
    def __init__(self, cfg: FunctionConfig) -> None:
        limit = cfg.concurrency if cfg.concurrency is not None else "the worker limit"
        super().__init__(
            f"Rate Exceeded: function {cfg.name!r} is at its concurrency limit ({limit}) and no "
            f"slot freed within {cfg.max_wait_s:g} s"
        )
        self.function = cfg.name
