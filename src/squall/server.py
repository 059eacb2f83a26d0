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
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import uvicorn

from .backends import open_store, store_url_for_data_dir
from .gateway.admin import admin_app
from .gateway.asgi import Gateway
from .observe import logs
from .runtime.loader import resolve_ref, split_ref
from .runtime.metering import Recorder
from .runtime.runtime import DEFAULT_MAX_WORKERS, Runtime
from .runtime.zygote_client import ZygoteError


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = ".squall"
    reload: bool = False
    expose_errors: bool = True
    max_workers: int = DEFAULT_MAX_WORKERS
    log_level: str = "info"


def watch_root(app_ref: str) -> Path:
    target, _ = split_ref(resolve_ref(app_ref))
    path = Path(target)
    return path.parent if path.suffix == ".py" else Path.cwd()


async def serve(app_ref: str, opts: ServeOptions,
                on_ready: Callable[[int], None] | None = None) -> None:
    store = open_store(store_url_for_data_dir(opts.data_dir))
    recorder = Recorder(store, echo=True)
    runtime = Runtime(app_ref, on_result=recorder.add, max_workers=opts.max_workers)
    manifest = await runtime.start()
    recorder.app = manifest["app"]
    recorder.start()
    admin = admin_app(lambda: {"manifest": runtime.manifest, "stats": runtime.stats()})
    gateway = Gateway(runtime, manifest, expose_errors=opts.expose_errors, admin=admin)
    config = uvicorn.Config(
        gateway, host=opts.host, port=opts.port, http="httptools", lifespan="off",
        access_log=False, log_config=None, log_level="warning",
    )
    server = uvicorn.Server(config)
    watcher: asyncio.Task[None] | None = None
    if opts.reload:
        watcher = asyncio.ensure_future(_watch(app_ref, runtime, gateway))

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.01)
        port = opts.port
        for s in server.servers:
            for sock in s.sockets:
                port = sock.getsockname()[1]
        routes = [f"{m} {p}" for f in manifest["functions"] for m, p in f["routes"]]
        logs.event("listening", app=manifest["app"], url=f"http://{opts.host}:{port}",
                   functions=len(manifest["functions"]), routes=routes,
                   zygote_boot_ms=round(runtime.zygote.boot_ms if runtime.zygote else 0, 1),
                   pid=os.getpid(), data_dir=str(Path(opts.data_dir).resolve()))
        if on_ready is not None:
            on_ready(port)

    announcer = asyncio.ensure_future(announce())
    try:
        await server.serve()
    finally:
        announcer.cancel()
        if watcher is not None:
            watcher.cancel()
        await runtime.stop()
        await recorder.close()
        store.close()
        logs.event("stopped", app=manifest["app"])


async def _watch(app_ref: str, runtime: Runtime, gateway: Gateway) -> None:
    from watchfiles import PythonFilter, awatch

    root = watch_root(app_ref)
    async for changes in awatch(root, watch_filter=PythonFilter()):
        files = sorted({Path(p).name for _, p in changes})
        try:
            manifest = await runtime.reload()
        except ZygoteError as exc:
            logs.event("reload failed; still serving the previous version", logging.ERROR,
                       error=str(exc), detail=exc.detail, files=files)
            continue
        gateway.update(manifest)
        logs.event("reloaded", files=files, generation=runtime.generation,
                   functions=len(manifest["functions"]))


def run(app_ref: str, opts: ServeOptions, on_ready: Callable[[int], None] | None = None) -> None:
    import uvloop

    logs.setup(opts.log_level)
    uvloop.run(serve(app_ref, opts, on_ready))
