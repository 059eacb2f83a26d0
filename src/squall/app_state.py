"""State declarations on `App`: tables, caches, buckets, and the functions their change
streams and object events trigger. A mixin of `App`; like the rest of the registry it
only records (no I/O), and hands back handles that work once the app runs.
"""

from __future__ import annotations

from typing import Any, Callable

from .config import ConfigError, FeedTrigger, RetryPolicy
from .state.handles import Bucket, Cache, Table
from .state.spec import (BucketConfig, CacheConfig, TableConfig, lifecycle_rules)
from .types import Handler

_FEED_SETTINGS = ("batch_size", "max_retries", "bisect_on_error", "retry", "dlq",
                  "starting_position")


class DeclaresState:
    name: str
    functions: dict[str, Any]
    _config: Any
    _add: Any

    def _init_state(self) -> None:
        self.tables: dict[str, Table] = {}
        self.caches: dict[str, Cache] = {}
        self.buckets: dict[str, Bucket] = {}

    def table(self, name: str, *, key: str, sort_key: str | None = None,
              ttl_attribute: str | None = None, shards: int = 4,
              stream_retention_s: float = 24 * 3600.0) -> Table:
        """Declare a table of JSON items keyed by `key` (and `sort_key`); items whose
        `ttl_attribute` (epoch seconds) has passed disappear. Every write is recorded in
        the table's change stream (see `on_change`). Returns the handle."""
        cfg = TableConfig(name, key, sort_key, ttl_attribute, shards, stream_retention_s)
        existing = self.tables.get(name)
        if existing is not None:
            if existing.config != cfg:
                raise ConfigError(f"table {name!r} is already declared with other settings")
            return existing
        handle = self.tables[name] = Table(self, cfg)
        return handle

    def cache(self, name: str = "default", *, default_ttl_s: float | None = None) -> Cache:
        """Declare a cache (embedded, or Redis when SQUALL_CACHE_URL says so)."""
        cfg = CacheConfig(name, default_ttl_s)
        existing = self.caches.get(name)
        if existing is not None:
            if existing.config != cfg:
                raise ConfigError(f"cache {name!r} is already declared with other settings")
            return existing
        handle = self.caches[name] = Cache(self, cfg)
        return handle

    def bucket(self, name: str, *, lifecycle: Any = None, shards: int = 4,
               max_object_bytes: int = 5 * 1024**3) -> Bucket:
        """Declare an object bucket. `lifecycle`: LifecycleRule(s) (or dicts) moving
        objects under a prefix to the archive tier and expiring them after some days."""
        cfg = BucketConfig(name, shards, lifecycle_rules(f"bucket {name!r}", lifecycle),
                           max_object_bytes)
        existing = self.buckets.get(name)
        if existing is not None:
            if existing.config != cfg:
                raise ConfigError(f"bucket {name!r} is already declared with other settings")
            return existing
        handle = self.buckets[name] = Bucket(self, cfg)
        return handle

    def on_change(self, table: str, *, events: list[str] | tuple[str, ...] = (
                  "insert", "modify", "remove"), name: str | None = None,
                  format: str = "native", batch_size: int = 100,
                  **settings: Any) -> Callable[[Handler], Handler]:
        """Run the function on the table's changes, in batches, in order per partition
        key, at least once: `handler(changes, ctx)` with `Change` objects (old and new
        images), or DynamoDB Streams' event with `format="aws-dynamodb"`. A failing
        batch is retried (bisected), then its records go to the dead-letter queue
        ("<function>-dlq") and the shard moves on. Partial failure: return
        BatchResult(failed=[sequence]) or {"batchItemFailures": [...]}."""

        def register(handler: Handler) -> Handler:
            fname = name or getattr(handler, "__name__", None) or "handler"
            if table not in self.tables:
                raise ConfigError(f"function {fname!r}: on_change({table!r}): declare the "
                                  f"table first with app.table({table!r}, key=...)")
            trigger = self._feed_trigger(fname, "table", table, events, batch_size, settings)
            cfg = self._config(fname, "change", format, settings, (), feed=trigger)
            self._add(fname, cfg, handler)
            return handler

        return register

    def on_object(self, bucket: str, *, prefix: str = "", suffix: str = "",
                  events: list[str] | tuple[str, ...] = ("created", "deleted"),
                  name: str | None = None, format: str = "native",
                  **settings: Any) -> Callable[[Handler], Handler]:
        """Run the function once per object event (created, deleted, archived) of keys
        with this prefix and suffix, after the object is durable, at least once, in order
        per key: `handler(event, ctx)` with an `ObjectEvent`, or S3's notification with
        `format="aws-s3"`. Failures are retried, then dead-lettered ("<function>-dlq")."""

        def register(handler: Handler) -> Handler:
            fname = name or getattr(handler, "__name__", None) or "handler"
            if bucket not in self.buckets:
                raise ConfigError(f"function {fname!r}: on_object({bucket!r}): declare the "
                                  f"bucket first with app.bucket({bucket!r})")
            trigger = self._feed_trigger(fname, "bucket", bucket, events, 1, settings,
                                         prefix=prefix, suffix=suffix)
            cfg = self._config(fname, "object", format, settings, (), feed=trigger)
            self._add(fname, cfg, handler)
            return handler

        return register

    def _feed_trigger(self, fname: str, source: str, resource: str, events: Any,
                      batch_size: int, settings: dict[str, Any], **filters: str) -> FeedTrigger:
        if isinstance(events, str):
            events = [events]
        opts = {k: settings.pop(k) for k in list(settings) if k in _FEED_SETTINGS}
        if isinstance(opts.get("retry"), dict):
            opts["retry"] = RetryPolicy(**opts["retry"])
        try:
            return FeedTrigger(source, resource, tuple(events), batch_size=batch_size,
                               **filters, **opts)
        except TypeError as exc:  # pragma: no cover - filtered above
            raise ConfigError(f"function {fname!r}: {exc}") from None

    def state_manifest(self) -> dict[str, Any]:
        return {"tables": [t.config.to_manifest() for t in self.tables.values()],
                "caches": [c.config.to_manifest() for c in self.caches.values()],
                "buckets": [b.config.to_manifest() for b in self.buckets.values()]}
