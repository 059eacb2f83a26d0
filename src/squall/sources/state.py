"""The state service: the ONE place where every table, cache and bucket call of a running
app is carried out, and the owner of what state triggers (change streams, object events)
and sweeps (TTL expiry, lifecycle, feed retention).

    handle (app code) -> binding.state(kind, resource, op, args)
        worker:    CALL "state" -> Runtime.caller_services["state"] -> StateService.serve
        in-process test:                                          -> StateService.call
    StateService.call(caller, kind, resource, op, args)
        authorize(caller, kind, resource, action)      <- least privilege hooks in here
        -> the stores (squall.backends.state Protocols), on a thread pool

`caller` is the calling function's name as the supervisor knows it (the worker's pool),
not as the worker says; None for calls from outside any function (a test, the CLI).
Likewise `trace`, the calling invocation's traceparent with its loop lineage: from the
supervisor's `current_span` (set per worker CALL, so user code cannot reset the count),
or given by the in-process harness. A write that appends to a feed stores it with the
record, so the change or object event it causes is invoked in the same event chain and a
function that writes to the table or bucket that triggers it is stopped like any other
recursive loop (squall.events.lineage). No trace (the CLI, an HTTP upload by a user, the
sweepers) starts a new chain.
Stores are blocking, so `serve` runs them on the service's executor; writes that append
to a feed wake that feed's consumers (squall.sources.feeds) at once, and a shared store
(PostgreSQL, in distributed mode) wakes them on every node (its `listen` hook).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from dataclasses import replace
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from ..backends.state import (ARCHIVE, STANDARD, InvalidRequest, SortRange, UnknownResource,
                              shard_of)
from ..backends.state_open import open_cache, open_state
from ..aiocompat import wait_for
from ..observe import logs
from ..observe.traces import current_span
from ..state import items as I
from ..state.handles import decode_token, encode_token
from ..state.keys import check_cache_key
from ..state.spec import StateDeclarations
from .state_buckets import BucketOps, _Upload

MAX_PAGE = 1000
MAX_SCANNED_PER_CALL = 10_000  # a selective filter returns a short page, not a long wait
UPLOAD_IDLE_S = 3600.0
SWEEP_INTERVAL_S = 30.0
OBJECT_EVENT_RETENTION_S = 24 * 3600.0

# What each operation does to its resource: the actions `uses=` will grant.
ACTIONS = {
    "table": {"get": "read", "query": "read", "scan": "read", "put": "write",
              "update": "write", "delete": "write"},
    "cache": {"get": "read", "set": "write", "delete": "write", "incr": "write",
              "clear": "write"},
    "bucket": {"get": "read", "head": "read", "list": "read", "usage": "read",
               "put": "write", "upload_begin": "write", "upload_part": "write",
               "upload_commit": "write", "upload_abort": "write", "copy": "write",
               "delete": "write"},
}


# The operations that append to a feed: they get the caller's trace for the record.
TRACED = {("table", "put"), ("table", "update"), ("table", "delete"), ("bucket", "put"),
          ("bucket", "upload_commit"), ("bucket", "copy"), ("bucket", "delete")}


def _traced(plan: Any, trace: str | None) -> Any:
    """`plan` with its change records carrying `trace` (plans stay pure: squall.state)."""
    if trace is None:
        return plan

    def traced(current: Any) -> Any:
        planned = plan(current)
        return replace(planned, changes=tuple(replace(c, trace=trace)
                                              for c in planned.changes))
    return traced


class FeedSignal:
    """Wakes feed consumers when a write appended to their feed (no polling)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.generation: dict[str, int] = defaultdict(int)
        self._waiters: dict[str, set[asyncio.Future[None]]] = defaultdict(set)

    def notify(self, feed: str) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._wake, feed)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def notify_all(self) -> None:
        """Wake every waiting consumer (a shared store may have missed notifications)."""
        for feed in list(self._waiters):
            self.notify(feed)

    def _wake(self, feed: str) -> None:
        self.generation[feed] += 1
        for fut in self._waiters.pop(feed, ()):
            if not fut.done():
                fut.set_result(None)

    async def wait(self, feed: str, generation: int, timeout: float) -> None:
        if self.generation[feed] != generation or timeout <= 0:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters[feed].add(fut)
        try:
            await wait_for(fut, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._waiters[feed].discard(fut)


class StateService(BucketOps):
    def __init__(self, store: Any, cache: Any, *, clock: Callable[[], float] = time.time,
                 threads: int = 8) -> None:
        self.store = store  # TableStore + ObjectStore (+ FeedStore)
        self.cache = cache  # CacheStore
        self.clock = clock
        self.decls = StateDeclarations()
        self.signal = FeedSignal()
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="squall-state")
        self._uploads: dict[str, _Upload] = {}
        self.feeds: Any = None  # squall.sources.feeds.Feeds, once attached
        self.policy: Any = None  # squall.sources.access.AccessPolicy (uses=), if set
        self._sweeper: asyncio.Task[None] | None = None
        self.leases: Any = None

    @classmethod
    def for_data_dir(cls, data_dir: str | Path, *, store_url: str | None = None,
                     cache_url: str | None = None, app: str = "app",
                     clock: Callable[[], float] | None = None,
                     synchronous: str = "FULL") -> StateService:
        """A node's stores. With a postgresql:// store URL (distributed mode): tables,
        feeds and objects in that database and schema, shared by every node, and the
        cache too unless `cache_url` names another (Redis). Otherwise the embedded stores
        under `data_dir` (state.db, cache.db, objects/). `clock` (tests) stamps records
        and decides expiry; None: the stores' own (PostgreSQL's for the shared ones)."""
        data = Path(data_dir)
        if store_url and store_url.split(":", 1)[0] in ("postgresql", "postgres"):
            store = open_state(store_url, clock=clock)
            cache = open_cache(cache_url or store_url, clock=clock, prefix=f"squall:{app}:")
            return cls(store, cache, clock=clock or time.time)
        store = open_state(f"sqlite:///{data / 'state.db'}", objects_dir=data / "objects",
                           clock=clock, synchronous=synchronous)
        cache = open_cache(cache_url or f"sqlite:///{data / 'cache.db'}", clock=clock,
                           prefix=f"squall:{app}:")
        return cls(store, cache, clock=clock or time.time)

    def configure(self, manifest: dict[str, Any]) -> None:
        self.decls = StateDeclarations.from_manifest(manifest)

    # -- the entry point ---------------------------------------------------------------

    def authorize(self, caller: str | None, kind: str, resource: str, action: str) -> None:
        """Least privilege (`uses=`): every state call of every function passes through
        here with the caller's name; `policy` (squall.sources.access) decides."""
        if self.policy is not None:
            self.policy.check(caller, kind, resource, action)

    def call(self, caller: str | None, kind: str, resource: str, op: str,
             args: list[Any], trace: str | None = None) -> Any:
        actions = ACTIONS.get(kind)
        if actions is None or op not in actions:
            raise InvalidRequest(f"unknown state operation {kind}.{op}")
        declared = {"table": self.decls.tables, "cache": self.decls.caches,
                    "bucket": self.decls.buckets}[kind]
        if resource not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise UnknownResource(f"app has no {kind} named {resource!r}; its {kind}s are: "
                                  f"{known} (declare it with app.{kind}({resource!r}, ...))")
        self.authorize(caller, kind, resource, actions[op])
        if (kind, op) in TRACED:
            return getattr(self, f"_{kind}_{op}")(declared[resource], *args, caller=caller,
                                                  trace=trace)
        return getattr(self, f"_{kind}_{op}")(declared[resource], *args, caller=caller)

    async def serve(self, payload: list[Any], caller: str | None) -> Any:
        """The worker's CALL "state": [kind, resource, op, args], run off the loop, in the
        calling invocation's trace (the pool set `current_span` for this CALL)."""
        kind, resource, op, args = payload
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.call, caller, kind, resource,
                                          op, args, current_span.get())

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # -- tables ------------------------------------------------------------------------

    def _write(self, spec: Any, pk: str, sk: Any, plan: Any,
               trace: str | None = None) -> tuple[Any, Any]:
        old, new = self.store.write_item(spec.name, pk, sk, _traced(plan, trace))
        if old is not new:
            self.signal.notify(spec.feed)
        return old, new

    def _table_get(self, spec: Any, key: Any, *, caller: str | None) -> Any:
        pk, sk, _ = I.key_of(spec, key)
        item = I.live(self.store.get_item(spec.name, pk, sk), self.clock())
        return None if item is None else [item.data, item.version]

    def _table_put(self, spec: Any, item: Any, condition: Any = None,
                   expected_version: Any = None, *, caller: str | None,
                   trace: str | None = None) -> Any:
        pk, sk, plan = I.plan_put(spec, item, now=self.clock(), condition=condition,
                                  expected_version=expected_version)
        _, new = self._write(spec, pk, sk, plan, trace)
        return [new.data, new.version]

    def _table_update(self, spec: Any, key: Any, ops: dict[str, Any], condition: Any = None,
                      expected_version: Any = None, *, caller: str | None,
                      trace: str | None = None) -> Any:
        pk, sk, plan = I.plan_update(spec, key, now=self.clock(), condition=condition,
                                     expected_version=expected_version, **ops)
        _, new = self._write(spec, pk, sk, plan, trace)
        return [new.data, new.version]

    def _table_delete(self, spec: Any, key: Any, condition: Any = None,
                      expected_version: Any = None, *, caller: str | None,
                      trace: str | None = None) -> Any:
        now = self.clock()
        pk, sk, plan = I.plan_delete(spec, key, now=now, condition=condition,
                                     expected_version=expected_version)
        old, _ = self._write(spec, pk, sk, plan, trace)
        old = I.live(old, now)
        return None if old is None else [old.data, old.version]

    @staticmethod
    def _limit(limit: Any, what: str) -> int:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"{what}: limit must be a whole number from 1 to {MAX_PAGE}, "
                                 f"got {limit!r}")
        return limit

    @staticmethod
    def _sort_range(spec: Any, sort: Any) -> SortRange:
        if not sort:
            return SortRange()
        if spec.sort_key is None:
            raise InvalidRequest(f"table {spec.name!r} has no sort key: query it without sort=")
        if not isinstance(sort, dict) or not all(k in ("=", "<", "<=", ">", ">=", "between",
                                                       "begins_with") for k in sort):
            raise InvalidRequest(f"table {spec.name!r}: sort= takes =, <, <=, >, >=, between "
                                 f"or begins_with, got {sort!r}")
        r: dict[str, Any] = {}
        for op, v in sort.items():
            if op == "begins_with":
                if not isinstance(v, str):
                    raise InvalidRequest(f"table {spec.name!r}: begins_with needs a string")
                r["prefix"] = v
                continue
            values = v if op == "between" else [v]
            if op == "between" and not (isinstance(v, (list, tuple)) and len(v) == 2):
                raise InvalidRequest(f"table {spec.name!r}: between needs [low, high]")
            for x in values:
                I._check_key_value(spec, spec.sort_key, x, I.MAX_SK_BYTES)
            if op in ("=", ">=", ">", "between"):
                r["lower"], r["lower_inclusive"] = values[0], op != ">"
            if op in ("=", "<=", "<", "between"):
                r["upper"], r["upper_inclusive"] = values[-1], op != "<"
        return SortRange(**r)

    def _table_query(self, spec: Any, key: Any, sort: Any = None, filter: Any = None,
                     limit: int = 100, reverse: bool = False, token: Any = None, *,
                     caller: str | None) -> Any:
        what = f"table {spec.name!r}"
        limit = self._limit(limit, what)
        I.validate_condition(filter, "filter")
        pk = I.encode_pk(spec, key[spec.key] if isinstance(key, dict) else key)
        where = self._sort_range(spec, sort)
        after = decode_token(token, what)["sk"] if token is not None else None
        now, out, scanned = self.clock(), [], 0
        while True:
            page = self.store.query_items(spec.name, pk, where, after=after,
                                          limit=max(limit, 50), reverse=bool(reverse))
            for item in page:
                scanned += 1
                after = item.data.get(spec.sort_key) if spec.sort_key else None
                if I.live(item, now) is None or not I.matches(filter, item.data):
                    continue
                out.append([item.data, item.version])
                if len(out) == limit:
                    return [out, encode_token({"sk": after}) if spec.sort_key else None]
            if len(page) < max(limit, 50) or not spec.sort_key:
                return [out, None]
            if scanned >= MAX_SCANNED_PER_CALL:
                return [out, encode_token({"sk": after})]

    def _table_scan(self, spec: Any, filter: Any = None, limit: int = 100, token: Any = None,
                    *, caller: str | None) -> Any:
        what = f"table {spec.name!r}"
        limit = self._limit(limit, what)
        I.validate_condition(filter, "filter")
        after = tuple(decode_token(token, what)["k"]) if token is not None else None
        now, out, scanned = self.clock(), [], 0
        while True:
            page = self.store.scan_items(spec.name, after=after, limit=max(limit, 50))
            for pk, sk, item in page:
                scanned += 1
                after = (pk, sk)
                if I.live(item, now) is None or not I.matches(filter, item.data):
                    continue
                out.append([item.data, item.version])
                if len(out) == limit:
                    return [out, encode_token({"k": list(after)})]
            if len(page) < max(limit, 50):
                return [out, None]
            if scanned >= MAX_SCANNED_PER_CALL:
                return [out, encode_token({"k": list(after)})]

    # -- cache -------------------------------------------------------------------------

    @staticmethod
    def _ttl(spec: Any, ttl_s: Any) -> float | None:
        if ttl_s is None:
            return spec.default_ttl_s
        if (isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float))
                or not math.isfinite(ttl_s) or ttl_s <= 0):
            raise InvalidRequest(f"cache {spec.name!r}: ttl_s must be seconds > 0, "
                                 f"got {ttl_s!r}")
        return float(ttl_s)

    def _cache_get(self, spec: Any, key: str, *, caller: str | None) -> Any:
        return self.cache.cache_get(spec.name, check_cache_key(spec.name, key))

    def _cache_set(self, spec: Any, key: str, value: bytes, ttl_s: Any = None,
                   only_if_absent: bool = False, *, caller: str | None) -> bool:
        if not isinstance(value, (bytes, bytearray)):
            raise InvalidRequest(f"cache {spec.name!r}: values travel as bytes")
        return self.cache.cache_set(spec.name, check_cache_key(spec.name, key), bytes(value),
                                    self._ttl(spec, ttl_s), only_if_absent=bool(only_if_absent))

    def _cache_delete(self, spec: Any, key: str, *, caller: str | None) -> bool:
        return self.cache.cache_delete(spec.name, check_cache_key(spec.name, key))

    def _cache_incr(self, spec: Any, key: str, by: int = 1, ttl_s: Any = None, *,
                    caller: str | None) -> int:
        if isinstance(by, bool) or not isinstance(by, int):
            raise InvalidRequest(f"cache {spec.name!r}: incr needs a whole number")
        return self.cache.cache_incr(spec.name, check_cache_key(spec.name, key), by,
                                     self._ttl(spec, ttl_s))

    def _cache_clear(self, spec: Any, *, caller: str | None) -> int:
        return self.cache.cache_clear(spec.name)

    # -- sweeping: TTL, lifecycle, retention ------------------------------------------------

    def sweep_once(self) -> dict[str, int]:
        """One pass of every sweeper, by the service's clock; returns what it did."""
        now = self.clock()
        done = {"expired_items": 0, "archived_objects": 0, "expired_objects": 0,
                "trimmed_records": 0, "expired_cache": 0, "aborted_uploads": 0}
        for spec in self.decls.tables.values():
            if spec.ttl_attribute:
                while True:
                    keys = self.store.expired_items(spec.name, now, 500)
                    for pk, sk in keys:
                        old, new = self._write(spec, pk, sk, I.plan_expire(spec, pk, sk,
                                                                           now=now))
                        done["expired_items"] += old is not new
                    if len(keys) < 500:
                        break
            done["trimmed_records"] += self._trim(spec, now - spec.stream_retention_s)
        for spec in self.decls.buckets.values():
            for rule in spec.lifecycle:
                a, e = self._lifecycle(spec, rule, now)
                done["archived_objects"] += a
                done["expired_objects"] += e
            done["trimmed_records"] += self._trim(spec, now - OBJECT_EVENT_RETENTION_S)
        sweep_cache = getattr(self.cache, "cache_sweep", None)
        if sweep_cache is not None:
            done["expired_cache"] = sweep_cache()
        sweep_uploads = getattr(self.store, "sweep_uploads", None)  # a shared store's
        if sweep_uploads is not None and self.decls.buckets:  # abandoned by a dead node
            done["aborted_uploads"] += sweep_uploads()
        idle = time.monotonic() - UPLOAD_IDLE_S
        for upload_id, up in list(self._uploads.items()):
            if up.touched < idle:
                self._uploads.pop(upload_id, None)
                up.writer.abort()
                done["aborted_uploads"] += 1
        return done

    def _trim(self, spec: Any, before: float) -> int:
        """Retention: records older than `before` that every consumer has had."""
        consumers = [c.cfg.name for c in (self.feeds.consumers.values() if self.feeds else ())
                     if c.feed == spec.feed]
        trimmed = 0
        for shard in range(spec.shards):
            upto = self.store.latest_feed_seq(spec.feed, shard)
            for name in consumers:
                cp = self.store.feed_checkpoint(spec.feed, name, shard)
                upto = min(upto, cp if cp is not None else 0)
            if upto > 0:
                trimmed += self.store.trim_feed(spec.feed, shard, upto, before)
        return trimmed

    def _lifecycle(self, spec: Any, rule: Any, now: float) -> tuple[int, int]:
        archived = expired = 0
        after = None
        while True:
            page = self.store.list_objects(spec.name, rule.prefix, after=after, limit=500)
            for info in page:
                age_days = (now - info.last_modified) / 86400.0
                shard = shard_of(info.key, spec.shards)
                if rule.expire_after_days is not None and age_days >= rule.expire_after_days:
                    if self.store.delete_object(spec.name, info.key, shard=shard,
                                                version=info.version,
                                                op="LifecycleExpiration"):
                        expired += 1
                elif (rule.archive_after_days is not None and info.tier == STANDARD
                      and age_days >= rule.archive_after_days):
                    archived += self.store.set_tier(spec.name, info.key, info.version,
                                                    ARCHIVE, shard=shard)
            if len(page) < 500:
                break
            after = page[-1].key
        if archived or expired:
            self.signal.notify(spec.feed)
            logs.event("lifecycle applied", bucket=spec.name, prefix=rule.prefix,
                       archived=archived, expired=expired)
        return archived, expired

    async def sweep(self) -> dict[str, int]:
        return await self.run(self.sweep_once)

    async def _sweep_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                if self.leases is None or await self.leases.acquire("state:sweeper"):
                    await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep sweeping; say so
                logs.event("state sweep failed", logging.ERROR,
                           error=f"{type(exc).__name__}: {exc}")

    # -- lifecycle of the service ------------------------------------------------------

    def attach(self, invoke: Any, broker: Any, configs: dict[str, Any], *,
               clock: Callable[[], float] | None = None, rand: Any = None,
               leases: Any = None) -> None:
        """Build the change-stream and object-event consumers for the app's functions."""
        from .feeds import Feeds

        self.leases = leases
        self.feeds = Feeds(self, invoke, broker, clock=clock or self.clock, rand=rand,
                           leases=leases)
        self.feeds.configure(configs)

    async def start(self, *, live: bool = True,
                    sweep_interval_s: float | None = SWEEP_INTERVAL_S) -> None:
        """Start the feed consumers (`live=False`: only fix their starting checkpoints, for
        `drain()`) and the periodic sweeper."""
        self.signal.loop = asyncio.get_running_loop()
        self._live = live
        listen = getattr(self.store, "listen", None)
        if listen is not None:  # a shared store: commits on every node wake our consumers
            await listen(self.signal.notify, self.signal.notify_all)
        if self.feeds is not None:
            await self.feeds.start(live=live)
        if sweep_interval_s:
            self._sweeper = asyncio.ensure_future(self._sweep_forever(sweep_interval_s))

    async def reconfigure(self, manifest: dict[str, Any], configs: dict[str, Any]) -> None:
        if self.feeds is not None:
            await self.feeds.stop()
        self.configure(manifest)
        if self.feeds is not None:
            self.feeds.configure(configs)
            await self.feeds.start(live=getattr(self, "_live", False))

    async def drain(self) -> Any:
        """Tests: sweep by the clock, then run every feed consumer until quiet."""
        await self.sweep()
        if self.feeds is None:
            from .queue import BatchOutcome

            return BatchOutcome()
        return await self.feeds.drain()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except (asyncio.CancelledError, Exception):
                pass
            self._sweeper = None
        if self.feeds is not None:
            await self.feeds.stop()
        unlisten = getattr(self.store, "unlisten", None)
        if unlisten is not None:
            await unlisten()

    def close(self) -> None:
        for up in self._uploads.values():
            up.writer.abort()
        self._uploads.clear()
        self.executor.shutdown(wait=True)
        self.store.close()
        self.cache.close()


__all__ = ["ACTIONS", "FeedSignal", "StateService"]
