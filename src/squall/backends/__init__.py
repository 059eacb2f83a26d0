"""Storage and broker backends, chosen by URL through a small scheme -> factory table."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .base import InvocationLog, InvocationRecord, LogLine, StoreError
from .broker import BrokerError, QueueBroker

__all__ = ["BrokerError", "InvocationLog", "InvocationRecord", "LogLine", "QueueBroker",
           "StoreError", "open_broker", "open_store"]


def _sqlite(url: str) -> InvocationLog:
    from .sqlite.store import SqliteStore

    return SqliteStore(_sqlite_path(url))


_FACTORIES: dict[str, Callable[[str], InvocationLog]] = {"sqlite": _sqlite}


def _sqlite_path(url: str) -> Path:
    _, sep, rest = url.partition("://")  # sqlite:///relative.db, sqlite:////absolute.db
    if not sep or not rest.startswith("/") or rest == "/":
        raise StoreError(f"bad SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////abs.db")
    return Path(rest[1:])


def store_url_for_data_dir(data_dir: str | Path) -> str:
    return f"sqlite:///{Path(data_dir) / 'squall.db'}"


def broker_url_for_data_dir(data_dir: str | Path) -> str:
    return f"sqlite:///{Path(data_dir) / 'broker.db'}"


def open_broker(url: str) -> QueueBroker:
    """A queue broker by URL: `sqlite:///path` (embedded); more schemes come with the
    distributed backends."""
    scheme = url.split(":", 1)[0]
    if scheme == "sqlite":
        from .sqlite.broker import SqliteBroker

        return SqliteBroker(_sqlite_path(url))
    raise BrokerError(f"unsupported broker URL {url!r}: known schemes are sqlite://")


def open_store(url: str) -> InvocationLog:
    scheme = url.split(":", 1)[0]
    factory = _FACTORIES.get(scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in _FACTORIES)
        raise StoreError(f"unsupported store URL {url!r}: known schemes are {known}")
    return factory(url)
