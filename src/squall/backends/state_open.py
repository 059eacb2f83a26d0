"""State backends by URL, through a small scheme -> factory table (as open_broker).

    open_state("sqlite:///data/state.db", objects_dir=...)   tables, feeds, objects
    open_state("postgresql://host/db?schema=NAME")           the same, shared by nodes
    open_cache("sqlite:///data/cache.db") · open_cache("redis://127.0.0.1:6379/0")
    open_cache("postgresql://host/db?schema=NAME")

Every backend passes the suites in squall.testing.state_conformance. `clock` is where
timestamps and expiry come from: None means the backend's own (the local clock for
SQLite, the database server's for PostgreSQL, so that nodes agree); tests inject one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from .base import StoreError


def _sqlite_path(url: str) -> Path:
    _, sep, rest = url.partition("://")
    if not sep or not rest.startswith("/") or rest == "/":
        raise StoreError(f"bad SQLite URL {url!r}: use sqlite:///relative.db or "
                         "sqlite:////abs.db")
    return Path(rest[1:])


def open_state(url: str, *, objects_dir: str | Path | None = None,
               clock: Callable[[], float] | None = None, **options: Any) -> Any:
    """A TableStore + ObjectStore (+ FeedStore) by URL. A PostgreSQL store connects on
    first use (StoreError then); `objects_dir` is for SQLite only (PostgreSQL keeps the
    bytes in the database)."""
    scheme = url.split(":", 1)[0]
    if scheme == "sqlite":
        from .sqlite.state import SqliteStateStore

        return SqliteStateStore(_sqlite_path(url), objects_dir, clock=clock or time.time,
                                **options)
    if scheme in ("postgresql", "postgres"):
        from .postgres.state import PgStateStore

        return PgStateStore(url, clock=clock, **options)
    raise StoreError(f"unsupported state store URL {url!r}: known schemes are sqlite://, "
                     "postgresql://")


def open_cache(url: str, *, clock: Callable[[], float] | None = None,
               prefix: str = "squall:", **options: Any) -> Any:
    """A CacheStore by URL: sqlite:///path (embedded), redis://host:port/db, or
    postgresql://…?schema=NAME (a table in that schema, shared by the nodes)."""
    scheme = url.split(":", 1)[0]
    if scheme == "sqlite":
        from .sqlite.cache import SqliteCache

        return SqliteCache(_sqlite_path(url), clock=clock or time.time, **options)
    if scheme in ("redis", "rediss", "unix"):
        from .redis_cache import RedisCache

        return RedisCache(url, prefix=prefix, clock=clock or time.time)
    if scheme in ("postgresql", "postgres"):
        from .postgres.cache import PgCache

        return PgCache(url, clock=clock, **options)
    raise StoreError(f"unsupported cache URL {url!r}: known schemes are sqlite://, redis://, "
                     "postgresql://")
