"""The platform's operations on one node: deploy, aliases, rollback, grants, delete, and
keeping the running versions in line with the registry.

    deploy:    build (package, virtualenv, import check) -> start the version's stack
               -> register the version -> point the alias at it -> drain what no alias
               wants any more. Any failure before "register" changes nothing.
    reconcile: for each app, run exactly the versions its aliases send traffic to.
    sync:      every `sync_s`, if the registry's revision moved (a change made on another
               node, in distributed mode), reconcile every app; report this node's state.

Layout under the server's data directory:
    platform.db         the registry (apps, versions + packages, aliases, history)
    code/<sha256>/      unpacked packages       venvs/   virtualenvs by requirements
    apps/<name>/        each app's data namespace (its own SQLite files and objects)
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..backends.registry import AliasRecord, Registry, VersionRecord, open_registry
from ..observe import logs
from ..runtime.aio import cancel
from ..runtime.pool import ServiceError
from ..runtime.runtime import UnknownFunction
from ..runtime.zygote_client import ZygoteClient
from ..stack import StackOptions
from .build import Build, Builder, BuildError
from .hosts import AppHost, RouteError, VersionHost
from .namespaces import app_url, schema_of
from .package import DEFAULT_MAX_PACKAGE_BYTES, PackageError
from .quotas import QuotaError, Quotas, StorageMeter
from .traffic import Canary, CanaryMonitor, TrafficError, check_alias_name, format_weights
from .venvs import VenvBuilder
from .views import PlatformViews

APP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
DEFAULT_ALIAS = "prod"
CANARY_CHECK_S = 1.0
SYNC_S = 1.0


class PlatformError(Exception):
    """A request the platform refuses: `code` is a gateway error code (squall.gateway.errors)."""

    def __init__(self, code: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class PlatformOptions:
    data_dir: str = ".squall"
    venv_cache: str | None = None  # default: DATA_DIR/venvs
    pip_args: tuple[str, ...] = ()  # e.g. ("--no-index", "--find-links", "/wheels")
    max_package_bytes: int = DEFAULT_MAX_PACKAGE_BYTES
    quotas: Quotas = field(default_factory=Quotas)  # for apps that set none
    expose_errors: bool = False
    canary_check_s: float = CANARY_CHECK_S
    clock: Callable[[], float] = time.time  # canary windows (tests pass their own)
    # distributed mode: the registry and every app's data on shared backends
    store_url: str | None = None  # postgresql://…?schema=…: registry + apps' schemas
    broker_url: str | None = None  # postgresql:// or nats://: apps' queues, topics, …
    node_id: str | None = None
    sync_s: float = SYNC_S  # how often a node looks for changes made elsewhere

    @property
    def shared(self) -> bool:
        return bool(self.store_url) and not self.store_url.startswith("sqlite:")


def check_app_name(name: str) -> str:
    if not APP_NAME.match(name):
        raise PlatformError("bad_request", f"app name {name!r}: lower-case letters, digits "
                            "and '-', starting with a letter, at most 63 characters")
    return name


class Platform(PlatformViews):
    def __init__(self, opts: PlatformOptions, registry: Registry | None = None) -> None:
        self.opts = opts
        self.root = Path(opts.data_dir).resolve()
        self.registry = registry or open_registry(opts.store_url, self.root)
        self.node_id = opts.node_id or f"{socket.gethostname()}:{os.getpid()}"
        self.builder = Builder(self.root / "code", VenvBuilder(
            opts.venv_cache or self.root / "venvs", pip_args=opts.pip_args),
            max_package_bytes=opts.max_package_bytes)
        self.hosts: dict[str, AppHost] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._draining: set[asyncio.Task[None]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._sync: asyncio.Task[None] | None = None
        self._revision = -1
        self._grants: dict[str, dict[str, list[str]]] = {}  # app -> caller -> functions

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        (self.root / "code").mkdir(parents=True, exist_ok=True)
        await self.sync()
        self._timer = asyncio.ensure_future(self._judge_canaries())
        self._sync = asyncio.ensure_future(self._sync_loop())

    async def sync(self) -> None:
        """Run what the registry says, if it changed since the last look (a deploy, an
        alias move or a delete on another node), and report this node's state."""
        loop = asyncio.get_running_loop()  # the registry may be a network away: off the loop
        revision = await loop.run_in_executor(None, self.registry.revision)
        if revision != self._revision:
            self._revision = revision
            names = {a.name for a in self.registry.apps()}
            for name in sorted(names | set(self.hosts)):
                async with self._lock(name):
                    try:  # looked up again under the lock: a deploy may just have made it
                        if self.registry.app(name) is not None:
                            await self._reconcile(name)
                        elif name in self.hosts:  # deleted on another node
                            await self._forget(name)
                            self._drop_data(name)  # again: this node may have written since
                    except Exception as exc:  # one broken app must not stop the others
                        logs.event("app could not start", logging.ERROR, app=name,
                                   error=f"{type(exc).__name__}: {exc}")
        await loop.run_in_executor(None, self.registry.report_node, self.node_id,
                                   self.node_state())

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.opts.sync_s)
            try:
                await self.sync()
            except Exception as exc:  # the store is down: keep serving what runs
                logs.event("could not sync with the registry", logging.WARNING,
                           node=self.node_id, error=f"{type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        await cancel(self._timer, self._sync)
        for host in self.hosts.values():
            host.storage.stop()
            for version in list(host.versions.values()):
                await version.stack.stop()
        self.hosts.clear()
        if self._draining:
            await asyncio.gather(*self._draining, return_exceptions=True)
        self.registry.close()

    def _lock(self, app: str) -> asyncio.Lock:
        return self._locks.setdefault(app, asyncio.Lock())

    def app_data_dir(self, app: str) -> Path:
        return self.root / "apps" / app

    def quotas(self, app: str) -> Quotas:
        record = self.registry.app(app)
        return Quotas.from_dict(record.quotas if record else {}, self.opts.quotas)

    # -- deploy --------------------------------------------------------------------

    async def deploy(self, app: str, data: bytes, *, description: str = "",
                     alias: str | None = DEFAULT_ALIAS, canary: dict[str, Any] | None = None,
                     ) -> dict[str, Any]:
        """Build, register and (unless `alias` is None) activate a new version. With
        `canary` ({"percent", "window_s", "max_error_rate", "min_requests"}), the alias
        sends that share to the new version and the rest to its current one."""
        check_app_name(app)
        if alias is not None:
            self._check_alias(alias)
        async with self._lock(app):
            try:
                build = await self.builder.build(data)
            except BuildError as exc:
                raise PlatformError("deploy_rejected", str(exc), exc.detail) from None
            except PackageError as exc:
                raise PlatformError("payload_too_large", str(exc)) from None
            try:
                quotas = self.quotas(app)
                quotas.check_manifest(app, build.manifest)
                current = self._alias(app, alias) if alias else None
                weights, canary_options = self._activation(current, canary)
            except BaseException as exc:
                await build.zygote.stop()  # the import check's zygote: nobody took it
                if isinstance(exc, QuotaError):
                    raise PlatformError("deploy_rejected", str(exc)) from None
                raise
            return await self._activate(app, data, build, description, alias, quotas,
                                        current, weights, canary_options)

    async def _activate(self, app: str, data: bytes, build: Build, description: str,
                        alias: str | None, quotas: Quotas, current: AliasRecord | None,
                        weights: dict[int, int], canary_options: dict[str, Any] | None,
                        ) -> dict[str, Any]:
        record = VersionRecord(
            app=app, version=0, sha256=build.package.sha256,
            size_bytes=build.package.size_bytes, unpacked_bytes=build.package.unpacked_bytes,
            venv_key=build.venv.key, venv_bytes=build.venv.size_bytes,
            import_ms=round(build.import_ms, 1), build_ms=round(build.venv.build_ms, 1),
            created_at=time.time(), description=description, manifest=build.manifest)
        if alias is None:
            await build.zygote.stop()
            stored = self._register(record, data)
            return self.version_info(stored)
        # start it before anything is recorded: a version that cannot run is rejected
        host = self._version_host(app, record, quotas)
        try:  # the version's runtime takes the import check's zygote (or stops it)
            await host.start(self._app_host(app).storage, build.zygote, self.invoke_across)
        except Exception as exc:
            await self._discard(app)
            raise PlatformError("deploy_rejected",
                                f"the version could not start: {exc}") from None
        try:
            stored = self._register(record, data)
        except BaseException:
            await host.stack.stop()
            await self._discard(app)
            raise
        host.record, host.version = stored, stored.version
        self._app_host(app).versions[stored.version] = host
        weights = {**weights, stored.version: 100 - sum(weights.values())}
        canary_record = None if canary_options is None else Canary.from_weights(
            weights, self.opts.clock(), **canary_options).to_dict()
        self._set_alias(app, alias, weights, canary_record,
                        current.provisioned if current else 0)
        await self._reconcile(app)
        return self.version_info(stored)

    def _register(self, record: VersionRecord, data: bytes) -> VersionRecord:
        self.registry.ensure_app(record.app)
        stored = self.registry.add_version(record, data)
        self.registry.record(record.app, "deploy", {"version": stored.version,
                                                    "sha256": stored.sha256})
        return stored

    def _activation(self, current: AliasRecord | None, canary: dict[str, Any] | None,
                    ) -> tuple[dict[int, int], dict[str, Any] | None]:
        """The alias's weights without the new version, and the canary options."""
        if canary is None:
            return {}, None
        if current is None or len(current.weights) != 1:
            raise PlatformError("conflict", "a canary deploy needs the alias to point at "
                                "exactly one version now: deploy without --canary first")
        percent = canary.get("percent", 10)
        if not isinstance(percent, int) or not 1 <= percent <= 99:
            raise PlatformError("bad_request", f"canary percent must be 1 to 99, got {percent!r}")
        (baseline,) = current.weights
        options = {k: v for k in ("window_s", "max_error_rate", "min_requests")
                   if (v := canary.get(k)) is not None}
        try:  # checked now, before anything starts (the candidate's number comes later)
            Canary.from_weights({baseline: 1, baseline + 1: 1}, 0.0, **options)
        except TrafficError as exc:
            raise PlatformError("bad_request", str(exc)) from None
        return {baseline: 100 - percent}, options

    # -- aliases -------------------------------------------------------------------

    def _check_alias(self, alias: str) -> None:
        try:
            check_alias_name(alias)
        except TrafficError as exc:
            raise PlatformError("bad_request", str(exc)) from None

    def _alias(self, app: str, alias: str) -> AliasRecord | None:
        return next((a for a in self.registry.aliases(app) if a.name == alias), None)

    def _set_alias(self, app: str, alias: str, weights: dict[int, int],
                   canary: dict[str, Any] | None, provisioned: int) -> AliasRecord:
        record = AliasRecord(app, alias, {v: w for v, w in weights.items() if w > 0},
                             canary, provisioned, time.time())
        self.registry.set_alias(record)
        self.registry.record(app, "alias", {"alias": alias, "weights": format_weights(
            record.weights), "canary": canary, "provisioned": provisioned})
        return record

    async def set_alias(self, app: str, alias: str, weights: dict[int, int], *,
                        canary: dict[str, Any] | None = None,
                        provisioned: int | None = None) -> AliasRecord:
        self._check_alias(alias)
        async with self._lock(app):
            self._require_app(app)
            known = {v.version for v in self.registry.versions(app)}
            missing = sorted(set(weights) - known)
            if missing:
                raise PlatformError("not_found", f"app {app!r} has no version "
                                    f"{', '.join(map(str, missing))}; its versions: "
                                    f"{', '.join(map(str, sorted(known))) or 'none'}")
            current = self._alias(app, alias)
            if provisioned is None:
                provisioned = current.provisioned if current else 0
            quotas = self.quotas(app)
            if not 0 <= provisioned <= quotas.max_workers:
                raise PlatformError("bad_request", f"provisioned must be 0 to app {app!r}'s "
                                    f"max_workers quota ({quotas.max_workers})")
            canary_record = None
            if canary is not None:
                try:
                    canary_record = Canary.from_weights(weights, self.opts.clock(),
                                                        **canary).to_dict()
                except TrafficError as exc:
                    raise PlatformError("bad_request", str(exc)) from None
            record = self._set_alias(app, alias, weights, canary_record, provisioned)
            await self._reconcile(app)
            return record

    async def rollback(self, app: str, alias: str = DEFAULT_ALIAS,
                       version: int | None = None) -> AliasRecord:
        """Point `alias` at `version`, or at the version it served before its last change."""
        self._require_app(app)
        if version is None:
            version = self._previous(app, alias)
        return await self.set_alias(app, alias, {version: 100})

    def _previous(self, app: str, alias: str) -> int:
        current = self._alias(app, alias)
        now = set(current.weights) if current else set()
        for entry in self.registry.history(app, limit=500):
            if entry.action == "alias" and entry.detail.get("alias") == alias:
                versions = {int(p.split(":")[0]) for p in entry.detail["weights"].split(",")}
                if len(versions) == 1 and versions != now:
                    return versions.pop()
        older = [v.version for v in self.registry.versions(app) if v.version < min(now or {0})]
        if not older:
            raise PlatformError("conflict", f"app {app!r} alias {alias!r} has no earlier "
                                "version to roll back to; name one: squall rollback APP VERSION")
        return older[-1]

    async def on_canary(self, app: str, alias: AliasRecord, verdict: str,
                        monitor: CanaryMonitor) -> None:
        async with self._lock(app):
            current = self._alias(app, alias.name)
            if current is None or current.canary != alias.canary or alias.canary is None:
                return  # changed since: the verdict is about an alias that is gone
            canary = Canary(**alias.canary)
            keep = canary.baseline if verdict == "rollback" else canary.candidate
            self._set_alias(app, alias.name, {keep: 100}, None, alias.provisioned)
            self.registry.record(app, f"canary {verdict}", {
                "alias": alias.name, "baseline": canary.baseline,
                "candidate": canary.candidate, "kept": keep, "requests": monitor.requests,
                "errors": monitor.errors})
            logs.event(f"canary {'rolled back' if verdict == 'rollback' else 'promoted'}",
                       logging.WARNING if verdict == "rollback" else logging.INFO,
                       app=app, alias=alias.name, version=keep, candidate=canary.candidate)
            await self._reconcile(app)

    async def _judge_canaries(self) -> None:
        while True:
            await asyncio.sleep(self.opts.canary_check_s)
            for host in list(self.hosts.values()):
                for alias in list(host.aliases):
                    host.judge(alias)

    # -- grants: one app invoking another's functions ------------------------------

    async def set_grant(self, app: str, caller: str, functions: list[str] | None) -> None:
        """Let app `caller` invoke `functions` of `app` (["*"]: all); None revokes."""
        check_app_name(caller)
        if functions is not None and (not functions or not all(
                isinstance(f, str) and f for f in functions)):
            raise PlatformError("bad_request", "functions: a list of function names, or "
                                "[\"*\"] for all of them")
        async with self._lock(app):
            self._require_app(app)
            self.registry.set_grant(app, caller, functions)
            self.registry.record(app, "grant" if functions is not None else "revoke",
                                 {"caller": caller, "functions": functions})
            self._grants[app] = self.registry.grants(app)

    async def invoke_across(self, caller: str, payload: list[Any]) -> Any:
        """`app.invoke("OTHER/FUNCTION", data)` from app `caller`: run through OTHER's
        `prod` alias if OTHER granted it, else AccessDenied. Apps see nothing of each
        other otherwise."""
        target, _, function = str(payload[0]).partition("/")
        data_json, trace = payload[1], payload[2] if len(payload) > 2 else None
        granted = self._grants.get(target, {}).get(caller, [])
        host = self.hosts.get(target)
        if host is None or (function not in granted and "*" not in granted):
            raise ServiceError({
                "errorType": "AccessDenied",
                "errorMessage": f"app {caller!r} may not invoke {target}/{function}: the app "
                                f"{target!r} must grant it (squall grant {target} {caller} "
                                f"{function})"})
        try:
            result = await host.invoke(function, data_json, trace)
        except RouteError as exc:
            raise ServiceError({"errorType": "Unavailable", "errorMessage": str(exc)}) from None
        except UnknownFunction as exc:
            raise ServiceError({"errorType": "UnknownFunction",
                                "errorMessage": str(exc)}) from None
        if not result.ok:
            raise ServiceError(result.error_payload())
        return result.value

    # -- delete --------------------------------------------------------------------

    async def delete(self, app: str) -> None:
        async with self._lock(app):
            self._require_app(app)
            await self._forget(app)
            self.registry.delete_app(app)
            self._drop_data(app)
            logs.event("app deleted", app=app)

    def _drop_data(self, app: str) -> None:
        """On shared backends, the app's schema(s) in the registry's database: its data
        goes with it (other nodes stop the app at their next sync, and drop the schemas
        once more after that, since they may have written to them in between)."""
        drop = getattr(self.registry, "drop_schema", None)
        store = self.opts.store_url
        if drop is None or not store:
            return
        urls = [app_url(store, app)]
        broker = self.opts.broker_url
        if broker and broker.partition("?")[0] == store.partition("?")[0]:
            urls.append(app_url(broker, app))  # the same database
        for schema in {schema_of(u) for u in urls if u}:
            if schema:
                drop(schema)

    async def _forget(self, app: str) -> None:
        """Drain and stop an app's versions on this node and remove its local data (shared
        schemas are dropped by the callers, `delete` and `sync`, with `_drop_data`)."""
        host = self.hosts.pop(app, None)
        if host is not None:
            host.storage.stop()
            await asyncio.gather(*(v.drain_and_stop() for v in host.versions.values()))
        shutil.rmtree(self.app_data_dir(app), ignore_errors=True)

    def _require_app(self, app: str) -> None:
        if self.registry.app(app) is None:
            known = ", ".join(a.name for a in self.registry.apps()) or "none"
            raise PlatformError("not_found", f"no app named {app!r}; apps: {known}")

    # -- running what the registry says --------------------------------------------

    def _app_host(self, app: str) -> AppHost:
        host = self.hosts.get(app)
        if host is None:
            storage = StorageMeter(self.app_data_dir(app), size=self._schema_size(app))
            storage.start()
            host = self.hosts[app] = AppHost(
                app, self.quotas(app), storage, clock=self.opts.clock,
                on_canary=lambda *verdict: self._spawn(self.on_canary(*verdict)))
        return host

    def _schema_size(self, app: str) -> Callable[[], int] | None:
        """On shared backends an app's storage is its schema, measured by the registry."""
        url = app_url(self.opts.store_url, app)
        schema = schema_of(url) if url else None
        measure = getattr(self.registry, "schema_bytes", None)
        return (lambda: measure(schema)) if schema and measure else None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    def _version_host(self, app: str, record: VersionRecord, quotas: Quotas) -> VersionHost:
        data_dir = self.app_data_dir(app)
        data_dir.mkdir(parents=True, exist_ok=True)
        code = self.builder.code_dir(record.sha256)
        venv = self.builder.venvs
        python = str(venv.cache_dir / f"venv-{record.venv_key}" / "bin" / "python")
        return VersionHost(app, record, str(code), StackOptions(
            data_dir=str(data_dir), max_workers=quotas.max_workers,
            expose_errors=self.opts.expose_errors, python=python, cwd=str(code),
            store_url=app_url(self.opts.store_url, app),
            broker_url=app_url(self.opts.broker_url, app),
            node_id=f"{self.node_id}:{app}:{record.version}"), quotas)

    async def _discard(self, app: str) -> None:
        """Forget an app host that never got a version (a first deploy that failed)."""
        host = self.hosts.get(app)
        if host is not None and not host.versions and self.registry.app(app) is None:
            host.storage.stop()
            del self.hosts[app]

    async def _reconcile(self, app: str) -> None:
        host = self._app_host(app)
        self._grants[app] = self.registry.grants(app)
        aliases = self.registry.aliases(app)
        wanted = {v for a in aliases for v, w in a.weights.items() if w > 0}
        quotas = host.quotas = self.quotas(app)
        for version in sorted(wanted - set(host.versions)):
            record = self.registry.version(app, version)
            if record is None:
                continue
            zygote = await self._ensure_built(record)
            vh = self._version_host(app, record, quotas)
            try:
                await vh.start(host.storage, zygote, self.invoke_across)
            except BaseException:
                if zygote is not None:
                    await zygote.stop()
                raise
            host.versions[version] = vh
        host.set_aliases(aliases)  # new requests go to the new versions from here on
        for version, vh in list(host.versions.items()):
            if version not in wanted:
                del host.versions[version]
                self._spawn(vh.drain_and_stop())  # in-flight requests finish on it
            else:
                vh.provision(host.provisioned(version))

    async def _ensure_built(self, record: VersionRecord) -> ZygoteClient | None:
        """A version registered elsewhere (or before a restart): its code and venv here,
        and the zygote of the import check when one was needed (the version takes it)."""
        code = self.builder.code_dir(record.sha256)
        if (code / "app.py").is_file() and (
                self.builder.venvs.cache_dir / f"venv-{record.venv_key}").is_dir():
            return None
        data = self.registry.package(record.sha256)
        if data is None:
            raise PlatformError("not_found", f"the package of {record.app} version "
                                f"{record.version} is missing from the registry")
        try:
            build = await self.builder.build(data)
        except BuildError as exc:
            raise PlatformError("deploy_rejected", f"{record.app} version {record.version} "
                                f"does not build on this node: {exc}", exc.detail) from None
        if build.venv.key != record.venv_key:
            logs.event("version rebuilt with a different virtualenv key", logging.WARNING,
                       app=record.app, version=record.version)
        return build.zygote

    async def set_quotas(self, app: str, changes: dict[str, Any]) -> Quotas:
        async with self._lock(app):
            self._require_app(app)
            record = self.registry.app(app)
            assert record is not None
            try:
                quotas = Quotas.from_dict({**record.quotas, **changes}, self.opts.quotas)
            except QuotaError as exc:
                raise PlatformError("bad_request", str(exc)) from None
            self.registry.set_quotas(app, {k: v for k, v in quotas.to_dict().items()
                                           if v != getattr(self.opts.quotas, k)})
            host = self.hosts.get(app)
            if host is not None:
                host.quotas = quotas
                for vh in host.versions.values():
                    vh.quotas = quotas
            return quotas
