"""One running app, wired: what `squall run` serves and what a platform version is.

    Runtime (zygote + pools) <- Gateway (raw ASGI)
        |  services: Messaging (queues, topics, bus), StateService (tables, cache, buckets),
        |            Orchestration (workflows, event store), AccessPolicy (uses=)
        +-> Recorder -> log writer process -> store

`squall run` (squall.server) starts one stack and puts uvicorn and the outside event
sources (MQTT, SMTP) around it; `squall server` (squall.platform) starts one stack per
live app version, each on its own data namespace, interpreter and zygote, and routes to
their gateways. The stack itself serves no port.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .backends import (broker_url_for_data_dir, open_broker, open_store,
                       store_url_for_data_dir)
from .gateway.admin import admin_app
from .gateway.asgi import Gateway
from .runtime.logwriter import ProcessLogSink
from .runtime.metering import Recorder
from .runtime.runtime import DEFAULT_MAX_WORKERS, Runtime
from .runtime.zygote_client import ZygoteClient
from .sources.access import AccessPolicy
from .sources.leases import DEFAULT_TTL_S
from .sources.messaging import Messaging
from .sources.state import StateService
from .sources.webhooks import Webhooks


class BackendUrls:
    """`store` and `broker` of an options dataclass with data_dir, store_url and
    broker_url: the shared backends when given, else the embedded files under data_dir."""

    data_dir: str
    store_url: str | None
    broker_url: str | None

    @property
    def store(self) -> str:
        return self.store_url or store_url_for_data_dir(self.data_dir)

    @property
    def broker(self) -> str:
        return self.broker_url or broker_url_for_data_dir(self.data_dir)


@dataclass(frozen=True)
class StackOptions(BackendUrls):
    data_dir: str = ".squall"
    broker_url: str | None = None  # distributed mode: shared backends
    store_url: str | None = None
    node_id: str | None = None
    max_workers: int = DEFAULT_MAX_WORKERS
    expose_errors: bool = True
    echo: str = "errors"  # which invocations also go to the structured log
    python: str | None = None  # the zygote's interpreter (a version's virtualenv)
    cwd: str | None = None  # the zygote's working directory


class AppStack:
    """Start every service of one app in order; `stop()` undoes it in reverse."""

    def __init__(self, app_ref: str, opts: StackOptions) -> None:
        self.app_ref = app_ref
        self.opts = opts
        self.manifest: dict[str, Any] = {}

    async def start(self, zygote: ZygoteClient | None = None) -> dict[str, Any]:
        """`zygote`: one already started on this app, taken over (else one is started)."""
        opts = self.opts
        store = open_store(opts.store)  # created and checked here
        store.close()
        from .security.stores import open_security  # keys, secrets: a bad master key stops
        # the node here, before anything starts (SecretKeyError names the fix)
        security = self.security = open_security(opts.data_dir, opts.store_url, check=True)
        broker = self.broker = open_broker(opts.broker)
        try:
            await broker.stats("_squall.health")  # reachable and usable, or fail fast
        except BaseException:
            await broker.close()
            security.close()
            raise
        sink = self.sink = ProcessLogSink(opts.store)
        recorder = self.recorder = Recorder(sink, echo=opts.echo)
        runtime = self.runtime = Runtime(self.app_ref, on_result=recorder.add,
                                         max_workers=opts.max_workers, python=opts.python,
                                         cwd=opts.cwd)
        try:
            self.manifest = manifest = await runtime.start(zygote)
        except BaseException:
            sink.close()
            await broker.close()
            security.close()
            raise
        recorder.app = manifest["app"]
        recorder.start()
        messaging = self.messaging = Messaging(  # SQUALL_LEASE_TTL_S: how soon a dead
            broker, runtime.invoke, node_id=opts.node_id,  # node's leases move (tests)
            lease_ttl_s=float(os.environ.get("SQUALL_LEASE_TTL_S", DEFAULT_TTL_S)))
        messaging.configure(runtime.configs, runtime.rules, runtime.subscriptions)
        runtime.services["send"] = lambda payload: messaging.send(*payload)
        runtime.services["invoke_async"] = lambda payload: messaging.invoke_async(*payload)
        runtime.services["publish"] = messaging.publish
        runtime.services["notify"] = messaging.notify
        runtime.services["idempotency"] = lambda payload: messaging.idempotency(*payload)
        runtime.services["put_records"] = lambda payload: messaging.put_records(*payload)
        state = self.state = StateService.for_data_dir(  # tables, cache, buckets
            opts.data_dir, store_url=opts.store_url, app=manifest["app"],
            cache_url=os.environ.get("SQUALL_CACHE_URL"))
        state.configure(manifest)
        state.attach(runtime.invoke, broker, runtime.configs, leases=messaging.leases)
        runtime.caller_services["state"] = state.serve
        policy = self.policy = AccessPolicy(runtime.configs)  # least privilege (uses=)
        runtime.authorize = policy.check_call
        state.policy = policy
        await messaging.start()
        await state.start()
        from .workflows.wiring import Orchestration  # durable workflows, the event store

        orchestration = self.orchestration = Orchestration(
            opts.data_dir, runtime.invoke, manifest, leases=messaging.leases,
            store_url=opts.store_url)
        orchestration.attach_runtime(runtime.services)
        orchestration.attach_messaging(messaging)  # async invocations hand over to executions
        await orchestration.start()
        webhooks = self.webhooks = Webhooks(messaging, runtime.configs)
        from .dashboard import dashboard_app  # the web UI at /_squall/

        admin = admin_app(lambda: {"manifest": runtime.manifest, "stats": runtime.stats()},
                          ingest=messaging.ingest_cloudevents, dashboard=dashboard_app(self))
        from .security.wiring import attach_security  # keys, secrets, redaction

        self.gateway = Gateway(runtime, manifest, expose_errors=opts.expose_errors,
                               admin=admin, webhooks=webhooks,
                               security=attach_security(runtime, manifest, opts.data_dir,
                                                        stores=security))
        from .observe.live import Observability  # metrics, traces, alerts, retention

        observe = self.observe = Observability(manifest["app"], recorder.add_span)
        observe.attach(runtime, gateway=self.gateway, messaging=messaging,
                       orchestration=orchestration)
        observe.start(lambda: open_store(opts.store), manifest)
        return manifest

    async def stop(self) -> None:
        await self.orchestration.stop()
        await self.messaging.stop()
        await self.state.stop()
        await self.runtime.stop()
        await self.observe.stop()
        self.state.close()
        self.security.close()
        self.orchestration.close()
        await self.broker.close()
        await self.recorder.close()
        self.sink.close()
