"""`squall keys create|list|revoke` and `squall secrets set|list|rm`.

Both work on the files under --data-dir (security/keys.json, security/secrets.*), so they
work whether or not the app is running; a running app sees a new or revoked key within a
second. A new key is printed once, on stdout; only its hash is stored. Secret values are
never printed: `list` shows names only.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..security.files import InsecureFile
from ..security.keys import KeyStore, KeyStoreError, UsagePlan
from ..security.secrets import SecretError, SecretStore

keys_cli = typer.Typer(help="API keys for routes declared with auth='api_key'.",
                       no_args_is_help=True)
secrets_cli = typer.Typer(help="Secrets, encrypted at rest, for functions that declare "
                          "secrets=[...].", no_args_is_help=True)
err = Console(stderr=True)
DATA_DIR_HELP = "Where the app keeps its state (as given to squall run)."


def _fail(message: str) -> typer.Exit:
    """A message on stderr and exit code 2 (printed literally: no rich markup)."""
    err.print(f"error: {message}", markup=False, highlight=False)
    return typer.Exit(2)


@keys_cli.command("create")
def keys_create(name: str = typer.Argument(..., help="Who or what the key is for."),
                rate: Optional[float] = typer.Option(None, help="Requests per second."),
                burst: Optional[int] = typer.Option(None, help="Burst above the rate."),
                quota: Optional[int] = typer.Option(None, help="Requests per UTC day."),
                data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP)) -> None:
    """Create a key with an optional usage plan; the key is printed once."""
    try:
        plain, key = KeyStore.for_data_dir(data_dir).create(name, UsagePlan(rate, burst, quota))
    except (KeyStoreError, InsecureFile) as exc:
        raise _fail(str(exc)) from None
    print(json.dumps({"key": plain, **key.public()}))
    err.print("Keep the key now: only its hash is stored. Send it as the x-api-key header.")


@keys_cli.command("list")
def keys_list(as_json: bool = typer.Option(False, "--json"),
              data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP)) -> None:
    """Keys (ids, names, plans, revoked or not); never the keys themselves."""
    try:
        keys = KeyStore.for_data_dir(data_dir).list()
    except KeyStoreError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        print(json.dumps([k.public() for k in keys]))
        return
    table = Table("id", "name", "created", "rate/s", "burst", "quota/day", "status")
    for k in keys:
        table.add_row(k.id, k.name,
                      dt.datetime.fromtimestamp(k.created, dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
                      *(str(v) if v is not None else "-" for v in
                        (k.plan.rate, k.plan.burst, k.plan.quota_per_day)),
                      "revoked" if k.revoked else "active")
    Console().print(table)


@keys_cli.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key's id (or the key)."),
                data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP)) -> None:
    """Revoke a key: refused from then on (within a second on a running app)."""
    try:
        key = KeyStore.for_data_dir(data_dir).revoke(key_id)
    except KeyStoreError as exc:
        raise _fail(str(exc)) from None
    print(json.dumps(key.public()))


@secrets_cli.command("set")
def secrets_set(name: str = typer.Argument(...),
                value: Optional[str] = typer.Argument(
                    None, help="The value; omit it to type it (hidden) or pipe it on stdin."),
                data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP)) -> None:
    """Store (or replace) a secret, encrypted under the data directory's key file."""
    if value is None:
        value = (typer.prompt(f"value of {name}", hide_input=True) if sys.stdin.isatty()
                 else sys.stdin.read().rstrip("\n"))
    if not value:
        raise _fail(f"secret {name!r}: the value is empty")
    try:
        SecretStore.for_data_dir(data_dir).set(name, value)
    except (SecretError, InsecureFile) as exc:
        raise _fail(str(exc)) from None
    err.print(f"secret {name!r} stored")


@secrets_cli.command("list")
def secrets_list(data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP)) -> None:
    """Secret names (never their values), one per line."""
    try:
        names = SecretStore.for_data_dir(data_dir).names()
    except (SecretError, InsecureFile) as exc:
        raise _fail(str(exc)) from None
    for n in names:
        print(n)


@secrets_cli.command("rm")
def secrets_rm(name: str = typer.Argument(...),
               data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP)) -> None:
    """Delete a secret."""
    try:
        SecretStore.for_data_dir(data_dir).remove(name)
    except (SecretError, InsecureFile) as exc:
        raise _fail(str(exc)) from None
    err.print(f"secret {name!r} removed")
