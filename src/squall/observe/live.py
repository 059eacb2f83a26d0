"""Observability of a running app: what the supervisor wires, in one place.

`Observability` holds the app's Metrics, Tracer and alert Evaluator and attaches them to
the runtime (results counted, invocations and hops traced), the gateway (a server span
per request), the workflow engine (a span per execution) and the admin API (`/metrics`).
server.py and the test harness need one call each. Settings come from the environment:

    SQUALL_TRACING=0        no spans (default on)
    SQUALL_TRACE_RESERVOIR  new traces recorded each second, whatever the rate (100)
    SQUALL_TRACE_SAMPLE     share of the new traces past the reservoir recorded (0.05)
    SQUALL_METRICS=0        no Prometheus registry (default on)
    SQUALL_LOG_RETENTION    e.g. 7d: invocations, output and spans older are deleted
    SQUALL_GAUGE_INTERVAL_S queue/DLQ/stream/workflow gauges stored every so often (60; 0 off)
    SQUALL_GAUGE_RETENTION  stored gauge samples older are deleted (7d)
    OTEL_EXPORTER_OTLP_ENDPOINT   also export spans over OTLP/HTTP (extra `otel`)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from . import logs
from .alerts import AlertEvaluator
from .cost import Pricing
from .gauges import (SAMPLER_LEASE, GaugeSample, GaugeSampler, SamplerSettings, read_gauges,
                     set_prometheus)
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .numbers import parse_duration_s
from .rules import AlertRule
from .traces import Tracer, WorkflowSpans

RETENTION_CHECK_S = 3600.0
ALERTS_LEASE = "alerts"  # one node of a cluster evaluates the rules
DEFAULT_RESERVOIR = 100  # new traces per second always recorded (per node)
DEFAULT_SAMPLE = 0.05  # and this share of the rest (AWS X-Ray's default rule: 1/s + 5 %)


@dataclass(frozen=True)
class ObserveSettings:
    tracing: bool = True
    metrics: bool = True
    retention_s: float | None = None
    otlp_endpoint: str | None = None
    sample: float = DEFAULT_SAMPLE
    reservoir: int = DEFAULT_RESERVOIR

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ObserveSettings:
        env = os.environ if env is None else env
        retention = env.get("SQUALL_LOG_RETENTION")
        try:
            retention_s = parse_duration_s(retention) if retention else None
        except ValueError as exc:
            raise ValueError(f"SQUALL_LOG_RETENTION: {exc}") from None
        try:
            sample = float(env.get("SQUALL_TRACE_SAMPLE", DEFAULT_SAMPLE))
            reservoir = int(env.get("SQUALL_TRACE_RESERVOIR", DEFAULT_RESERVOIR))
        except ValueError:
            raise ValueError("SQUALL_TRACE_SAMPLE must be a number 0..1 and "
                             "SQUALL_TRACE_RESERVOIR a whole number") from None
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"SQUALL_TRACE_SAMPLE must be 0..1, got {sample}")
        if reservoir < 0:
            raise ValueError(f"SQUALL_TRACE_RESERVOIR must be >= 0, got {reservoir}")
        return cls(sample=sample, reservoir=reservoir,
                   tracing=env.get("SQUALL_TRACING", "1") not in ("0", "false", "off"),
                   metrics=env.get("SQUALL_METRICS", "1") not in ("0", "false", "off"),
                   retention_s=retention_s,
                   otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None)


class Observability:
    def __init__(self, app: str, span_sink: Callable[[tuple], None],
                 settings: ObserveSettings | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings or ObserveSettings.from_env()
        self.app = app
        self.metrics = (Metrics(app, pricing=Pricing.from_env())  # SQUALL_PRICE_*
                        if self.settings.metrics else None)
        self.exporter = None
        if self.settings.tracing and self.settings.otlp_endpoint:
            from .otlp import OtlpExporter

            self.exporter = OtlpExporter(app, self.settings.otlp_endpoint)
        self.tracer = (Tracer(app, span_sink, exporter=self.exporter, clock=clock,
                              sample=self.settings.sample,
                              reservoir=self.settings.reservoir)
                       if self.settings.tracing else None)
        self.runtime: Any = None
        self.messaging: Any = None
        self.orchestration: Any = None
        self.store: Any = None  # a reading connection (alerts, retention)
        self.alerts: AlertEvaluator | None = None
        self.sampler: GaugeSampler | None = None
        self.sampling = SamplerSettings.from_env()  # a bad setting fails here, at start
        self._open_store: Callable[[], Any] = lambda: None
        self._tasks: list[asyncio.Task[None]] = []

    def attach(self, runtime: Any, *, gateway: Any = None, messaging: Any = None,
               orchestration: Any = None) -> None:
        self.runtime, self.messaging, self.orchestration = runtime, messaging, orchestration
        runtime.tracer = self.tracer
        if self.metrics is not None:
            runtime.observe_result = self.metrics.observe
        if gateway is not None:
            gateway.tracer = self.tracer
            if self.metrics is not None:
                gateway.metrics = self.metrics_endpoint
                counters = getattr(getattr(gateway, "security", None), "counters", None)
                if counters is not None:  # squall_gateway_requests_total{scope,outcome}
                    self.metrics.registry.register(counters)
        if orchestration is not None and self.tracer is not None:
            orchestration.engine.spans = WorkflowSpans(self.tracer)
            orchestration.machines.tracer = self.tracer  # (state machines' resume spans)

    # -- /metrics ----------------------------------------------------------------------

    async def scrape(self) -> bytes:
        if self.metrics is None:
            return b""
        try:
            await self.refresh()
        except Exception as exc:  # a broker hiccup must not hide the counters
            logs.event("metrics refresh failed", logging.WARNING, error=str(exc))
        return self.metrics.exposition()

    async def refresh(self, now: float | None = None) -> None:
        """Read the gauges: pools, queues and DLQs, stream iterators, workflows."""
        m = self.metrics
        assert m is not None
        now = time.time() if now is None else now
        if self.runtime is not None:
            for fn, pool in self.runtime.pools.items():
                stats = pool.stats()
                m.concurrent.labels(fn).set(stats["inflight"])
                m.workers.labels(fn).set(stats["workers"])
        set_prometheus(m, await self.read_gauges(now))

    async def read_gauges(self, now: float) -> list[GaugeSample]:
        return await read_gauges(self.messaging, self.orchestration, now)

    # -- alerts and retention ---------------------------------------------------------

    def start(self, open_store: Callable[[], Any], manifest: dict[str, Any]) -> None:
        """Evaluate the app's alert rules every SQUALL_ALERT_INTERVAL_S (30 s), store the
        gauges every SQUALL_GAUGE_INTERVAL_S (60 s) and apply the log retention every hour,
        on a store connection of their own."""
        self._open_store = open_store
        retention = self.settings.retention_s
        if retention is not None:
            self._tasks.append(asyncio.ensure_future(self._retention(retention)))
        sampling = self.sampling
        if sampling.interval_s > 0 and (self.messaging is not None
                                        or self.orchestration is not None):
            leases = getattr(self.messaging, "leases", None)
            self.sampler = GaugeSampler(
                self.app, self.read_gauges, self._reader(), sampling,
                leader=(lambda: leases.acquire(SAMPLER_LEASE)) if leases is not None else None)
            self._tasks.append(asyncio.ensure_future(self.sampler.run()))
        self.reconfigure(manifest)

    def reconfigure(self, manifest: dict[str, Any]) -> None:
        """The app's alert rules, again (a hot reload): states of kept rules carry on."""
        rules = [AlertRule.from_manifest(r) for r in manifest.get("alerts") or []]
        if self.alerts is not None:
            self.alerts.rules = rules
            return
        if not rules:
            return
        broker = self.messaging.broker if self.messaging is not None else None

        async def dlq_size(queue: str) -> int:
            return (await broker.stats(queue)).total if broker is not None else 0

        leases = getattr(self.messaging, "leases", None)
        self.alerts = AlertEvaluator(
            self.app, rules, self._reader(), dlq_size=dlq_size,
            invoke=self.runtime.invoke if self.runtime is not None else None,
            leader=(lambda: leases.acquire(ALERTS_LEASE)) if leases is not None else None)
        interval = float(os.environ.get("SQUALL_ALERT_INTERVAL_S", "30"))
        self._tasks.append(asyncio.ensure_future(self.alerts.run(interval)))

    def _reader(self) -> Any:
        if self.store is None:
            self.store = self._open_store()
        return self.store

    async def _retention(self, retention_s: float) -> None:
        while True:
            try:
                n = await asyncio.get_running_loop().run_in_executor(
                    None, self._reader().prune, self.app, time.time() - retention_s)
                logs.event("retention applied", app=self.app, deleted=n,
                           retention_s=retention_s)
            except Exception as exc:
                logs.event("retention failed", logging.ERROR, error=str(exc))
            await asyncio.sleep(RETENTION_CHECK_S)

    # -- GET /metrics ------------------------------------------------------------------

    async def metrics_endpoint(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            status, body, ctype = 405, json.dumps(
                {"message": "Method Not Allowed", "code": "method_not_allowed"}).encode(), \
                b"application/json"
        else:
            status, body, ctype = 200, await self.scrape(), CONTENT_TYPE_LATEST.encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        if self.exporter is not None:
            self.exporter.close()
        if self.store is not None:
            self.store.close()
            self.store = None
