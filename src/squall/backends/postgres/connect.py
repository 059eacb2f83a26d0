"""Reaching PostgreSQL: the URL, a password-free name for the server, and psycopg's errors
translated into Squall's (BrokerError for the broker, StoreError for the store).

Every message names the server as `host:port/database` and never carries the password:
psycopg's own messages about a malformed URL quote the URL, so those are cut before the
quote.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

try:
    import psycopg
    import psycopg_pool
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
except ImportError as exc:  # the distributed extra is optional
    raise ImportError("the PostgreSQL backends need psycopg 3 and psycopg_pool: "
                      "pip install 'squall[distributed]'") from exc

START_HINT = "is PostgreSQL running? start it with: pg_ctlcluster 15 main start"
CONNECT_TIMEOUT_S = 5

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")  # room for "squall." in a channel
_DDL_LOCK = 0x5C0A11  # pg_advisory_xact_lock class id for Squall's DDL, keyed by schema
_CREATES = re.compile(r"IF NOT EXISTS (\w+)")


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed PostgreSQL URL: what to pass to psycopg, and how to name it in messages."""

    url: str  # for psycopg: without Squall's own `schema` parameter
    where: str  # host:port/database, never the password
    schema: str  # the URL's `?schema=`, else "squall"
    names_itself: bool  # the URL sets application_name

    def kwargs(self, application_name: str) -> dict[str, Any]:
        """Connection options besides the URL: autocommit (a statement is a transaction
        unless one is opened), a bounded connect, and a name in pg_stat_activity."""
        out: dict[str, Any] = {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S}
        if not self.names_itself:
            out["application_name"] = application_name
        return out


def parse_url(url: str, error: type[Exception]) -> Target:
    """Check a postgresql:// URL without connecting; a malformed one raises `error`.
    Besides libpq's parameters it may carry `?schema=name`: where Squall's tables live
    ("squall" unless given), so that several apps or tests can share one database."""
    url, schema = _take_schema(url)
    if schema is not None:
        check_schema_name(schema, error)
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        reason = str(exc).split(" in URI:")[0].strip()
        raise error(f"bad PostgreSQL URL ({_redact(reason, url)}): use "
                    "postgresql://user[:password]@host[:port]/database") from None
    port = str(params.get("port") or "5432")
    if not all(p.isdigit() and 0 < int(p) < 65536 for p in port.split(",")):
        raise error(f"bad PostgreSQL URL: port {port!r} is not a number from 1 to 65535")
    host = str(params.get("host") or "localhost")
    db = params.get("dbname") or params.get("user") or "postgres"
    return Target(url=url, where=f"{host}:{port}/{db}", schema=schema or "squall",
                  names_itself="application_name" in params)


def _take_schema(url: str) -> tuple[str, str | None]:
    """The URL without its `schema` query parameter (libpq rejects unknown ones), and it."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, None
    schema = None
    kept = []
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key == "schema":
            schema = unquote(value)
        elif pair:
            kept.append(pair)
    return base + ("?" + "&".join(kept) if kept else ""), schema


def check_schema_name(schema: str, error: type[Exception]) -> None:
    if not _SCHEMA_NAME.fullmatch(schema):
        raise error(f"bad schema name {schema!r}: use letters, digits and underscores "
                    "(at most 48), not starting with a digit")


def translate(exc: Exception, target: Target, what: str, error: type[Exception]) -> Exception:
    """psycopg's error as `error`: `what` failed (e.g. "cannot send to queue 'q'"), where,
    why, and what to do."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return error(f"{what}: no connection to PostgreSQL at {target.where} came free or "
                     f"could be made in time ({reason}); {START_HINT}")
    if reason.startswith(("connection failed", "connection is bad")):
        reason = reason.split(" Is the server running")[0]
        # the server answered (a FATAL: no such database, authentication failed) or not
        hint = ("check the user, password and database in the URL" if "FATAL:" in reason
                else START_HINT)
        return error(f"{what}: cannot connect to PostgreSQL at {target.where}: {reason}; {hint}")
    if connection_lost(exc):
        return error(f"{what}: lost the connection to PostgreSQL at {target.where} "
                     f"({reason}); the call may not have taken effect: retry it")
    return error(f"{what}: PostgreSQL at {target.where} said: {reason}")


def connection_lost(exc: Exception) -> bool:
    """Whether `exc` says an established connection broke (the server restarted, or
    ended the session), rather than that a statement failed on a live one."""
    sqlstate = getattr(exc, "sqlstate", None)
    return (isinstance(exc, psycopg.OperationalError)
            and not isinstance(exc, psycopg_pool.PoolTimeout)
            and (sqlstate is None or sqlstate.startswith(("08", "57P"))))


def setup(schema: str, tables: Sequence[str]) -> tuple[sql.Composable, dict[str, Any],
                                                      list[sql.Composable | str]]:
    """How to set up `schema` with the CREATE … IF NOT EXISTS statements `tables`: a query
    saying whether every relation is there already (the usual case: then nothing is run,
    since even CREATE INDEX IF NOT EXISTS locks its table against writers while it looks),
    and the statements to run in one transaction otherwise. They start with an advisory
    lock that serialises concurrent set-ups (processes racing on CREATE … IF NOT EXISTS
    can otherwise both try to create), then create the schema and use it."""
    names = [m.group(1) for stmt in tables if (m := _CREATES.search(stmt))]
    complete = sql.SQL(
        "SELECT count(*) = %(n)s FROM pg_catalog.pg_class AS c "
        "JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %(schema)s AND c.relname = ANY(%(names)s)")
    statements: list[sql.Composable | str] = [
        sql.SQL("SELECT pg_advisory_xact_lock({}, hashtext({}))").format(
            sql.Literal(_DDL_LOCK), sql.Literal(schema)),
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)),
        search_path(schema),
        *tables,
    ]
    return complete, {"n": len(names), "schema": schema, "names": names}, statements


def search_path(schema: str) -> sql.Composable:
    return sql.SQL("SET search_path TO {}").format(sql.Identifier(schema))


def _redact(text: str, url: str) -> str:
    match = re.match(r"[a-z]+://[^:/@]*:([^@/]*)@", url)  # user:password@
    return text.replace(match.group(1), "***") if match and match.group(1) else text
