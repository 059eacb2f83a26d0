"""The supervisor: one asyncio process that runs the gateway, the runtime and the log.

    Runtime (zygote + pools)  <-  Gateway (raw ASGI on uvicorn)  <-  clients
          |
          +-> Recorder -> store (SQLite under --data-dir)

User code never runs here: the zygote imports the app and hands back its manifest.
`squall dev` adds hot reload: on a file change a new zygote imports the new code, and
only if that works are the routes and pools swapped.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from .backends import (broker_url_for_data_dir, open_broker, open_store, redact_url,
                       store_url_for_data_dir)
from .gateway.admin import admin_app
from .gateway.asgi import Gateway
from .observe import logs
from .runtime.loader import resolve_ref, split_ref
from .runtime.logwriter import ProcessLogSink
from .runtime.metering import Recorder
from .runtime.runtime import DEFAULT_MAX_WORKERS, Runtime
from .runtime.zygote_client import ZygoteError
from .sources.access import AccessPolicy
from .sources.ingress import Ingress, IngressSettings
from .sources.leases import DEFAULT_TTL_S
from .sources.messaging import Messaging
from .sources.state import StateService
from .sources.webhooks import Webhooks


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = ".squall"
    reload: bool = False
    expose_errors: bool = True
    max_workers: int = DEFAULT_MAX_WORKERS
    log_level: str = "info"
    # distributed mode: shared backends instead of the embedded files under data_dir
    broker_url: str | None = None
    store_url: str | None = None
    node_id: str | None = None
    # event sources from outside (None: SQUALL_MQTT_URL / SQUALL_SMTP_PORT, or defaults)
    mqtt_url: str | None = None
    smtp_port: int | None = None

    @property
    def store(self) -> str:
        return self.store_url or store_url_for_data_dir(self.data_dir)

    @property
    def broker(self) -> str:
        return self.broker_url or broker_url_for_data_dir(self.data_dir)


def watch_root(app_ref: str) -> Path:
    target, _ = split_ref(resolve_ref(app_ref))
    path = Path(target)
    return path.parent if path.suffix == ".py" else Path.cwd()


class Supervisor:
    """Start, serve until told to stop, shut down in order."""

    def __init__(self, app_ref: str, opts: ServeOptions) -> None:
        self.app_ref = app_ref
        self.opts = opts
        self.port = opts.port
        self.manifest: dict[str, Any] = {}
        self.started = asyncio.Event()
        self.reloaded = asyncio.Event()  # set after each successful hot reload
        self.reload_failed = asyncio.Event()  # set after each failed one
        self._server: uvicorn.Server | None = None

    async def run(self) -> None:
        opts = self.opts
        store = open_store(opts.store)  # created and checked here
        store.close()
        broker = open_broker(opts.broker)
        try:
            await broker.stats("_squall.health")  # reachable and usable, or fail fast
        except BaseException:
            await broker.close()
            raise
        sink = ProcessLogSink(opts.store)
        recorder = Recorder(sink, echo="all" if opts.reload else "errors")
        runtime = Runtime(self.app_ref, on_result=recorder.add, max_workers=opts.max_workers)
        self.runtime = runtime
        try:
            self.manifest = manifest = await runtime.start()
        except BaseException:
            sink.close()
            await broker.close()
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
        await orchestration.start()
        ingress = self.ingress = Ingress(  # MQTT subscriptions, SMTP server
            broker, state, runtime.configs, IngressSettings.from_env(
                mqtt_url=opts.mqtt_url, smtp_port=opts.smtp_port,
                shared=opts.broker_url is not None),
            app=manifest["app"], node_id=messaging.node_id)
        await ingress.start()
        webhooks = self.webhooks = Webhooks(messaging, runtime.configs)
        admin = admin_app(lambda: {"manifest": runtime.manifest, "stats": runtime.stats()},
                          ingest=messaging.ingest_cloudevents)
        gateway = Gateway(runtime, manifest, expose_errors=opts.expose_errors, admin=admin,
                          webhooks=webhooks)
        self.gateway = gateway
        # Everything built so far lives as long as the server: keep the collector off it,
        # and collect the young generation less often (fewer pauses on the request path).
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        config = uvicorn.Config(
            gateway, host=opts.host, port=opts.port, http="httptools", lifespan="off",
            access_log=False, log_config=None, log_level="warning",
        )
        server = self._server = uvicorn.Server(config)
        watcher = asyncio.ensure_future(self._watch()) if opts.reload else None
        announcer = asyncio.ensure_future(self._announce(server))
        try:
            await server.serve()
        finally:
            announcer.cancel()
            if watcher is not None:
                watcher.cancel()
            await orchestration.stop()
            await ingress.stop()
            await messaging.stop()
            await state.stop()
            await runtime.stop()
            state.close()
            orchestration.close()
            await broker.close()
            await recorder.close()
            sink.close()
            logs.event("stopped", app=manifest["app"])

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    async def _announce(self, server: uvicorn.Server) -> None:
        while not server.started:  # uvicorn offers no event for this
            if server.should_exit:
                return
            await asyncio.sleep(0.005)
        for s in server.servers:
            for sock in s.sockets:
                self.port = sock.getsockname()[1]
        m = self.manifest
        routes = [f"{meth} {p}" for f in m["functions"] for meth, p in f["routes"]]
        zygote = self.runtime.zygote
        where: dict[str, Any] = (
            {"broker": redact_url(self.opts.broker), "store": redact_url(self.opts.store)}
            if self.opts.broker_url or self.opts.store_url
            else {"data_dir": str(Path(self.opts.data_dir).resolve())})
        logs.event("listening", app=m["app"], url=f"http://{self.opts.host}:{self.port}",
                   functions=len(m["functions"]), routes=routes,
                   zygote_boot_ms=round(zygote.boot_ms if zygote else 0, 1), pid=os.getpid(),
                   node=self.messaging.node_id, **where)
        self.started.set()

    async def _watch(self) -> None:
        from watchfiles import PythonFilter, awatch

        root = watch_root(self.app_ref)
        async for changes in awatch(root, watch_filter=PythonFilter(), debounce=200, step=20):
            files = sorted({Path(p).name for _, p in changes})
            try:
                manifest = await self.runtime.reload()
            except ZygoteError as exc:
                logs.event("reload failed; still serving the previous version", logging.ERROR,
                           error=str(exc), detail=exc.detail, files=files)
                self.reload_failed.set()
                continue
            self.manifest = manifest
            self.gateway.update(manifest)
            await self.messaging.reconfigure(self.runtime.configs, self.runtime.rules,
                                             self.runtime.subscriptions)
            await self.state.reconfigure(manifest, self.runtime.configs)
            self.policy.configure(self.runtime.configs)
            self.orchestration.reconfigure(manifest)
            self.webhooks.configure(self.runtime.configs)
            await self.ingress.reconfigure(self.runtime.configs)
            logs.event("reloaded", files=files, generation=self.runtime.generation,
                       functions=len(manifest["functions"]))
            self.reloaded.set()


def run(app_ref: str, opts: ServeOptions) -> None:
    import uvloop

    logs.setup(opts.log_level)
    uvloop.run(Supervisor(app_ref, opts).run())
