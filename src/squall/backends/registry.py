"""The platform registry's records and Protocol: apps, immutable versions (with their
packages), aliases, and the history of what changed.

Implementations: squall.backends.sqlite.registry (one machine, under the server's data
directory) and squall.backends.postgres.registry (every node of a cluster). Both are
`SqlRegistry`: the queries are written once ("?" placeholders, ON CONFLICT upserts) and
each backend supplies the connection, the DDL and the write transaction. Every change
bumps `revision()`, so a node can tell cheaply that it must look again.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Protocol


class RegistryConflict(Exception):
    """The change contradicts what is stored (an unknown app or version)."""


@dataclass(frozen=True)
class AppRecord:
    name: str
    created_at: float
    quotas: dict[str, Any] = field(default_factory=dict)
    next_version: int = 1


@dataclass(frozen=True)
class VersionRecord:
    app: str
    version: int
    sha256: str  # of the package: the version's code
    size_bytes: int  # the package, compressed
    unpacked_bytes: int
    venv_key: str  # the requirements' virtualenv (shared by identical requirements)
    venv_bytes: int
    import_ms: float  # the app's import in its zygote, measured at build
    build_ms: float  # virtualenv build (0: from the cache)
    created_at: float
    description: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AliasRecord:
    app: str
    name: str
    weights: dict[int, int]  # version -> share of traffic (percent, sums to 100)
    canary: dict[str, Any] | None = None  # window_s, max_error_rate, min_requests, started_at
    provisioned: int = 0  # warm workers per HTTP function of each version it points at
    updated_at: float = 0.0


@dataclass(frozen=True)
class HistoryEntry:
    app: str
    at: float
    action: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class NodeState:
    node: str
    at: float  # when it last reported
    apps: dict[str, Any]  # app -> what runs of it there


class Registry(Protocol):
    def revision(self) -> int: ...
    def ensure_app(self, name: str, quotas: dict[str, Any] | None = None) -> AppRecord: ...
    def app(self, name: str) -> AppRecord | None: ...
    def apps(self) -> list[AppRecord]: ...
    def set_quotas(self, name: str, quotas: dict[str, Any]) -> None: ...
    def delete_app(self, name: str) -> bool: ...
    def add_version(self, record: VersionRecord, package: bytes) -> VersionRecord: ...
    def versions(self, app: str) -> list[VersionRecord]: ...
    def version(self, app: str, version: int) -> VersionRecord | None: ...
    def package(self, sha256: str) -> bytes | None: ...
    def set_alias(self, alias: AliasRecord) -> None: ...
    def aliases(self, app: str) -> list[AliasRecord]: ...
    def record(self, app: str, action: str, detail: dict[str, Any]) -> None: ...
    def history(self, app: str, limit: int = 50) -> list[HistoryEntry]: ...
    def set_grant(self, app: str, caller: str, functions: list[str] | None) -> None: ...
    def grants(self, app: str) -> dict[str, list[str]]: ...
    def report_node(self, node: str, apps: dict[str, Any]) -> None: ...
    def nodes(self, max_age_s: float) -> list[NodeState]: ...
    def close(self) -> None: ...


class SqlRegistry:
    """The registry's logic over a DB-API-like connection: subclasses implement
    `_write(fn)` (fn(db) in one transaction, then COMMIT) and `_read(sql, args)`."""

    _write: Callable[..., Any]  # (fn, bump=True): bump the revision in the same transaction
    _read: Callable[..., list[tuple]]

    def revision(self) -> int:
        return self._read("SELECT v FROM meta WHERE k = 'revision'")[0][0]

    # -- apps ----------------------------------------------------------------------

    def ensure_app(self, name: str, quotas: dict[str, Any] | None = None) -> AppRecord:
        def op(db: Any) -> None:
            db.execute("INSERT INTO apps (name, created_at, quotas, next_version) "
                       "VALUES (?, ?, ?, 1) ON CONFLICT (name) DO NOTHING",
                       (name, time.time(), json.dumps(quotas or {})))
        if self.app(name) is None:
            self._write(op)
        app = self.app(name)
        assert app is not None
        return app

    def app(self, name: str) -> AppRecord | None:
        rows = self._read("SELECT name, created_at, quotas, next_version FROM apps "
                          "WHERE name = ?", (name,))
        return AppRecord(rows[0][0], rows[0][1], json.loads(rows[0][2]), rows[0][3]) \
            if rows else None

    def apps(self) -> list[AppRecord]:
        rows = self._read("SELECT name, created_at, quotas, next_version FROM apps "
                          "ORDER BY name")
        return [AppRecord(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

    def set_quotas(self, name: str, quotas: dict[str, Any]) -> None:
        def op(db: Any) -> None:
            if not db.execute("UPDATE apps SET quotas = ? WHERE name = ?",
                              (json.dumps(quotas), name)).rowcount:
                raise RegistryConflict(f"no app named {name!r}")
        self._write(op)

    def delete_app(self, name: str) -> bool:
        def op(db: Any) -> bool:
            gone = db.execute("DELETE FROM apps WHERE name = ?", (name,)).rowcount
            db.execute("DELETE FROM versions WHERE app = ?", (name,))
            db.execute("DELETE FROM aliases WHERE app = ?", (name,))
            db.execute("DELETE FROM grants WHERE app = ? OR caller = ?", (name, name))
            db.execute("DELETE FROM history WHERE app = ?", (name,))  # a new app of the
            # same name starts clean (rollback reads history)
            db.execute("DELETE FROM packages WHERE sha256 NOT IN "
                       "(SELECT sha256 FROM versions)")
            return bool(gone)
        return self._write(op)

    # -- versions ------------------------------------------------------------------

    def add_version(self, record: VersionRecord, package: bytes) -> VersionRecord:
        """Store `record` as the app's next version number (its `version` is ignored)."""

        def op(db: Any) -> VersionRecord:
            row = db.execute("SELECT next_version FROM apps WHERE name = ?",
                             (record.app,)).fetchone()
            if row is None:
                raise RegistryConflict(f"no app named {record.app!r}")
            stored = replace(record, version=row[0])
            db.execute("UPDATE apps SET next_version = next_version + 1 WHERE name = ?",
                       (record.app,))
            db.execute("INSERT INTO packages (sha256, data) VALUES (?, ?) "
                       "ON CONFLICT (sha256) DO NOTHING", (record.sha256, package))
            db.execute("INSERT INTO versions (app, version, record, sha256) VALUES (?,?,?,?)",
                       (record.app, stored.version, json.dumps(asdict(stored)),
                        record.sha256))
            return stored
        return self._write(op)

    def versions(self, app: str) -> list[VersionRecord]:
        rows = self._read("SELECT record FROM versions WHERE app = ? ORDER BY version", (app,))
        return [VersionRecord(**json.loads(r[0])) for r in rows]

    def version(self, app: str, version: int) -> VersionRecord | None:
        rows = self._read("SELECT record FROM versions WHERE app = ? AND version = ?",
                          (app, version))
        return VersionRecord(**json.loads(rows[0][0])) if rows else None

    def package(self, sha256: str) -> bytes | None:
        rows = self._read("SELECT data FROM packages WHERE sha256 = ?", (sha256,))
        return bytes(rows[0][0]) if rows else None

    # -- aliases -------------------------------------------------------------------

    def set_alias(self, alias: AliasRecord) -> None:
        body = json.dumps({**asdict(alias), "weights": {str(v): w for v, w in
                                                        alias.weights.items()}})

        def op(db: Any) -> None:
            if db.execute("SELECT 1 FROM apps WHERE name = ?", (alias.app,)).fetchone() is None:
                raise RegistryConflict(f"no app named {alias.app!r}")
            db.execute("INSERT INTO aliases (app, name, record) VALUES (?, ?, ?) "
                       "ON CONFLICT (app, name) DO UPDATE SET record = excluded.record",
                       (alias.app, alias.name, body))
        self._write(op)

    def aliases(self, app: str) -> list[AliasRecord]:
        rows = self._read("SELECT record FROM aliases WHERE app = ? ORDER BY name", (app,))
        out = []
        for (body,) in rows:
            d = json.loads(body)
            d["weights"] = {int(v): w for v, w in d["weights"].items()}
            out.append(AliasRecord(**d))
        return out

    # -- history -------------------------------------------------------------------

    def record(self, app: str, action: str, detail: dict[str, Any]) -> None:
        self._write(lambda db: db.execute(
            "INSERT INTO history (app, at, action, detail) VALUES (?, ?, ?, ?)",
            (app, time.time(), action, json.dumps(detail))))

    def history(self, app: str, limit: int = 50) -> list[HistoryEntry]:
        rows = self._read("SELECT app, at, action, detail FROM history WHERE app = ? "
                          "ORDER BY id DESC LIMIT ?", (app, limit))
        return [HistoryEntry(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    # -- grants --------------------------------------------------------------------

    def set_grant(self, app: str, caller: str, functions: list[str] | None) -> None:
        """Let app `caller` invoke these functions of `app` ("*": all); None revokes."""
        def op(db: Any) -> None:
            if functions is None:
                db.execute("DELETE FROM grants WHERE app = ? AND caller = ?", (app, caller))
                return
            if db.execute("SELECT 1 FROM apps WHERE name = ?", (app,)).fetchone() is None:
                raise RegistryConflict(f"no app named {app!r}")
            db.execute("INSERT INTO grants (app, caller, functions) VALUES (?, ?, ?) "
                       "ON CONFLICT (app, caller) DO UPDATE SET functions = excluded.functions",
                       (app, caller, json.dumps(sorted(functions))))
        self._write(op)

    def grants(self, app: str) -> dict[str, list[str]]:
        rows = self._read("SELECT caller, functions FROM grants WHERE app = ? ORDER BY caller",
                          (app,))
        return {r[0]: json.loads(r[1]) for r in rows}

    # -- nodes ---------------------------------------------------------------------

    def report_node(self, node: str, apps: dict[str, Any]) -> None:
        """What runs on `node` now (not a change: the revision stays)."""
        self._write(lambda db: db.execute(
            "INSERT INTO nodes (node, at, state) VALUES (?, ?, ?) ON CONFLICT (node) "
            "DO UPDATE SET at = excluded.at, state = excluded.state",
            (node, time.time(), json.dumps(apps))), bump=False)

    def nodes(self, max_age_s: float) -> list[NodeState]:
        rows = self._read("SELECT node, at, state FROM nodes WHERE at >= ? ORDER BY node",
                          (time.time() - max_age_s,))
        return [NodeState(r[0], r[1], json.loads(r[2])) for r in rows]


def open_registry(url: str | None, data_dir: Any) -> Any:
    """The registry by store URL: postgresql://…?schema=… (every node), else SQLite at
    DATA_DIR/platform.db (one machine)."""
    if url and url.split(":", 1)[0] in ("postgresql", "postgres"):
        from .postgres.registry import PgRegistry

        return PgRegistry(url)
    from pathlib import Path

    from .sqlite.registry import SqliteRegistry

    return SqliteRegistry(Path(data_dir) / "platform.db")
