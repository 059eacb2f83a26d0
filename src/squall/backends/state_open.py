"""State backends by URL, through a small scheme -> factory table (as open_broker).

    open_state("sqlite:///data/state.db", objects_dir=...)   tables, feeds, objects
    open_cache("sqlite:///data/cache.db") · open_cache("redis://127.0.0.1:6379/0")

A `postgresql://` state store is the next backend: it must pass the suites in
squall.testing.state_conformance.
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
               clock: Callable[[], float] = time.time, **options: Any) -> Any:
    """A TableStore + ObjectStore (+ FeedStore) by URL."""
    scheme = url.split(":", 1)[0]
    if scheme == "sqlite":
        from .sqlite.state import SqliteStateStore

        return SqliteStateStore(_sqlite_path(url), objects_dir, clock=clock, **options)
    raise StoreError(f"unsupported state store URL {url!r}: known schemes are sqlite:// "
                     "(postgresql:// is planned)")


def open_cache(url: str, *, clock: Callable[[], float] = time.time,
               prefix: str = "squall:", **options: Any) -> Any:
    """A CacheStore by URL: sqlite:///path (embedded) or redis://host:port/db."""
    scheme = url.split(":", 1)[0]
    if scheme == "sqlite":
        from .sqlite.cache import SqliteCache

        return SqliteCache(_sqlite_path(url), clock=clock, **options)
    if scheme in ("redis", "rediss", "unix"):
        from .redis_cache import RedisCache

        return RedisCache(url, prefix=prefix, clock=clock)
    raise StoreError(f"unsupported cache URL {url!r}: known schemes are sqlite://, redis://")
