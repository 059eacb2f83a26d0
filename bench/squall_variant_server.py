"""Squall's HTTP server with one part switched off, to attribute where warm-HTTP time goes.

Used by warm_http.py's extra configs (never by the headline comparison, which runs the
real `squall run`). Each variant is the programmatic path of src/squall/server.py with
one change made from the outside, without touching src/:

  quiet      the invocation log is kept (SQLite) but not echoed to stderr
             (ServeOptions.log_level="warning": `squall run` logs each invocation at info)
  norec      no invocation log at all: Runtime without on_result, no Recorder, no store
  norec-w2   norec, and at most 2 workers per function (the pool otherwise grows towards
             its default limit of 64 under c=64)

    python bench/squall_variant_server.py VARIANT APP --port P [--data-dir D]
"""

from __future__ import annotations

import argparse
import sys
import tempfile


async def serve_norec(app_ref: str, port: int, max_workers: int) -> None:
    import uvicorn

    from squall.gateway.admin import admin_app
    from squall.gateway.asgi import Gateway
    from squall.runtime.runtime import Runtime

    runtime = Runtime(app_ref, max_workers=max_workers)
    manifest = await runtime.start()
    admin = admin_app(lambda: {"manifest": runtime.manifest, "stats": runtime.stats()})
    gateway = Gateway(runtime, manifest, expose_errors=True, admin=admin)
    config = uvicorn.Config(gateway, host="127.0.0.1", port=port, http="httptools",
                            lifespan="off", access_log=False, log_config=None,
                            log_level="warning")
    server = uvicorn.Server(config)
    try:
        await server.serve()
    finally:
        await runtime.stop()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("variant", choices=["quiet", "norec", "norec-w2"])
    ap.add_argument("app")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--data-dir", default=None, help="for `quiet`: where the log store goes")
    args = ap.parse_args()

    import uvloop

    from squall.observe import logs
    from squall.runtime.loader import resolve_ref
    from squall.server import ServeOptions, run

    ref = resolve_ref(args.app)
    if args.variant == "quiet":
        data_dir = args.data_dir or tempfile.mkdtemp(prefix="squall-bench-quiet-")
        run(ref, ServeOptions(host="127.0.0.1", port=args.port, data_dir=data_dir,
                              log_level="warning"))
        return 0
    logs.setup("warning")
    workers = 2 if args.variant == "norec-w2" else 64
    uvloop.run(serve_norec(ref, args.port, workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
