"""The gateway's security records in a shared store: API keys (hashed), per-key daily
request counts, and secret ciphertexts, for nodes that share one app store.

Implementations: squall.backends.postgres.security (the app's schema on PostgreSQL) and
squall.backends.sqlite.security (an SQLite store file shared by processes on one
machine). Both are `SqlSecurityRecords`: the queries are written once ("?" placeholders,
ON CONFLICT upserts, RETURNING) and each backend supplies the connection, the DDL and the
write transaction, as squall.backends.registry does. Only hashes and Fernet tokens are
stored: the plain keys are never known to the store, and the secrets' master key never
leaves the nodes (squall.security.shared_secrets).

Every change to the keys or secrets bumps `revision()`, so a node polls one row to learn
it must reload. A daily count is one atomic upsert that refuses to pass the limit, so the
count is exact across nodes.
"""

from __future__ import annotations

from typing import Any, Callable

TABLES = (
    "CREATE TABLE IF NOT EXISTS security_meta (k TEXT PRIMARY KEY, n BIGINT NOT NULL, t TEXT)",
    "INSERT INTO security_meta (k, n) VALUES ('revision', 0) ON CONFLICT (k) DO NOTHING",
    "CREATE TABLE IF NOT EXISTS security_keys (id TEXT PRIMARY KEY, hash TEXT NOT NULL, "
    "name TEXT NOT NULL, created DOUBLE PRECISION NOT NULL, plan TEXT NOT NULL, "
    "revoked INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS security_quota (key_id TEXT NOT NULL, day INTEGER NOT NULL, "
    "n BIGINT NOT NULL, PRIMARY KEY (key_id, day))",
    "CREATE TABLE IF NOT EXISTS security_secrets (name TEXT PRIMARY KEY, token TEXT NOT NULL)",
)

KeyRow = tuple[str, str, str, float, str, int]  # id, hash, name, created, plan (JSON), revoked
_BUMP = "UPDATE security_meta SET n = n + 1 WHERE k = 'revision'"


class SqlSecurityRecords:
    """The queries; a backend supplies `_write(what, fn)` (fn(conn) in one transaction,
    conn.execute taking "?" placeholders) and `_read(what, sql, args)`, both raising
    StoreError saying `what` failed."""

    where: str  # the store, in messages: "PostgreSQL at h:p/db (schema 's')" or a path

    def _write(self, what: str, fn: Callable[[Any], Any]) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _read(self, what: str, sql: str, args: tuple = ()) -> list[tuple]:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - the backends close their connections
        raise NotImplementedError

    def revision(self) -> int:
        rows = self._read("read the security revision",
                          "SELECT n FROM security_meta WHERE k = 'revision'")
        return int(rows[0][0]) if rows else 0

    # -- API keys ------------------------------------------------------------------------

    def keys(self) -> list[KeyRow]:
        return [(r[0], r[1], r[2], float(r[3]), r[4], int(r[5])) for r in self._read(
            "read the API keys",
            "SELECT id, hash, name, created, plan, revoked FROM security_keys ORDER BY created")]

    def add_key(self, key_id: str, hash_: str, name: str, created: float, plan: str) -> None:
        def add(conn: Any) -> None:
            conn.execute("INSERT INTO security_keys (id, hash, name, created, plan, revoked) "
                         "VALUES (?, ?, ?, ?, ?, 0)", (key_id, hash_, name, created, plan))
            conn.execute(_BUMP)

        self._write(f"store API key {key_id!r}", add)

    def revoke_key(self, key_id: str) -> bool:
        """False if there is no such key."""
        def revoke(conn: Any) -> bool:
            found = conn.execute("UPDATE security_keys SET revoked = 1 WHERE id = ?",
                                 (key_id,)).rowcount > 0
            if found:
                conn.execute(_BUMP)
            return found

        return self._write(f"revoke API key {key_id!r}", revoke)

    # -- daily quotas --------------------------------------------------------------------

    def take_quota(self, key_id: str, day: int, limit: int) -> int | None:
        """Count one request of `key_id` on UTC day `day`: the new count, or None (and
        nothing counted) when `limit` requests were counted already."""
        def take(conn: Any) -> int | None:
            row = conn.execute(
                "INSERT INTO security_quota (key_id, day, n) VALUES (?, ?, 1) "
                "ON CONFLICT (key_id, day) DO UPDATE SET n = security_quota.n + 1 "
                "WHERE security_quota.n < ? RETURNING n", (key_id, day, limit)).fetchone()
            return None if row is None or int(row[0]) > limit else int(row[0])

        return self._write(f"count a request of API key {key_id!r}", take)

    def quota_used(self, key_id: str, day: int) -> int:
        rows = self._read("read a daily count", "SELECT n FROM security_quota "
                          "WHERE key_id = ? AND day = ?", (key_id, day))
        return int(rows[0][0]) if rows else 0

    def prune_quota(self, before_day: int) -> None:
        self._write("drop old daily counts", lambda conn: conn.execute(
            "DELETE FROM security_quota WHERE day < ?", (before_day,)))

    # -- secrets -------------------------------------------------------------------------

    def secrets_check(self) -> str | None:
        """The token that tells whether a master key is the one the secrets use."""
        rows = self._read("read the secrets' key check",
                          "SELECT t FROM security_meta WHERE k = 'secrets_check'")
        return rows[0][0] if rows else None

    def put_secret(self, name: str, token: str, check: str,
                   accept: Callable[[str], None]) -> None:
        """Store a ciphertext, and `check` unless a check is stored already. `accept` sees
        the stored check first and raises to refuse (a node whose master key is not the
        one the secrets use must not write): the transaction is then rolled back."""
        def put(conn: Any) -> None:
            conn.execute("INSERT INTO security_meta (k, n, t) VALUES ('secrets_check', 0, ?) "
                         "ON CONFLICT (k) DO NOTHING", (check,))
            accept(conn.execute("SELECT t FROM security_meta WHERE k = 'secrets_check'"
                                ).fetchone()[0])
            conn.execute("INSERT INTO security_secrets (name, token) VALUES (?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET token = excluded.token",
                         (name, token))
            conn.execute(_BUMP)

        self._write(f"store secret {name!r}", put)

    def secret(self, name: str) -> str | None:
        rows = self._read(f"read secret {name!r}",
                          "SELECT token FROM security_secrets WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def secret_names(self) -> list[str]:
        return [r[0] for r in self._read("list the secrets",
                                         "SELECT name FROM security_secrets ORDER BY name")]

    def delete_secret(self, name: str) -> bool:
        def delete(conn: Any) -> bool:
            found = conn.execute("DELETE FROM security_secrets WHERE name = ?",
                                 (name,)).rowcount > 0
            if found:
                conn.execute(_BUMP)
            return found

        return self._write(f"remove secret {name!r}", delete)


def open_security_records(url: str) -> SqlSecurityRecords:
    """The security records of the app store at `url` (postgresql://…?schema= or
    sqlite:///path). Opening does no I/O for PostgreSQL (it connects on first use)."""
    from . import _sqlite_path
    from .base import StoreError

    scheme = url.split(":", 1)[0]
    if scheme in ("postgresql", "postgres"):
        from .postgres.security import PgSecurityRecords

        return PgSecurityRecords(url)
    if scheme == "sqlite":
        from .sqlite.security import SqliteSecurityRecords

        return SqliteSecurityRecords(_sqlite_path(url))
    raise StoreError(f"unsupported store URL {url!r} for API keys and secrets: known schemes "
                     "are postgresql://, sqlite://")
