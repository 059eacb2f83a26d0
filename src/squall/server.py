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
import contextlib
import gc
import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import uvicorn

from .backends import redact_url
from .observe import logs
from .runtime.loader import resolve_ref, split_ref
from .runtime.runtime import DEFAULT_MAX_WORKERS
from .runtime.zygote_client import ZygoteError
from .sources.ingress import Ingress, IngressSettings
from .stack import AppStack, BackendUrls, StackOptions


@dataclass(frozen=True)
class ServeOptions(BackendUrls):
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



@contextlib.contextmanager
def graceful_sigterm(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM stops the server and then runs the shutdown (stacks, zygotes, log writers).
    uvicorn catches the signal, shuts itself down and raises it again for the handler it
    found; with the default one the process died there, before any `finally` ran."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only (tests run servers on threads)
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: stop())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def uvicorn_server(app: Any, host: str, port: int) -> uvicorn.Server:
    """uvicorn on httptools with its own logging off (ours is structured). Everything built
    so far lives as long as the server: the collector is kept off it (gc.freeze)."""
    gc.collect()
    gc.freeze()
    return uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, http="httptools", lifespan="off", access_log=False,
        log_config=None, log_level="warning"))


async def listening_port(server: uvicorn.Server) -> int | None:
    """The port uvicorn bound, once it listens; None if it exits first."""
    while not server.started:  # uvicorn offers no event for this
        if server.should_exit:
            return None
        await asyncio.sleep(0.005)
    return next((sock.getsockname()[1] for s in server.servers for sock in s.sockets), None)


def watch_root(app_ref: str) -> Path:
    target, _ = split_ref(resolve_ref(app_ref))
    path = Path(target)
    return path.parent if path.suffix == ".py" else Path.cwd()


class Serving:
    """Serves an ASGI app on uvicorn until `stop()` (or SIGTERM), then returns; once it
    listens, `port` is the bound port, `announce()` logs it and `started` is set."""

    port: int
    started: asyncio.Event
    _server: uvicorn.Server | None = None

    async def serve_until_stopped(self, app: Any, host: str, port: int) -> None:
        server = self._server = uvicorn_server(app, host, port)
        announcer = asyncio.ensure_future(self._announce(server))
        try:
            with graceful_sigterm(self.stop):
                await server.serve()
        finally:
            announcer.cancel()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    async def _announce(self, server: uvicorn.Server) -> None:
        port = await listening_port(server)
        if port is None:
            return
        self.port = port
        self.announce()
        self.started.set()

    def announce(self) -> None:
        raise NotImplementedError


class Supervisor(Serving):
    """Start, serve until told to stop, shut down in order."""

    def __init__(self, app_ref: str, opts: ServeOptions) -> None:
        self.app_ref = app_ref
        self.opts = opts
        self.port = opts.port
        self.manifest: dict[str, Any] = {}
        self.started = asyncio.Event()
        self.reloaded = asyncio.Event()  # set after each successful hot reload
        self.reload_failed = asyncio.Event()  # set after each failed one

    async def run(self) -> None:
        opts = self.opts
        stack = self.stack = AppStack(self.app_ref, StackOptions(
            data_dir=opts.data_dir, broker_url=opts.broker_url, store_url=opts.store_url,
            node_id=opts.node_id, max_workers=opts.max_workers,
            expose_errors=opts.expose_errors, echo="all" if opts.reload else "errors"))
        self.manifest = manifest = await stack.start()
        self.runtime, self.messaging, self.state = stack.runtime, stack.messaging, stack.state
        self.policy, self.orchestration = stack.policy, stack.orchestration
        self.webhooks, self.gateway = stack.webhooks, stack.gateway
        ingress = self.ingress = Ingress(  # MQTT subscriptions, SMTP server
            stack.broker, stack.state, stack.runtime.configs, IngressSettings.from_env(
                mqtt_url=opts.mqtt_url, smtp_port=opts.smtp_port,
                shared=opts.broker_url is not None),
            app=manifest["app"], node_id=stack.messaging.node_id)
        try:
            await ingress.start()
        except BaseException:
            await stack.stop()
            raise
        # collect the young generation less often (fewer pauses on the request path)
        gc.set_threshold(20_000, 20, 20)
        watcher = asyncio.ensure_future(self._watch()) if opts.reload else None
        try:
            await self.serve_until_stopped(self.gateway, opts.host, opts.port)
        finally:
            if watcher is not None:
                watcher.cancel()
            await ingress.stop()
            await stack.stop()
            logs.event("stopped", app=manifest["app"])

    def announce(self) -> None:
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
            self.stack.observe.reconfigure(manifest)  # alert rules
            self.webhooks.configure(self.runtime.configs)
            await self.ingress.reconfigure(self.runtime.configs)
            logs.event("reloaded", files=files, generation=self.runtime.generation,
                       functions=len(manifest["functions"]))
            self.reloaded.set()


def run(app_ref: str, opts: ServeOptions) -> None:
    import uvloop

    logs.setup(opts.log_level)
    uvloop.run(Supervisor(app_ref, opts).run())
