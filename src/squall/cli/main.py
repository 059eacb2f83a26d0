"""`squall`: the command line (typer + rich).

Results go to stdout (JSON, for scripts), everything for people to stderr. A bad argument
or an app that cannot load is a message and exit code 2; a function that failed is exit 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..backends import StoreError, open_store, store_url_for_data_dir
from ..ops.functions import trigger_summary
from ..types import HttpRequest, InvocationResult

# The runtime (zygote client, adapters, metering) and each subsystem a command touches
# (brokers, workflow stores, secrets, schedules) are imported inside the commands that
# use them, so `squall --help` and a command start without loading the rest: typer only
# needs the signatures, which name cheap types. tests/test_cli_startup.py keeps it so.

cli = typer.Typer(
    name="squall",
    help="Squall: a serverless platform you run yourself.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def spinner(text: str) -> Any:
    """A status spinner on stderr when it is a terminal; nothing when it is a pipe or a
    file (a spinner's last frame could otherwise land in front of the next line, e.g.
    the REPORT line that scripts and tests read)."""
    return err.status(text, spinner="dots") if err.is_terminal else contextlib.nullcontext()

APP_HELP = "The app: a Python file (or directory with app.py) defining an App, or module:attr."
DATA_DIR_HELP = "Where the embedded store keeps its data."


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def _check_app(app: str) -> str:
    from ..runtime.loader import resolve_ref

    target = app.split(":", 1)[0]
    if (target.endswith(".py") or "/" in target) and not Path(target).exists():
        raise fail(f"no such app file: {target}")
    return resolve_ref(app)


BROKER_HELP = ("Shared broker for many nodes: postgresql://user@host/db or nats://host:4222 "
               "(default: the embedded SQLite file under --data-dir).")
STORE_HELP = ("Shared store for many nodes: postgresql://user@host/db "
              "(default: the embedded SQLite file under --data-dir).")
BROKER_SCHEMES = ("sqlite", "postgresql", "postgres", "nats", "tls")
STORE_SCHEMES = ("sqlite", "postgresql", "postgres")


def _check_url(option: str, url: str | None, schemes: tuple[str, ...]) -> None:
    if url is None:
        return
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in schemes or not rest:
        known = ", ".join(f"{s}://" for s in schemes if s not in ("postgres", "tls"))
        raise fail(f"{option} {url!r} is not a URL Squall can use: expected one of {known}")


MQTT_HELP = ("MQTT broker for @app.on_mqtt functions (default: $SQUALL_MQTT_URL or "
             "mqtt://127.0.0.1:1883).")
SMTP_PORT_HELP = ("Port of the SMTP server for @app.on_email functions, on 127.0.0.1 "
                  "(default: $SQUALL_SMTP_PORT or 2525).")


def _serve(app: str, port: int, host: str, data_dir: str, reload: bool, expose: bool, *,
           broker: str | None = None, store: str | None = None,
           node_id: str | None = None, mqtt: str | None = None,
           smtp_port: int | None = None) -> None:
    from ..server import ServeOptions, run

    ref = _check_app(app)
    if not 0 <= port <= 65535:
        raise fail(f"--port must be from 0 to 65535, got {port}")
    _check_url("--broker", broker, BROKER_SCHEMES)
    _check_url("--store", store, STORE_SCHEMES)
    _check_url("--mqtt", mqtt, ("mqtt", "mqtts", "tcp", "ssl"))
    if smtp_port is not None and not 0 <= smtp_port <= 65535:
        raise fail(f"--smtp-port must be from 0 to 65535, got {smtp_port}")
    from ..sources.ingress import IngressConfigError, IngressSettings

    try:  # --mqtt, --smtp-port and their SQUALL_* variables, before anything starts
        IngressSettings.from_env(mqtt_url=mqtt, smtp_port=smtp_port)
    except IngressConfigError as exc:
        raise fail(str(exc)) from None
    from ..dashboard.settings import DashboardConfigError, DashboardSettings

    try:  # SQUALL_DASHBOARD_*: checked before anything starts
        DashboardSettings.from_env()
    except DashboardConfigError as exc:
        raise fail(str(exc)) from None
    from ..observe.gauges import SamplerSettings
    from ..observe.live import ObserveSettings

    try:  # SQUALL_TRACE_*, SQUALL_LOG_RETENTION, SQUALL_GAUGE_*: before anything starts
        ObserveSettings.from_env()
        SamplerSettings.from_env()
    except ValueError as exc:
        raise fail(str(exc)) from None
    opts = ServeOptions(host=host, port=port, data_dir=data_dir, reload=reload,
                        expose_errors=expose, broker_url=broker, store_url=store,
                        node_id=node_id, mqtt_url=mqtt, smtp_port=smtp_port)
    with serving(host, port):
        run(ref, opts)


@contextlib.contextmanager
def serving(host: str, port: int) -> Iterator[None]:
    """What a serving command (run, dev, worker, server) says when it cannot serve: exit 2."""
    from ..backends import BrokerError
    from ..runtime.zygote_client import ZygoteError
    from ..security.secrets import SecretError

    try:
        yield
    except ZygoteError as exc:
        err.print(exc.detail or "", highlight=False, markup=False)
        raise fail(f"the app could not be loaded: {exc}") from None
    except (BrokerError, StoreError, ImportError) as exc:  # ImportError: an optional extra
        raise fail(str(exc)) from None
    except SecretError as exc:  # the secrets' master key (squall.security.shared_secrets)
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot serve on {host}:{port}: {exc}") from None
    except KeyboardInterrupt:
        pass


@cli.command()
def dev(
    app: str = typer.Argument(..., help=APP_HELP),
    port: int = typer.Option(8080, help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP),
    mqtt: Optional[str] = typer.Option(None, "--mqtt", help=MQTT_HELP),
    smtp_port: Optional[int] = typer.Option(None, "--smtp-port", help=SMTP_PORT_HELP),
) -> None:
    """Run the app with hot reload: edits take effect on the next request."""
    _serve(app, port, host, data_dir, reload=True, expose=True, mqtt=mqtt, smtp_port=smtp_port)


@cli.command()
def run(
    app: str = typer.Argument(..., help=APP_HELP),
    port: int = typer.Option(8080, help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP),
    expose_errors: bool = typer.Option(
        False, help="Put function error types and messages in HTTP error bodies."),
    broker: Optional[str] = typer.Option(None, envvar="SQUALL_BROKER", help=BROKER_HELP),
    store: Optional[str] = typer.Option(None, envvar="SQUALL_STORE", help=STORE_HELP),
    mqtt: Optional[str] = typer.Option(None, "--mqtt", help=MQTT_HELP),
    smtp_port: Optional[int] = typer.Option(None, "--smtp-port", help=SMTP_PORT_HELP),
) -> None:
    """Run the app without reload, for production."""
    _serve(app, port, host, data_dir, reload=False, expose=expose_errors, broker=broker,
           store=store, mqtt=mqtt, smtp_port=smtp_port)


@cli.command()
def worker(
    app: str = typer.Argument(..., help=APP_HELP),
    broker: str = typer.Option(..., envvar="SQUALL_BROKER", help=BROKER_HELP),
    store: str = typer.Option(..., envvar="SQUALL_STORE", help=STORE_HELP),
    port: int = typer.Option(8080, help="Port to serve HTTP on (every node may serve it)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    node_id: Optional[str] = typer.Option(
        None, envvar="SQUALL_NODE_ID", help="This node's name in leases and logs "
        "(default: host:pid:random)."),
    data_dir: str = typer.Option(".squall", help="Local scratch space of this node."),
    expose_errors: bool = typer.Option(
        False, help="Put function error types and messages in HTTP error bodies."),
    mqtt: Optional[str] = typer.Option(None, "--mqtt", help=MQTT_HELP),
    smtp_port: Optional[int] = typer.Option(None, "--smtp-port", help=SMTP_PORT_HELP),
) -> None:
    """Run one node of a cluster: any number of nodes on one broker and store share the
    queues, topics, bus rules, streams and schedules, and each serves HTTP. MQTT
    subscriptions are shared ($share/squall/...): each message goes to one node."""
    _serve(app, port, host, data_dir, reload=False, expose=expose_errors, broker=broker,
           store=store, node_id=node_id, mqtt=mqtt, smtp_port=smtp_port)


def _parse_data(data: Optional[str], data_file: Optional[Path]) -> Any:
    if data is not None and data_file is not None:
        raise fail("give --data or --data-file, not both")
    text = data
    if data_file is not None:
        try:
            text = data_file.read_text()
        except OSError as exc:
            raise fail(f"cannot read --data-file: {exc}") from None
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise fail(f"--data is not valid JSON: {exc}") from None


def _http_request(function: str, data: Any) -> HttpRequest:
    """An HTTP request from --data: {"method", "path", "query", "headers", "body"}."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise fail(f"function {function!r} is an HTTP function: --data must be an object like "
                   '{"method": "POST", "path": "/orders", "headers": {}, "body": {...}}')
    body = data.get("body", b"")
    if not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    headers = [(str(k).lower(), str(v)) for k, v in (data.get("headers") or {}).items()]
    return HttpRequest(
        method=str(data.get("method", "")).upper(), path=str(data.get("path", "")),
        query_string=str(data.get("query", "")), headers=headers, body=body,
        path_params={str(k): str(v) for k, v in (data.get("path_params") or {}).items()},
        route=str(data.get("route", "")), time_epoch_ms=int(time.time() * 1000),
    )


def _route_request(cfg: Any, req: HttpRequest) -> HttpRequest:
    """Fill path params and the route key by matching the path against the function's
    own routes, as the gateway would."""
    from dataclasses import replace

    from ..gateway.router import MethodNotAllowed, Router

    router = Router([(r.method, r.path, cfg.name) for r in cfg.routes])
    first = cfg.routes[0]
    if not req.method:
        req = replace(req, method="GET" if first.method == "ANY" else first.method)
    if not req.path:
        if "{" in first.path:
            raise fail(f"function {cfg.name!r} serves {first.path}: give the request path, "
                       'e.g. --data \'{"path": "..."}\'')
        req = replace(req, path=first.path)
    try:
        match = router.match(req.method, req.path)
    except MethodNotAllowed as exc:
        raise fail(f"function {cfg.name!r} does not serve {req.method} {req.path}; allowed: "
                   f"{', '.join(exc.allowed)}") from None
    if match is None:
        routes = ", ".join(f"{r.method} {r.path}" for r in cfg.routes)
        raise fail(f"function {cfg.name!r} does not serve {req.path}; its routes: {routes}")
    params = {**match.params, **req.path_params}
    return replace(req, path_params=params, route=req.route or match.target.route_key)


def _http_result_json(result: InvocationResult) -> dict[str, Any]:
    resp = result.value
    body = resp.body
    try:
        text, b64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        import base64

        text, b64 = base64.b64encode(body).decode(), True
    return {"statusCode": resp.status, "headers": dict(resp.headers), "body": text,
            "isBase64Encoded": b64}


async def _invoke(ref: str, function: str, data: Any, data_dir: str) -> InvocationResult:
    from ..runtime.adapters import http_request_to_wire
    from ..runtime.metering import Recorder
    from ..runtime.runtime import Runtime
    from .state import attach_state

    store = open_store(os.environ.get("SQUALL_STORE") or store_url_for_data_dir(data_dir))
    recorder = Recorder(store)
    runtime = Runtime(ref, on_result=recorder.add, provision=False)
    state = None
    try:
        with spinner("[dim]starting the app…[/]"):
            manifest = await runtime.start()
        recorder.app = manifest["app"]
        state = attach_state(runtime, manifest, data_dir)  # tables, cache, buckets
        if (manifest.get("workflows") or manifest.get("event_consumers")
                or manifest.get("state_machines")):
            from ..workflows.wiring import Orchestration  # workflows, ASL, the event store

            orchestration = Orchestration(data_dir, runtime.invoke, manifest)
            orchestration.attach_runtime(runtime.services)
        cfg = runtime.config(function)
        if cfg.kind == "http" and cfg.format == "native":
            req = _route_request(cfg, _http_request(function, data))
            result = await runtime.invoke(function, "http", http_request_to_wire(req))
        elif cfg.kind == "queue" and not (isinstance(data, dict) and "messages" in data):
            # one message, as if it had come from the queue
            batch = {"queue": cfg.queue.queue, "messages": [
                {"id": uuid.uuid4().hex, "body": json.dumps(data), "attributes": {},
                 "receive_count": 1, "sent_at": time.time()}]}
            result = await runtime.invoke(function, "event", json.dumps(batch))
        else:
            result = await runtime.invoke(function, "event", json.dumps(data))
        return result
    finally:
        await runtime.stop()
        if state is not None:
            state.close()
        await recorder.close()
        store.close()


@cli.command()
def invoke(
    app: str = typer.Argument(..., help=APP_HELP),
    function: str = typer.Argument(..., help="The function to run."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="The event, as JSON."),
    data_file: Optional[Path] = typer.Option(None, "--data-file", help="Read the event from a file."),
    data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP),
) -> None:
    """Run one function once: its result as JSON on stdout, a REPORT line on stderr."""
    import asyncio

    from ..runtime.runtime import UnknownFunction
    from ..runtime.zygote_client import ZygoteError

    ref = _check_app(app)
    payload = _parse_data(data, data_file)
    try:
        result = asyncio.run(_invoke(ref, function, payload, data_dir))
    except UnknownFunction as exc:
        raise fail(str(exc)) from None
    except ZygoteError as exc:
        err.print(exc.detail or "", highlight=False, markup=False)
        raise fail(f"the app could not be loaded: {exc}") from None
    except StoreError as exc:
        raise fail(str(exc)) from None
    if result.logs:
        sys.stderr.write(result.logs if result.logs.endswith("\n") else result.logs + "\n")
    if result.ok:
        if isinstance(result.value, str):
            sys.stdout.write(result.value + "\n")
        else:
            sys.stdout.write(json.dumps(_http_result_json(result)) + "\n")
    else:
        sys.stdout.write(json.dumps(result.error_payload()) + "\n")
    sys.stderr.write(result.report_line() + "\n")
    raise typer.Exit(0 if result.ok else 1)


async def _manifest(ref: str) -> dict[str, Any]:
    from ..runtime.zygote_client import ZygoteClient

    zygote = ZygoteClient(ref, on_exit=lambda pid, status: None)
    try:
        return await zygote.start()
    finally:
        await zygote.stop()


def load_manifest(app: str) -> dict[str, Any]:
    """Import the app in a zygote (never here) and return its manifest; exit 2 on failure."""
    import asyncio

    from ..runtime.zygote_client import ZygoteError

    ref = _check_app(app)
    try:
        with spinner("[dim]loading the app…[/]"):
            return asyncio.run(_manifest(ref))
    except ZygoteError as exc:
        err.print(exc.detail or "", highlight=False, markup=False)
        raise fail(f"the app could not be loaded: {exc}") from None


@cli.command()
def functions(
    app: str = typer.Argument(..., help=APP_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """List the app's functions, their triggers and settings."""
    manifest = load_manifest(app)
    if as_json:
        sys.stdout.write(json.dumps(manifest, indent=2) + "\n")
        return
    table = Table(title=f"app {manifest['app']}")
    for col in ("function", "trigger", "format", "memory", "timeout", "concurrency",
                "provisioned", "keep warm"):
        table.add_column(col, no_wrap=col in ("function", "trigger"))  # never cut a name
    for f in manifest["functions"]:
        table.add_row(
            f["name"], trigger_summary(f, manifest), f["format"], f"{f['memory_mb']} MB",
            f"{f['timeout_s']:g} s", str(f["concurrency"] or "-"), str(f["provisioned"]), f"{f['keep_warm_s']:g} s",
        )
    Console(width=None if sys.stdout.isatty() else 240).print(table)


from .logs import logs  # noqa: E402  (-f, --since, --level, --grep)

cli.command()(logs)

from .queues import dlq_cli, publish, replay, schedules, send  # noqa: E402
from .state import storage  # noqa: E402
from .check import check  # noqa: E402
from .workflows import signal, workflows_cli  # noqa: E402

cli.command()(send)
cli.command()(schedules)
cli.command()(publish)
cli.command()(replay)
cli.add_typer(dlq_cli, name="dlq")
cli.command()(storage)
cli.command()(check)
cli.add_typer(workflows_cli, name="workflows")
cli.command()(signal)

from .security import keys_cli, secrets_cli  # noqa: E402  (squall keys, squall secrets)

cli.add_typer(keys_cli, name="keys")
cli.add_typer(secrets_cli, name="secrets")

from .observe import register as _register_observe  # noqa: E402  (trace, costs, tune, …)

_register_observe(cli)

from . import platform as _platform  # noqa: E402  (squall server, deploy, ...)

for _command in (_platform.server, _platform.deploy, _platform.versions, _platform.alias,
                 _platform.rollback, _platform.apps, _platform.quota, _platform.grant,
                 _platform.delete):
    cli.command()(_command)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
