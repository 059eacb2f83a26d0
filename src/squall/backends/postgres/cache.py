"""The cache on PostgreSQL, for distributed mode without a Redis (`SQUALL_CACHE_URL`): one
table in the store's schema, shared by every node. Behind
`open_cache("postgresql://…?schema=NAME")`.

Every operation is ONE statement, so it is atomic across nodes without locks held
between round trips: `incr` and set-if-absent are `INSERT … ON CONFLICT DO UPDATE … WHERE`
(the WHERE says when the existing value may be replaced: it expired, or it is a whole
number to add to). Expiry is decided in the statement by the injected clock (tests) or,
without one, by the database server's clock, so every node agrees on when an entry
expires. Expired entries are invisible at once; `cache_sweep` removes them.

Durability. A cache need not survive a crash (the embedded one runs SQLite with
synchronous=NORMAL for the same reason), so the cache's connections commit with
`synchronous_commit = off`: a write returns before its WAL record is flushed, and a crash
of the database server can lose the last fraction of a second of cache writes (never
corrupt the table, never touch the state tables, which commit synchronously). The table
is an ordinary, logged one: entries survive a clean restart and replicate to standbys.
"""

from __future__ import annotations

from typing import Callable

from ..state import NotAnInteger
from .database import Database
from .schema import NOW

DEFAULT_POOL_SIZE = 4

CACHE_TABLES = (
    """CREATE TABLE IF NOT EXISTS state_cache (
        ns text NOT NULL,
        key bytea NOT NULL,
        value bytea NOT NULL,
        expires_at double precision,
        PRIMARY KEY (ns, key))""",
    """CREATE INDEX IF NOT EXISTS state_cache_expiry ON state_cache (expires_at)
        WHERE expires_at IS NOT NULL""",
)

_LIVE = f"(c.expires_at IS NULL OR c.expires_at > {NOW})"
_EXPIRED = f"(c.expires_at IS NOT NULL AND c.expires_at <= {NOW})"

_GET = f"SELECT value FROM state_cache AS c WHERE ns = %(ns)s AND key = %(key)s AND {_LIVE}"

_SET = f"""
INSERT INTO state_cache AS c (ns, key, value, expires_at)
VALUES (%(ns)s, %(key)s, %(value)s, {NOW} + %(ttl)s::float8)
ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"""

_DELETE = f"""
DELETE FROM state_cache AS c WHERE ns = %(ns)s AND key = %(key)s RETURNING {_LIVE}"""

# a missing or expired value starts from 0 (with the TTL); a live one must be a whole
# number (escape-encoding leaves digits and '-' as they are, and escapes any other byte
# that could sneak past the pattern) and keeps its expiry
_INCR = f"""
INSERT INTO state_cache AS c (ns, key, value, expires_at)
VALUES (%(ns)s, %(key)s, convert_to(%(by)s::numeric::text, 'UTF8'), {NOW} + %(ttl)s::float8)
ON CONFLICT (ns, key) DO UPDATE SET
    value = CASE WHEN {_EXPIRED} THEN excluded.value
                 ELSE convert_to((encode(c.value, 'escape')::numeric + %(by)s::numeric)::text,
                                 'UTF8') END,
    expires_at = CASE WHEN {_EXPIRED} THEN excluded.expires_at ELSE c.expires_at END
WHERE {_EXPIRED} OR encode(c.value, 'escape') ~ '^-?[0-9]+$'
RETURNING convert_from(c.value, 'UTF8')"""


def _key(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")  # bytea: any character, even NUL


class PgCache:
    """The CacheStore Protocol on one PostgreSQL schema, shared by every node."""

    def __init__(self, url: str, *, clock: Callable[[], float] | None = None,
                 schema: str | None = None, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        """Checks the URL; connects on first use (StoreError then). `clock`: expiry is
        decided by it; None (the default) is the database server's clock."""
        self.db = Database(url, tables=CACHE_TABLES, role="squall-cache",
                           pool_size=pool_size, schema=schema,
                           session=("SET synchronous_commit = off",))
        self.clock = clock

    def _now(self) -> float | None:
        return self.clock() if self.clock is not None else None

    def cache_get(self, ns: str, key: str) -> bytes | None:
        rows = self.db.rows(f"cannot read cache {ns!r}", _GET,
                            {"ns": ns, "key": _key(key), "now": self._now()})
        return bytes(rows[0][0]) if rows else None

    def cache_set(self, ns: str, key: str, value: bytes, ttl_s: float | None, *,
                  only_if_absent: bool = False) -> bool:
        query = _SET + (f" WHERE {_EXPIRED}" if only_if_absent else "") + " RETURNING 1"
        return bool(self.db.rows(f"cannot write to cache {ns!r}", query, {
            "ns": ns, "key": _key(key), "value": bytes(value), "ttl": ttl_s,
            "now": self._now()}))

    def cache_delete(self, ns: str, key: str) -> bool:
        rows = self.db.rows(f"cannot delete from cache {ns!r}", _DELETE,
                            {"ns": ns, "key": _key(key), "now": self._now()})
        return bool(rows and rows[0][0])

    def cache_incr(self, ns: str, key: str, by: int, ttl_s: float | None) -> int:
        params = {"ns": ns, "key": _key(key), "by": by, "ttl": ttl_s, "now": self._now()}
        rows = self.db.rows(f"cannot increment {key!r} in cache {ns!r}", _INCR, params)
        if rows:
            return int(rows[0][0])
        raw = self.cache_get(ns, key) or b""
        raise NotAnInteger(f"cache {ns!r}: key {key!r} holds {raw[:40]!r}, not a whole "
                           "number; incr cannot add to it")

    def cache_clear(self, ns: str) -> int:
        return self.db.count(f"cannot clear cache {ns!r}",
                             "DELETE FROM state_cache WHERE ns = %s", (ns,))

    def cache_sweep(self) -> int:
        """Drop expired entries (the sweeper calls this; reads never see them anyway)."""
        return self.db.count("cannot sweep the cache",
                             f"DELETE FROM state_cache AS c WHERE {_EXPIRED}",
                             {"now": self._now()})

    def close(self) -> None:
        self.db.close()


__all__ = ["PgCache"]
