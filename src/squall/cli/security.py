"""`squall keys create|list|revoke` and `squall secrets set|list|rm|keygen`.

Both work on the files under --data-dir (security/keys.json, security/secrets.*), or,
with --store / SQUALL_STORE, on the app store the nodes of a cluster share (its
security_* tables: squall.security.stores), so they work whether or not the app is
running; a running app sees a new or revoked key within a second, on every node. A new
key is printed once, on stdout; only its hash is stored. Secret values are never
printed: `list` shows names only. With a shared store, secrets are encrypted under the
master key in SQUALL_SECRETS_KEY or a key file (--key-file / SQUALL_SECRETS_KEY_FILE),
the same on every node; `keygen` makes one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # the stores (and cryptography) are imported by the commands
    from ..security.stores import SecurityStores

keys_cli = typer.Typer(help="API keys for routes declared with auth='api_key'.",
                       no_args_is_help=True)
secrets_cli = typer.Typer(help="Secrets, encrypted at rest, for functions that declare "
                          "secrets=[...].", no_args_is_help=True)
err = Console(stderr=True)
DATA_DIR_HELP = "Where the app keeps its state (as given to squall run)."
STORE_HELP = ("The app store the nodes share (as given to squall worker: postgresql://…"
              "?schema=NAME or sqlite:///path); unset: the files under --data-dir.")
KEY_FILE_HELP = ("With --store: the file holding the secrets' master key (default: "
                 "SQUALL_SECRETS_KEY_FILE, else the key in SQUALL_SECRETS_KEY).")


def _fail(message: str) -> typer.Exit:
    """A message on stderr and exit code 2 (printed literally: no rich markup)."""
    err.print(f"error: {message}", markup=False, highlight=False)
    return typer.Exit(2)


@contextlib.contextmanager
def _stores(data_dir: str, store: str | None,
            key_file: str | None = None) -> Iterator[SecurityStores]:
    """The key and secret stores of the app (exit 2 with the reason if they cannot be
    opened or an operation on them fails)."""
    from ..backends.base import StoreError
    from ..security.files import InsecureFile
    from ..security.keys import KeyStoreError
    from ..security.secrets import SecretError
    from ..security.stores import open_security

    opened = None
    try:
        opened = open_security(data_dir, store, key_file=key_file)
        yield opened
    except (KeyStoreError, SecretError, InsecureFile, StoreError) as exc:
        raise _fail(str(exc)) from None
    finally:
        if opened is not None:
            opened.close()


@keys_cli.command("create")
def keys_create(name: str = typer.Argument(..., help="Who or what the key is for."),
                rate: Optional[float] = typer.Option(None, help="Requests per second."),
                burst: Optional[int] = typer.Option(None, help="Burst above the rate."),
                quota: Optional[int] = typer.Option(None, help="Requests per UTC day."),
                data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP),
                store: Optional[str] = typer.Option(None, envvar="SQUALL_STORE",
                                                    help=STORE_HELP)) -> None:
    """Create a key with an optional usage plan; the key is printed once."""
    from ..security.keys import UsagePlan

    with _stores(data_dir, store) as stores:
        plain, key = stores.keys.create(name, UsagePlan(rate, burst, quota))
    print(json.dumps({"key": plain, **key.public()}))
    err.print("Keep the key now: only its hash is stored. Send it as the x-api-key header.")


@keys_cli.command("list")
def keys_list(as_json: bool = typer.Option(False, "--json"),
              data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP),
              store: Optional[str] = typer.Option(None, envvar="SQUALL_STORE",
                                                  help=STORE_HELP)) -> None:
    """Keys (ids, names, plans, revoked or not); never the keys themselves."""
    with _stores(data_dir, store) as stores:
        keys = stores.keys.list()
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
                data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP),
                store: Optional[str] = typer.Option(None, envvar="SQUALL_STORE",
                                                    help=STORE_HELP)) -> None:
    """Revoke a key: refused from then on (within a second on a running app, on every
    node)."""
    with _stores(data_dir, store) as stores:
        key = stores.keys.revoke(key_id)
    print(json.dumps(key.public()))


@secrets_cli.command("set")
def secrets_set(name: str = typer.Argument(...),
                value: Optional[str] = typer.Argument(
                    None, help="The value; omit it to type it (hidden) or pipe it on stdin."),
                data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP),
                store: Optional[str] = typer.Option(None, envvar="SQUALL_STORE",
                                                    help=STORE_HELP),
                key_file: Optional[str] = typer.Option(None, help=KEY_FILE_HELP)) -> None:
    """Store (or replace) a secret, encrypted under the data directory's key file (with
    --store: under the master key every node has)."""
    if value is None:
        value = (typer.prompt(f"value of {name}", hide_input=True) if sys.stdin.isatty()
                 else sys.stdin.read().rstrip("\n"))
    if not value:
        raise _fail(f"secret {name!r}: the value is empty")
    with _stores(data_dir, store, key_file) as stores:
        stores.secrets.set(name, value)
    err.print(f"secret {name!r} stored")


@secrets_cli.command("list")
def secrets_list(data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP),
                 store: Optional[str] = typer.Option(None, envvar="SQUALL_STORE",
                                                     help=STORE_HELP),
                 key_file: Optional[str] = typer.Option(None, help=KEY_FILE_HELP)) -> None:
    """Secret names (never their values), one per line. With --store and a master key,
    the key is checked against the stored secrets first (exit 2 if it is not theirs)."""
    with _stores(data_dir, store, key_file) as stores:
        if stores.shared and stores.secrets.has_key:
            stores.secrets.check()
        names = stores.secrets.names()
    for n in names:
        print(n)


@secrets_cli.command("rm")
def secrets_rm(name: str = typer.Argument(...),
               data_dir: str = typer.Option(".squall", help=DATA_DIR_HELP),
               store: Optional[str] = typer.Option(None, envvar="SQUALL_STORE",
                                                   help=STORE_HELP)) -> None:
    """Delete a secret."""
    with _stores(data_dir, store) as stores:
        stores.secrets.remove(name)
    err.print(f"secret {name!r} removed")


@secrets_cli.command("keygen")
def secrets_keygen() -> None:
    """Print a new master key for the secrets of a shared store: give it to every node
    and to the CLI as SQUALL_SECRETS_KEY (or save it, mode 0600, as
    SQUALL_SECRETS_KEY_FILE)."""
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())
