"""The invoker: one app's zygote, its function pools, and the metering of every call.

`Runtime` is what the gateway, the CLI and the test harness call. It never imports the
user's module: the zygote does, and hands back the manifest (plain data) from which the
pools are built. Results go to the caller and to `on_result` (the invocation log).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from ..config import FunctionConfig, RuleConfig, Subscription
from ..ids import request_id as new_request_id
from ..observe import logs
from ..observe.traces import enter_span
from ..types import InvocationResult
from . import loops, parked
from . import protocol as P
from .adapters import http_response_from_wire
from .aio import cancel
from .loader import resolve_ref
from .pool import FunctionPool, Pending, ServiceError, Throttled, WorkerConn
from .zygote_client import ZygoteClient, ZygoteError

ResultSink = Callable[[InvocationResult, str], None]
Service = Callable[[Any], Awaitable[Any]]

DEFAULT_MAX_WORKERS = 64  # per function without reserved concurrency
MEMORY_CHECK_S = 0.05
REAP_CHECK_S = 1.0


class UnknownFunction(LookupError):
    def __init__(self, app: str, name: str, known: list[str]) -> None:
        super().__init__(
            f"app {app!r} has no function {name!r}; its functions are: {', '.join(known) or 'none'}"
        )
        self.function = name


class Runtime:
    def __init__(
        self,
        app_ref: str,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        on_result: ResultSink | None = None,
        provision: bool = True,
        python: str | None = None,
        cwd: str | None = None,
    ) -> None:
        self.app_ref = resolve_ref(app_ref)
        self.python, self.cwd = python, cwd  # the zygote's interpreter and directory
        self.max_workers = max_workers
        self.on_result = on_result
        self.provision = provision  # False: keep no provisioned workers (one-shot CLI use)
        self.zygote: ZygoteClient | None = None
        self.manifest: dict[str, Any] = {}
        self.app_name = ""
        self.configs: dict[str, FunctionConfig] = {}
        self.pools: dict[str, FunctionPool] = {}
        self.pids: dict[int, WorkerConn] = {}
        self._housekeeping: asyncio.Task[None] | None = None
        self._retired: list[tuple[ZygoteClient, list[FunctionPool]]] = []
        self.generation = 0
        self.stopping = False
        self._restart_lock = asyncio.Lock()
        # what workers may ask of the supervisor (app.invoke, app.send, ...)
        self.services: dict[str, Service] = {"invoke": self._service_invoke}
        # services that must know which function asks (state: least privilege), called
        # with (payload, caller function name)
        self.caller_services: dict[str, Callable[[Any, str | None], Awaitable[Any]]] = {}
        # least privilege for every service call: (op, payload, caller) -> None or raise
        # (squall.sources.access.AccessPolicy.check_call, set by whoever wires services)
        self.authorize: Callable[[str, Any, str | None], None] | None = None
        # InvocationResult -> the same with secret values masked (squall.security.wiring)
        self.redact: Callable[[InvocationResult], InvocationResult] | None = None
        # squall.observe.traces.Tracer: a span per invocation and per outgoing hop
        self.tracer: Any = None
        # squall.observe.metrics.Metrics.observe: Prometheus counters per result
        self.observe_result: ResultSink | None = None

    # -- lifecycle -----------------------------------------------------------------

    def _new_zygote(self) -> ZygoteClient:
        return ZygoteClient(self.app_ref, on_exit=self._on_exit, python=self.python,
                            cwd=self.cwd)

    async def start(self, zygote: ZygoteClient | None = None) -> dict[str, Any]:
        """`zygote`: one already started on this app (a platform deploy's import check)."""
        if zygote is not None and zygote.manifest is not None:
            zygote.on_exit, manifest = self._on_exit, zygote.manifest
        else:
            zygote = self._new_zygote()
            manifest = await zygote.start()
        self._install(zygote, manifest)
        self._housekeeping = asyncio.ensure_future(self._housekeep())
        return manifest

    def _install(self, zygote: ZygoteClient, manifest: dict[str, Any]) -> None:
        self.zygote = zygote
        self.manifest = manifest
        self.app_name = manifest["app"]
        self.configs = {
            f["name"]: FunctionConfig.from_manifest(f) for f in manifest["functions"]
        }
        self.rules = [RuleConfig.from_manifest(r) for r in manifest.get("rules", [])]
        self.subscriptions = [Subscription(**s) for s in manifest.get("subscriptions", [])]
        self.pools = {
            name: FunctionPool(self, cfg, self.max_workers) for name, cfg in self.configs.items()
        }
        self.generation += 1
        for pool in self.pools.values():
            self.replenish(pool)

    async def reload(self) -> dict[str, Any]:
        """Import the app afresh in a new zygote; on success swap it in, else keep the old.

        Idle old workers are retired now; busy ones finish their work first.
        """
        zygote = self._new_zygote()
        manifest = await zygote.start()  # raises ZygoteError: the old version keeps serving
        old_zygote, old_pools = self.zygote, list(self.pools.values())
        self._install(zygote, manifest)
        if old_zygote is not None:
            self._retired.append((old_zygote, old_pools))
        self._sweep_retired()
        return manifest

    def _sweep_retired(self) -> None:
        still: list[tuple[ZygoteClient, list[FunctionPool]]] = []
        for zygote, pools in self._retired:
            busy = False
            for pool in pools:
                pool.max_workers = 0
                for w in list(pool.workers):
                    if w.inflight or w.nested:
                        busy = True
                    else:
                        w.close()
            if busy:
                still.append((zygote, pools))
            else:
                asyncio.ensure_future(zygote.stop())
        self._retired = still

    async def stop(self) -> None:
        self.stopping = True
        await cancel(self._housekeeping)
        self._housekeeping = None
        killed = []
        for pool in self.pools.values():
            for w in list(pool.workers):
                w.kill("shutdown")
                killed.append(w)
        for zygote, pools in self._retired:
            for pool in pools:
                for w in list(pool.workers):
                    w.kill("shutdown")
                    killed.append(w)
            await zygote.stop()
        self._retired = []
        for w in killed:  # do not leave their transports for the collector
            w.close()
        await asyncio.sleep(0)  # let the transports' close callbacks run
        if self.zygote is not None:
            await self.zygote.stop()
            self.zygote = None

    async def _housekeep(self) -> None:
        last_reap = time.monotonic()
        while True:
            await asyncio.sleep(MEMORY_CHECK_S)
            for pool in self.pools.values():
                pool.check_memory(MEMORY_CHECK_S)
            now = time.monotonic()
            if now - last_reap >= REAP_CHECK_S:
                last_reap = now
                for pool in self.pools.values():
                    pool.reap_idle(now)
                if self._retired:
                    self._sweep_retired()

    def _on_exit(self, pid: int, status: int) -> None:
        w = self.pids.get(pid)
        if w is not None and not w.exit_status.done():
            w.exit_status.set_result(status)

    async def zygote_fork(self, function: str) -> tuple[Any, int]:
        """A new worker for `function`; a zygote that died is replaced first."""
        if self.zygote is None or not self.zygote.alive:
            async with self._restart_lock:
                if self.zygote is None or not self.zygote.alive:
                    await self._restart_zygote()
        assert self.zygote is not None
        return self.zygote.fork(function)

    async def _restart_zygote(self) -> None:
        if self.stopping:
            raise ZygoteError("the runtime is stopping")
        old = self.zygote
        zygote = self._new_zygote()
        await zygote.start()  # same code on disk: the manifest is unchanged
        self.zygote = zygote
        if old is not None:
            await old.stop()
        logs.event("zygote restarted", logging.WARNING, app=self.app_name,
                   pid=zygote.proc.pid if zygote.proc else None)

    def replenish(self, pool: FunctionPool) -> None:
        if not self.provision or self.stopping or pool is not self.pools.get(pool.cfg.name):
            return  # shutting down, or a retired pool
        missing = pool.cfg.provisioned - len(pool.workers) - pool.starting
        for _ in range(max(0, missing)):
            asyncio.ensure_future(self._provision(pool))

    async def _provision(self, pool: FunctionPool) -> None:
        try:
            await pool.spawn(on_demand=False)
        except Exception as exc:  # the zygote went away; the next call reports it
            logs.event("could not start a provisioned worker", logging.ERROR,
                       function=pool.cfg.name, error=str(exc))

    # -- invoking ------------------------------------------------------------------

    def function_names(self) -> list[str]:
        return list(self.configs)

    def config(self, function: str) -> FunctionConfig:
        cfg = self.configs.get(function)
        if cfg is None:
            raise UnknownFunction(self.app_name, function, list(self.configs))
        return cfg

    async def invoke(
        self, function: str, kind: str, payload: Any, *, request_id: str | None = None,
        trace: str | None = None, follow: bool = True,
    ) -> InvocationResult:
        """Run one invocation to completion. `payload`: JSON text (event) or wire HTTP request.
        `follow=False`: a parked answer comes back as it is, the caller deals with the
        execution (an async delivery hands its destinations over, squall.sources.events)."""
        pool = self.pools.get(function)
        if pool is None:
            raise UnknownFunction(self.app_name, function, list(self.configs))
        rid = request_id or new_request_id()
        future: asyncio.Future[InvocationResult] = asyncio.get_running_loop().create_future()
        pending = Pending(rid, kind, payload, future)
        # this invocation's own span: the worker hands it on (ctx.trace_parent) and the
        # tracer records it under the caller's span
        own, parent = enter_span(trace)
        own, stopped = loops.check(function, own, rid)  # recursive loop detection
        if stopped is not None:
            self._record(stopped, kind)
            return stopped
        pending.trace, pending.parent_span = own, parent
        started_wall = time.time()
        try:
            await pool.submit(pending)
        except Throttled as exc:
            result = InvocationResult(
                request_id=rid, function=function, ok=False, status="throttled",
                error_type="TooManyRequestsException", error_message=str(exc),
                started_at=started_wall, memory_mb=pool.cfg.memory_mb, trace=own,
            )
            self._record(result, kind)
            if self.tracer is not None:
                self.tracer.invocation(own, parent, result, kind)
            return result
        # a state machine parked at a long Wait: its outcome comes when the timer fires
        return await parked.follow(self.services, await future) if follow else await future

    def finish(self, cfg: FunctionConfig, pending: Pending, *, status: str, value: Any,
               error_type: str | None, error_message: str | None, stack: list[str] | None,
               duration_ms: float, max_memory_mb: int, cold: bool, init_ms: float | None,
               logs: str) -> None:
        if status == P.OK and pending.kind == P.KIND_HTTP:
            value = http_response_from_wire(value)
        result = InvocationResult(
            request_id=pending.request_id, function=cfg.name, ok=status == P.OK, value=value,
            error_type=error_type, error_message=error_message, stack_trace=stack,
            started_at=time.time() - (time.monotonic() - pending.t_enqueued),
            duration_ms=duration_ms, memory_mb=cfg.memory_mb, max_memory_mb=max_memory_mb,
            cold=cold, init_ms=init_ms, logs=logs, status=status, trace=pending.trace,
        )
        if self.redact is not None:  # secret values out of logs, traces, errors
            result = self.redact(result)
        if not pending.future.done():
            pending.future.set_result(result)
        self._record(result, pending.kind)
        if self.tracer is not None:
            self.tracer.invocation(pending.trace, pending.parent_span, result, pending.kind)

    def _record(self, result: InvocationResult, kind: str) -> None:
        if self.on_result is not None:
            try:
                self.on_result(result, kind)
            except Exception:  # pragma: no cover - the log must never break a call
                pass
        if self.observe_result is not None:
            self.observe_result(result, kind)

    async def serve_call(self, op: str, payload: Any, caller: str | None = None) -> Any:
        if self.authorize is not None:
            self.authorize(op, payload, caller)
        if self.tracer is not None:
            self.tracer.hops(op, payload, caller)
        with_caller = self.caller_services.get(op)
        if with_caller is not None:
            return await with_caller(payload, caller)
        service = self.services.get(op)
        if service is None:
            raise ServiceError({"errorType": "Runtime.UnsupportedOperation",
                                "errorMessage": f"{op!r} is not available in this runtime"})
        return await service(payload)

    async def _service_invoke(self, payload: Any) -> Any:
        function, data_json, *rest = payload
        result = await self.invoke(function, P.KIND_EVENT, data_json,
                                   trace=rest[0] if rest else None)
        if not result.ok:
            raise ServiceError(result.error_payload())
        return result.value

    def stats(self) -> dict[str, Any]:
        return {name: pool.stats() for name, pool in self.pools.items()}
