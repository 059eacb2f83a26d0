"""Storage and broker backends, chosen by URL through a small scheme -> factory table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .base import InvocationLog, InvocationRecord, LogLine, StoreError
from .broker import BrokerError, QueueBroker

__all__ = ["BrokerError", "InvocationLog", "InvocationRecord", "LogLine", "QueueBroker",
           "StoreError", "open_broker", "open_store", "redact_url"]


def _sqlite(url: str) -> InvocationLog:
    from .sqlite.store import SqliteStore

    return SqliteStore(_sqlite_path(url))


def _postgres(url: str) -> InvocationLog:
    from .postgres.store import PgStore

    return PgStore(url)


_FACTORIES: dict[str, Callable[[str], InvocationLog]] = {
    "sqlite": _sqlite, "postgresql": _postgres, "postgres": _postgres}


def _sqlite_path(url: str) -> Path:
    _, sep, rest = url.partition("://")  # sqlite:///relative.db, sqlite:////absolute.db
    if not sep or not rest.startswith("/") or rest == "/":
        raise StoreError(f"bad SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////abs.db")
    return Path(rest[1:])


def redact_url(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<malformed URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def store_url_for_data_dir(data_dir: str | Path) -> str:
    return f"sqlite:///{Path(data_dir) / 'squall.db'}"


def broker_url_for_data_dir(data_dir: str | Path) -> str:
    return f"sqlite:///{Path(data_dir) / 'broker.db'}"


def open_broker(url: str, **options: Any) -> QueueBroker:
    """A queue broker by URL: `sqlite:///path` (embedded, one machine),
    `postgresql://…` (many nodes on one PostgreSQL database) or `nats://host:port`
    (many nodes on a NATS JetStream server or cluster). Options (clock,
    max_message_bytes, dedup_window_s) go to the backend's constructor. Opening does no
    network I/O: a network backend connects on first use and raises BrokerError then."""
    scheme = url.split(":", 1)[0]
    if scheme == "sqlite":
        from .sqlite.broker import SqliteBroker

        return SqliteBroker(_sqlite_path(url), **options)
    if scheme in ("postgresql", "postgres"):
        from .postgres.broker import PgBroker

        return PgBroker(url, **options)
    if scheme in ("nats", "tls"):
        from .jetstream.broker import NatsBroker

        url, settings = _nats_settings(url)
        return NatsBroker(url, **{**settings, **options})
    raise BrokerError(f"unsupported broker URL {url!r}: known schemes are sqlite://, "
                      "postgresql://, nats://")


_NATS_SETTINGS = {"prefix": str, "replicas": int}


def _nats_settings(url: str) -> tuple[str, dict[str, Any]]:
    """`nats://h:p,nats://h2:p?prefix=SHOP&replicas=3`: the server list, and the broker's
    own settings from the query (NATS URLs carry none of their own)."""
    from urllib.parse import parse_qsl

    base, _, query = url.partition("?")
    settings: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        kind = _NATS_SETTINGS.get(key)
        if kind is None:
            raise BrokerError(f"unknown setting {key!r} in NATS URL {redact_url(url)!r}: "
                              f"known are {', '.join(_NATS_SETTINGS)}")
        try:
            settings[key] = kind(value)
        except ValueError:
            raise BrokerError(f"bad {key}={value!r} in NATS URL {redact_url(url)!r}") from None
    return base, settings


def open_store(url: str) -> InvocationLog:
    scheme = url.split(":", 1)[0]
    factory = _FACTORIES.get(scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in _FACTORIES)
        raise StoreError(f"unsupported store URL {url!r}: known schemes are {known}")
    return factory(url)
