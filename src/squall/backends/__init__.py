"""Storage and broker backends, chosen by URL through a small scheme -> factory table."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .base import InvocationLog, InvocationRecord, LogLine, StoreError

__all__ = ["InvocationLog", "InvocationRecord", "LogLine", "StoreError", "open_store"]


def _sqlite(url: str) -> InvocationLog:
    from .sqlite.store import SqliteStore

    rest = url.split("://", 1)[1]  # sqlite:///relative.db, sqlite:////absolute.db
    if not rest.startswith("/") or rest == "/":
        raise StoreError(f"bad SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////abs.db")
    return SqliteStore(Path(rest[1:]))


_FACTORIES: dict[str, Callable[[str], InvocationLog]] = {"sqlite": _sqlite}


def store_url_for_data_dir(data_dir: str | Path) -> str:
    return f"sqlite:///{Path(data_dir) / 'squall.db'}"


def open_store(url: str) -> InvocationLog:
    scheme = url.split(":", 1)[0]
    factory = _FACTORIES.get(scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in _FACTORIES)
        raise StoreError(f"unsupported store URL {url!r}: known schemes are {known}")
    return factory(url)
