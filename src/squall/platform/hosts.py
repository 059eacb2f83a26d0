"""What runs on a node for each deployed app: one `VersionHost` per live version (a full
app stack on the version's interpreter and the app's data namespace), and an `AppHost`
that routes each request through the app's aliases to one of them.

Zero-downtime activation: a request picks its version and counts itself in flight in one
step (no await between), so once an alias moves, new requests go to the new version and
the old one only finishes what it holds; a version no alias points at is drained (its
in-flight count reaches zero, bounded by its longest function timeout) and then stopped:
its consumers, warm workers and zygote go away.

Quotas are checked here, before a version sees the request: the app's concurrency (a
429 JSON error past it) and storage (writes refused while the data namespace is over).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any, Awaitable, Callable

from ..backends.registry import AliasRecord, VersionRecord
from ..backends.state import QuotaExceeded
from ..gateway.errors import error_body
from ..ids import request_id as new_request_id
from ..observe import logs
from ..runtime.pool import ServiceError
from ..runtime.zygote_client import ZygoteClient
from ..sources.state import ACTIONS
from ..stack import AppStack, StackOptions
from .quotas import Quotas, StorageMeter
from .traffic import Canary, CanaryMonitor, Splitter

DRAIN_GRACE_S = 5.0  # on top of the version's longest function timeout

CrossInvoke = Callable[[str, list[Any]], Awaitable[Any]]


class VersionHost:
    def __init__(self, app: str, record: VersionRecord, code_dir: str, opts: StackOptions,
                 quotas: Quotas) -> None:
        self.app = app
        self.record = record
        self.version = record.version
        self.stack = AppStack(f"{code_dir}/app.py", opts)
        self.quotas = quotas
        self.inflight = 0
        self.served = 0
        self.errors = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.storage: StorageMeter | None = None

    async def start(self, storage: StorageMeter, zygote: ZygoteClient | None = None,
                    across: CrossInvoke | None = None) -> None:
        """`across(app, payload)`: runs `app.invoke("OTHER/FUNCTION", ...)` (grants)."""
        self.storage = storage
        try:
            await self.stack.start(zygote)
        except BaseException:  # whatever did start (the runtime, its zygote) stops
            runtime = getattr(self.stack, "runtime", None)
            if runtime is not None:
                await runtime.stop()
            elif zygote is not None:
                await zygote.stop()
            raise
        runtime = self.stack.runtime
        serve_state = runtime.caller_services["state"]
        local_invoke = runtime.services["invoke"]

        async def invoke(payload: list[Any]) -> Any:
            if across is not None and "/" in str(payload[0]):
                return await across(self.app, payload)
            return await local_invoke(payload)

        runtime.services["invoke"] = invoke

        async def guarded(payload: list[Any], caller: str | None) -> Any:
            kind, _, op, _ = payload
            quotas = self.quotas  # read per call: `squall quota` changes it live
            if (ACTIONS.get(kind, {}).get(op) == "write" and op != "delete"
                    and storage.over(quotas.storage_mb)):
                raise ServiceError({
                    "errorType": QuotaExceeded.code,
                    "errorMessage": f"app {self.app!r} uses {storage.used_mb:.1f} MB of its "
                                    f"{quotas.storage_mb} MB storage quota: delete data or "
                                    "raise the quota (squall quota)"})
            return await serve_state(payload, caller)

        self.stack.runtime.caller_services["state"] = guarded

    def provision(self, count: int) -> None:
        """Keep `count` warm workers for each HTTP function (an alias's provisioned
        concurrency); the function's own `provisioned` is the floor."""
        runtime = self.stack.runtime
        for name, pool in runtime.pools.items():
            base = runtime.configs[name]
            if base.kind == "http":
                pool.cfg = replace(base, provisioned=max(base.provisioned, count))
                runtime.replenish(pool)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> int:
        """Serve one request; returns the HTTP status sent (for the canary)."""
        status = 500

        async def capture(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.stack.gateway(scope, receive, capture)
        finally:
            self.leave(status < 500)
        return status

    async def invoke(self, function: str, data_json: str, trace: str | None) -> Any:
        """One invocation from another app (granted), like `app.invoke` from inside."""
        result = None
        try:
            result = await self.stack.runtime.invoke(function, "event", data_json, trace=trace)
            return result
        finally:
            self.leave(result is not None and result.ok)

    def enter(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def leave(self, ok: bool) -> None:
        self.inflight -= 1
        self.served += 1
        self.errors += not ok
        if self.inflight == 0:
            self._idle.set()

    def drain_timeout_s(self) -> float:
        timeouts = [cfg.timeout_s for cfg in self.stack.runtime.configs.values()]
        return max(timeouts, default=0.0) + DRAIN_GRACE_S

    async def drain_and_stop(self) -> None:
        self.draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), self.drain_timeout_s())
        except asyncio.TimeoutError:
            logs.event("version did not drain in time; stopping it", logging.WARNING,
                       app=self.app, version=self.version, inflight=self.inflight)
        await self.stack.stop()

    def state(self) -> dict[str, Any]:
        runtime = self.stack.runtime
        workers = sum(len(p.workers) for p in runtime.pools.values())
        zygote = runtime.zygote
        return {"version": self.version, "inflight": self.inflight, "served": self.served,
                "errors": self.errors, "workers": workers, "draining": self.draining,
                "zygote_pid": zygote.proc.pid if zygote and zygote.proc else None}


class AppHost:
    """One app on this node: its live versions and the routing over its aliases."""

    def __init__(self, name: str, quotas: Quotas, storage: StorageMeter,
                 clock: Callable[[], float] = time.time,
                 on_canary: Callable[[str, AliasRecord, str, CanaryMonitor], None] | None = None,
                 ) -> None:
        self.name = name
        self.quotas = quotas
        self.storage = storage
        self.clock = clock
        self.on_canary = on_canary  # (app, alias, "rollback" | "promote", counts): acts
        self.versions: dict[int, VersionHost] = {}
        self.aliases: dict[str, AliasRecord] = {}
        self._splitters: dict[str, Splitter] = {}
        self._monitors: dict[str, CanaryMonitor] = {}
        self.inflight = 0

    def set_aliases(self, aliases: list[AliasRecord]) -> None:
        old = self.aliases
        self.aliases = {a.name: a for a in aliases}
        for a in aliases:
            if old.get(a.name) != a:
                self._splitters[a.name] = Splitter(a.weights)
                self._monitors.pop(a.name, None)
                if a.canary is not None:
                    self._monitors[a.name] = CanaryMonitor(Canary(**a.canary))
        for gone in set(self._splitters) - set(self.aliases):
            self._splitters.pop(gone, None)
            self._monitors.pop(gone, None)

    def wanted(self) -> set[int]:
        """The versions some alias sends traffic to."""
        return {v for a in self.aliases.values() for v, w in a.weights.items() if w > 0}

    def provisioned(self, version: int) -> int:
        return max((a.provisioned for a in self.aliases.values()
                    if a.weights.get(version, 0) > 0), default=0)

    def route(self, alias: str) -> VersionHost:
        """The version for one request through `alias`, counted in flight (call `done`).
        Raises RouteError (a gateway error code and message) when there is none."""
        splitter = self._splitters.get(alias)
        if splitter is None:
            known = ", ".join(sorted(self.aliases)) or "none (deploy a version first)"
            raise RouteError("not_found", f"app {self.name!r} has no alias {alias!r}; its "
                             f"aliases: {known}")
        if self.inflight >= self.quotas.concurrency:
            raise RouteError("throttled", f"app {self.name!r} is at its concurrency quota of "
                             f"{self.quotas.concurrency} requests in flight")
        version = splitter.pick()
        host = self.versions.get(version)
        if host is None or host.draining:
            raise RouteError("unavailable", f"version {version} of app {self.name!r} is not "
                             "running on this node")
        host.enter()  # in the same step as the pick: a drain waits for this request
        self.inflight += 1
        return host

    def done(self, alias: str, host: VersionHost, ok: bool) -> None:
        self.inflight -= 1
        monitor = self._monitors.get(alias)
        if monitor is not None:
            monitor.observe(host.version, ok)
            self.judge(alias)

    async def __call__(self, alias: str, scope: dict, receive: Any, send: Any) -> None:
        try:
            host = self.route(alias)
        except RouteError as exc:
            await send_error(send, exc.code, errorMessage=str(exc))
            return
        status = 500
        try:
            status = await host(scope, receive, send)
        finally:
            self.done(alias, host, status < 500)

    async def invoke(self, function: str, data_json: str, trace: str | None,
                     alias: str = "prod") -> Any:
        host = self.route(alias)
        result = None
        try:
            result = await host.invoke(function, data_json, trace)
            return result
        finally:
            self.done(alias, host, result is not None and result.ok)

    def judge(self, alias: str) -> None:
        """Apply a canary verdict (also called by the server's timer for window ends)."""
        monitor = self._monitors.get(alias)
        if monitor is None:
            return
        verdict = monitor.verdict(self.clock())
        if verdict is not None and self.on_canary is not None:
            self._monitors.pop(alias, None)  # decided once; the server stores the result
            self.on_canary(self.name, self.aliases[alias], verdict, monitor)

    def monitor(self, alias: str) -> CanaryMonitor | None:
        return self._monitors.get(alias)


class RouteError(Exception):
    """No version can take the request: `code` is a gateway error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def send_error(send: Any, code: str, **detail: Any) -> None:
    rid = new_request_id()
    status, body = error_body(code, rid, **detail)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"x-request-id", rid.encode())]})
    await send({"type": "http.response.body", "body": body})
