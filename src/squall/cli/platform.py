"""`squall server` and the commands that talk to one: deploy, versions, alias, rollback,
apps, quota, delete. Results go to stdout as JSON with --json (tables otherwise); a bad
argument, a refused request or an unreachable server is a message and exit code 2."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.console import Console
from rich.table import Table


def fail(message: str, code: int = 2) -> typer.Exit:
    from .main import fail as main_fail  # at call time: main imports this module

    return main_fail(message, code)


def _err() -> Console:
    from .main import err

    return err


SERVER_HELP = "The squall server's URL (default: $SQUALL_SERVER or http://127.0.0.1:8080)."
TOKEN_FILE_HELP = ("A file holding the admin token, mode 0600 (default: $SQUALL_ADMIN_TOKEN, "
                   "else .squall/admin-token when it exists).")
ALIAS_HELP = "The alias to move (requests to /NAME/ go through `prod`; /NAME@ALIAS/ to others)."


def _client(server: Optional[str], token_file: Optional[Path]) -> Any:
    from ..platform.client import DEFAULT_SERVER, ControlClient
    from ..platform.server import TOKEN_ENV, TokenError, check_token, read_token_file

    try:
        if token_file is not None:
            token = read_token_file(token_file)
        elif os.environ.get(TOKEN_ENV):
            token = check_token(os.environ[TOKEN_ENV], f"${TOKEN_ENV}")
        elif Path(".squall/admin-token").exists():
            token = read_token_file(".squall/admin-token")
        else:
            raise TokenError(f"no admin token: set ${TOKEN_ENV} or pass --token-file")
    except TokenError as exc:
        raise fail(str(exc)) from None
    return ControlClient(server or os.environ.get("SQUALL_SERVER") or DEFAULT_SERVER, token)


def _call(client: Any, method: str, path: str, **kw: Any) -> Any:
    from ..platform.client import ControlError

    try:
        return client.call(method, path, **kw)
    except ControlError as exc:
        if exc.detail:
            _err().print(exc.detail, highlight=False, markup=False)
        raise fail(str(exc)) from None


def _out(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)  # pragma: no cover


def server(
    port: int = typer.Option(8080, help="Port for the apps' routes and the control API."),
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    data_dir: str = typer.Option(".squall", help="Registry, packages, virtualenvs, app data."),
    admin_token_file: Optional[Path] = typer.Option(
        None, help="The admin token, in a file of mode 0600 (default: $SQUALL_ADMIN_TOKEN, "
        "else DATA_DIR/admin-token, generated on first start)."),
    venv_cache: Optional[str] = typer.Option(
        None, help="Where virtualenvs are built and shared (default: DATA_DIR/venvs)."),
    pip_find_links: List[str] = typer.Option(
        [], "--pip-find-links", help="A directory or URL of wheels for pip (repeatable)."),
    pip_no_index: bool = typer.Option(False, help="Install only from --pip-find-links."),
    expose_errors: bool = typer.Option(
        False, help="Put function error types and messages in HTTP error bodies."),
    store: Optional[str] = typer.Option(
        None, envvar="SQUALL_STORE", help="Distributed mode: the registry and every app's "
        "data in PostgreSQL (postgresql://…?schema=NAME), shared by all nodes."),
    broker: Optional[str] = typer.Option(
        None, envvar="SQUALL_BROKER", help="Distributed mode: the apps' queues, topics and "
        "streams (postgresql://… or nats://…)."),
    node_id: Optional[str] = typer.Option(
        None, envvar="SQUALL_NODE_ID", help="This node's name in `squall apps`."),
) -> None:
    """Run the platform: host every deployed app under /NAME/ on one port."""
    from ..platform import server as srv
    from ..platform.service import PlatformOptions
    from .main import BROKER_SCHEMES, _check_url

    if not 0 <= port <= 65535:
        raise fail(f"--port must be from 0 to 65535, got {port}")
    _check_url("--store", store, ("postgresql", "postgres"))
    _check_url("--broker", broker, BROKER_SCHEMES)
    if (store is None) != (broker is None):
        raise fail("distributed mode needs both --store and --broker (or neither)")
    try:
        token = srv.server_token(data_dir, str(admin_token_file) if admin_token_file else None)
    except srv.TokenError as exc:
        raise fail(str(exc)) from None
    pip_args: list[str] = ["--no-index"] if pip_no_index else []
    for link in pip_find_links:
        pip_args += ["--find-links", link]
    opts = PlatformOptions(data_dir=data_dir, venv_cache=venv_cache, pip_args=tuple(pip_args),
                           expose_errors=expose_errors, store_url=store, broker_url=broker,
                           node_id=node_id)
    from .main import serving

    with serving(host, port):
        srv.run(opts, token, host, port)


def deploy(
    app_dir: Path = typer.Argument(..., help="A directory with app.py and, optionally, "
                                   "requirements.txt."),
    name: Optional[str] = typer.Option(None, "--name", help="The app's name on the server "
                                       "(default: the directory's name)."),
    alias: str = typer.Option("prod", help=ALIAS_HELP),
    no_activate: bool = typer.Option(False, help="Register the version; move no alias."),
    canary: Optional[int] = typer.Option(
        None, min=1, max=99, help="Send this percent to the new version, the rest to the "
        "alias's current one, and roll back automatically if it fails."),
    canary_window: Optional[float] = typer.Option(None, help="Seconds until the canary is "
                                                  "promoted to 100 % (default 300)."),
    max_error_rate: Optional[float] = typer.Option(None, help="Roll back past this error "
                                                   "rate (default 0.05)."),
    min_requests: Optional[int] = typer.Option(None, help="Judge only after this many "
                                               "requests to the new version (default 10)."),
    description: str = typer.Option("", help="A note kept with the version."),
    server: Optional[str] = typer.Option(None, "--server", help=SERVER_HELP),
    token_file: Optional[Path] = typer.Option(None, help=TOKEN_FILE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the version as JSON."),
) -> None:
    """Package APP_DIR, upload it, and activate it as a new immutable version."""
    from ..platform.package import PackageError, pack

    if not app_dir.is_dir():
        raise fail(f"no such app directory: {app_dir}")
    app = name or re.sub(r"[^a-z0-9-]+", "-", app_dir.resolve().name.lower()).strip("-")
    client = _client(server, token_file)
    try:
        package = pack(app_dir)
    except PackageError as exc:
        raise fail(str(exc)) from None
    query = {"alias": "" if no_activate else alias, "description": description,
             "canary": canary, "window_s": canary_window, "max_error_rate": max_error_rate,
             "min_requests": min_requests}
    t0 = time.monotonic()
    with _err().status(f"[dim]uploading {_size(package.size_bytes)}, building {app}…[/]",
                    spinner="dots"):
        info = _call(client, "POST", f"/apps/{app}/versions", body=package.data, query=query)
    if as_json:
        _out(info)
        return
    sys.stdout.write(f"{app} version {info['version']}\n")
    built = (f"built in {info['venv_build_ms']:.0f} ms" if info["venv_build_ms"]
             else "cached")
    _err().print(f"[green]deployed[/] {app} version {info['version']} in "
              f"{time.monotonic() - t0:.1f} s: package {_size(info['package_bytes'])} "
              f"({_size(info['unpacked_bytes'])} unpacked), dependencies "
              f"{_size(info['venv_bytes'])} (virtualenv {info['venv']}, "
              f"{built}), "
              f"import {info['import_ms']:.0f} ms", highlight=False)


def versions(
    name: str = typer.Argument(..., help="The app."),
    server: Optional[str] = typer.Option(None, "--server", help=SERVER_HELP),
    token_file: Optional[Path] = typer.Option(None, help=TOKEN_FILE_HELP),
    as_json: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """List an app's versions with what each costs and which aliases point at it."""
    rows = _call(_client(server, token_file), "GET", f"/apps/{name}/versions")["versions"]
    if as_json:
        _out(rows)
        return
    table = Table(title=f"app {name}")
    for col in ("version", "aliases", "created", "package", "dependencies", "import",
                "functions", "description"):
        table.add_column(col)
    for v in rows:
        table.add_row(str(v["version"]), ", ".join(f"{a} {w}%" for a, w in v["aliases"].items()),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(v["created_at"])),
                      _size(v["package_bytes"]), _size(v["venv_bytes"]),
                      f"{v['import_ms']:.0f} ms", str(len(v["functions"])), v["description"])
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def alias(
    name: str = typer.Argument(..., help="The app."),
    alias_name: str = typer.Argument(..., metavar="ALIAS", help="e.g. prod"),
    weights: str = typer.Argument(..., help="A version (7) or weighted versions (7:90,8:10)."),
    canary_window: Optional[float] = typer.Option(
        None, help="Make the split a canary: promote the newer version after this many "
        "seconds, roll back if its error rate passes --max-error-rate."),
    max_error_rate: Optional[float] = typer.Option(None, help="The canary's bound (0.05)."),
    min_requests: Optional[int] = typer.Option(None, help="The canary's minimum sample (10)."),
    provisioned: Optional[int] = typer.Option(
        None, min=0, help="Warm workers per HTTP function of the versions it points at."),
    server: Optional[str] = typer.Option(None, "--server", help=SERVER_HELP),
    token_file: Optional[Path] = typer.Option(None, help=TOKEN_FILE_HELP),
) -> None:
    """Point an alias at a version, or split its traffic (optionally as a canary)."""
    canary = None
    if canary_window is not None or max_error_rate is not None or min_requests is not None:
        canary = {"window_s": canary_window, "max_error_rate": max_error_rate,
                  "min_requests": min_requests}
    _out(_call(_client(server, token_file), "PUT", f"/apps/{name}/aliases/{alias_name}",
               json_body={"weights": weights, "canary": canary, "provisioned": provisioned}))


def rollback(
    name: str = typer.Argument(..., help="The app."),
    version: Optional[int] = typer.Argument(None, help="The version to go back to "
                                            "(default: the one before the last change)."),
    alias_name: str = typer.Option("prod", "--alias", help=ALIAS_HELP),
    server: Optional[str] = typer.Option(None, "--server", help=SERVER_HELP),
    token_file: Optional[Path] = typer.Option(None, help=TOKEN_FILE_HELP),
) -> None:
    """Point the alias back at an earlier version (in-flight requests finish first)."""
    _out(_call(_client(server, token_file), "POST", f"/apps/{name}/rollback",
               json_body={"alias": alias_name, "version": version}))


def apps(
    server: Optional[str] = typer.Option(None, "--server", help=SERVER_HELP),
    token_file: Optional[Path] = typer.Option(None, help=TOKEN_FILE_HELP),
    as_json: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """List the deployed apps, their aliases, and what runs of each on the node."""
    rows = _call(_client(server, token_file), "GET", "/apps")["apps"]
    if as_json:
        _out(rows)
        return
    table = Table(title="apps")
    for col in ("app", "versions", "aliases", "running here", "workers", "in flight",
                "storage", "nodes"):
        table.add_column(col)
    for a in rows:
        aliases = "; ".join(f"{n}={v['weights']}" + (" (canary)" if v["canary"] else "")
                            for n, v in a["aliases"].items())
        running = a["node"]["running"]
        table.add_row(a["name"], str(a["versions"]), aliases,
                      ", ".join(str(r["version"]) for r in running) or "-",
                      str(sum(r["workers"] for r in running)), str(a["node"]["inflight"]),
                      _size(a["storage_bytes"]), ", ".join(
                          f"{node}: {','.join(str(r['version']) for r in n['running']) or '-'}"
                          for node, n in sorted(a["nodes"].items())))
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def quota(
    name: str = typer.Argument(..., help="The app."),
    concurrency: Optional[int] = typer.Option(None, help="Requests in flight."),
    memory_mb: Optional[int] = typer.Option(None, help="Largest memory_mb of a function."),
    storage_mb: Optional[int] = typer.Option(None, help="Data namespace size."),
    max_workers: Optional[int] = typer.Option(None, help="Warm workers per function."),
    server: Optional[str] = typer.Option(None, "--server", help=SERVER_HELP),
    token_file: Optional[Path] = typer.Option(None, help=TOKEN_FILE_HELP),
) -> None:
    """Show or change an app's quotas."""
    changes = {k: v for k, v in dict(concurrency=concurrency, memory_mb=memory_mb,
                                     storage_mb=storage_mb, max_workers=max_workers).items()
               if v is not None}
    _out(_call(_client(server, token_file), "PUT", f"/apps/{name}/quotas", json_body=changes))


def grant(
    name: str = typer.Argument(..., help="The app whose functions may be invoked."),
    caller: str = typer.Argument(..., help="The app that may invoke them."),
    functions: List[str] = typer.Argument(None, help="Function names (none: all of them)."),
    revoke: bool = typer.Option(False, help="Take the grant back."),
    server: Optional[str] = typer.Option(None, "--server", help=SERVER_HELP),
    token_file: Optional[Path] = typer.Option(None, help=TOKEN_FILE_HELP),
) -> None:
    """Let CALLER's functions invoke NAME's: app.invoke("NAME/FUNCTION", data)."""
    client = _client(server, token_file)
    if revoke:
        _out(_call(client, "DELETE", f"/apps/{name}/grants/{caller}"))
        return
    _out(_call(client, "PUT", f"/apps/{name}/grants/{caller}",
               json_body={"functions": list(functions or []) or ["*"]}))


def delete(
    name: str = typer.Argument(..., help="The app."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask."),
    server: Optional[str] = typer.Option(None, "--server", help=SERVER_HELP),
    token_file: Optional[Path] = typer.Option(None, help=TOKEN_FILE_HELP),
) -> None:
    """Delete an app: its versions, aliases and data namespace (after in-flight requests)."""
    if not yes and not typer.confirm(f"delete app {name!r} with all its data?", err=True):
        raise fail("not deleted")
    _out(_call(_client(server, token_file), "DELETE", f"/apps/{name}"))
