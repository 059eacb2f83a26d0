"""What Squall needs from a state backend: tables, feeds, objects and a cache.

Four narrow Protocols, each checked by a conformance suite in
`squall.testing.state_conformance` that every implementation (SQLite + filesystem
embedded, Redis for the cache, PostgreSQL later) must pass unchanged:

* `TableStore`: items by (partition key, sort key) with a version each. A write takes a
  *plan*: a pure function from the current row to the new row and its change records,
  supplied by the layer above (squall.state.items). The store runs it inside ONE
  transaction with the row locked, and persists the new row and the change records
  atomically, so a change stream can neither lose a write nor show one that did not
  happen (a transactional outbox). A plan may raise (ConditionFailed): nothing is written.
* `FeedStore`: the ordered outbox behind table change streams and object events. Records
  are numbered per (feed, shard); a reader that has seen seq N of a shard never later
  sees a new record with seq <= N (on a database with concurrent writers this means the
  numbers are taken in commit order, e.g. from a per-shard counter row updated in the
  writing transaction). Consumers keep checkpoints that never go back. A record keeps
  the traceparent of the invocation that wrote it (loop lineage included), so the
  consumer's invocation continues that event chain and a write loop is stopped.
* `ObjectStore`: immutable object versions under validated keys; a put is streamed into
  a writer and becomes visible (and its "created" feed record appears) only on commit,
  after the data is durable.
* `CacheStore`: bytes under (namespace, key) with an optional TTL and an atomic
  increment. Expiry is decided by the store's injected clock, so TTLs are testable.

Stores are synchronous: their work is blocking I/O (files, SQLite, a socket) and the
supervisor runs them on a thread pool, never on its event loop. Timestamps are seconds
since the epoch from the store's clock.

The error tree for state lives here too (errors cross from backends to handlers); each
error has a stable `code`, used in HTTP errors and to rebuild the error in a worker.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .base import StoreError

# -- errors ------------------------------------------------------------------------------


class StateError(Exception):
    """A state operation that cannot be done as asked; the message says what and where."""

    code = "StateError"
    status = 400


class ConditionFailed(StateError):
    """A conditional write's condition (or expected version) did not hold."""

    code = "ConditionFailed"
    status = 409


class InvalidKey(StateError):
    """A key (item key, object key, cache key) is not acceptable."""

    code = "InvalidKey"


class InvalidItem(StateError):
    """An item or update cannot be stored (not JSON, too large, changes its key)."""

    code = "InvalidItem"


class InvalidRequest(StateError):
    """A malformed request: bad condition, bad range, bad page token, bad limit."""

    code = "InvalidRequest"


class NotFound(StateError):
    code = "NotFound"
    status = 404


class ObjectNotFound(NotFound):
    code = "ObjectNotFound"


class InvalidRange(StateError):
    code = "InvalidRange"
    status = 416


class ObjectTooLarge(StateError):
    code = "ObjectTooLarge"
    status = 413


class NotAnInteger(StateError):
    """`incr` on a cache value that is not a whole number."""

    code = "NotAnInteger"


class UnknownResource(StateError):
    """A table, bucket or cache the app did not declare."""

    code = "UnknownResource"
    status = 404


class AccessDenied(StateError, PermissionError):
    """A function used a resource or action it did not declare (least privilege). Also a
    PermissionError, for code that catches the builtin."""

    code = "AccessDenied"
    status = 403


class QuotaExceeded(StateError):
    """The app's data namespace is over its storage quota (platform mode): writes fail
    until data is deleted or the quota raised; deletes and reads still work."""

    code = "QuotaExceeded"
    status = 507


ERRORS: dict[str, type[StateError]] = {
    cls.code: cls for cls in (StateError, ConditionFailed, InvalidKey, InvalidItem,
                              InvalidRequest, NotFound, ObjectNotFound, InvalidRange,
                              ObjectTooLarge, NotAnInteger, UnknownResource, AccessDenied,
                              QuotaExceeded)}

# -- feeds -------------------------------------------------------------------------------


def shard_of(key: str, shards: int) -> int:
    """Which shard of a feed a routing key's records go to: one key, one shard, in order."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % shards


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """A record to append to a feed, in the same transaction as the write it reports."""

    shard: int
    key: str  # the routing key: a table's partition key, an object's key
    event: str  # insert | modify | remove | created | deleted | archived
    body: str  # JSON: what the event says (images, object info)
    # the writing invocation's traceparent with its loop lineage (squall.events.lineage);
    # None for a write from outside any function (a new chain) or by the platform itself
    trace: str | None = None


@dataclass(frozen=True, slots=True)
class FeedRecord:
    """A record as read back from a feed."""

    feed: str
    shard: int
    seq: int
    key: str
    event: str
    body: str
    at: float
    trace: str | None = None  # FeedEntry.trace, kept with the record


class FeedStore(Protocol):
    def read_feed(self, feed: str, shard: int, after_seq: int, limit: int) -> list[FeedRecord]:
        """Records of one shard with seq > after_seq, in order."""
        ...

    def latest_feed_seq(self, feed: str, shard: int) -> int: ...

    def feed_checkpoint(self, feed: str, consumer: str, shard: int) -> int | None: ...

    def set_feed_checkpoint(self, feed: str, consumer: str, shard: int, seq: int) -> None:
        """Move a consumer's checkpoint forward (a lower seq is ignored: it never goes back)."""
        ...

    def trim_feed(self, feed: str, shard: int, upto_seq: int, before: float) -> int:
        """Drop the shard's records with seq <= upto_seq written before `before` (the
        service passes the lowest checkpoint of the feed's consumers, so no record is
        dropped before every consumer had it); returns how many."""
        ...


# -- tables ------------------------------------------------------------------------------

SortKey = str | int | float | None


@dataclass(frozen=True, slots=True)
class StoredItem:
    data: dict[str, Any]  # the whole item, keys included
    version: int  # 1 on insert, +1 on every write
    expires_at: float | None = None  # from the table's TTL attribute


@dataclass(frozen=True, slots=True)
class Planned:
    """What a write plan decided: the row afterwards (None: delete it) and the change
    records to append. `write=False` leaves the row alone (and appends nothing)."""

    item: StoredItem | None
    changes: tuple[FeedEntry, ...] = ()
    write: bool = True


Plan = Callable[[StoredItem | None], Planned]


@dataclass(frozen=True, slots=True)
class SortRange:
    """Which sort keys a query selects; every bound is optional (None: unbounded)."""

    lower: SortKey = None
    lower_inclusive: bool = True
    upper: SortKey = None
    upper_inclusive: bool = True
    prefix: str | None = None  # begins_with (strings only)


class TableStore(FeedStore, Protocol):
    """Items of many tables. `pk` is the partition key as canonical text (JSON of the
    value), `sk` the sort key value (None for tables without one). Sort keys order
    numerically for numbers and by code point for strings."""

    def get_item(self, table: str, pk: str, sk: SortKey) -> StoredItem | None: ...

    def write_item(self, table: str, pk: str, sk: SortKey,
                   plan: Plan) -> tuple[StoredItem | None, StoredItem | None]:
        """Run `plan` on the current row (locked) and persist its outcome and change
        records (to feed `table:<table>`) atomically. Returns (old, new). Exceptions from
        the plan propagate and nothing is written."""
        ...

    def query_items(self, table: str, pk: str, where: SortRange, *, after: SortKey,
                    limit: int, reverse: bool = False) -> list[StoredItem]:
        """Items of one partition, by sort key (descending if `reverse`), starting after
        the sort key `after` (None: from the start)."""
        ...

    def scan_items(self, table: str, *, after: tuple[str, SortKey] | None,
                   limit: int) -> list[tuple[str, SortKey, StoredItem]]:
        """All items of a table in (pk, sk) order, after the given key."""
        ...

    def expired_items(self, table: str, now: float, limit: int) -> list[tuple[str, SortKey]]:
        """Keys of items whose expires_at <= now (the TTL sweeper deletes them)."""
        ...

    def close(self) -> None: ...


# -- objects -----------------------------------------------------------------------------

STANDARD, ARCHIVE = "standard", "archive"
TIERS = (STANDARD, ARCHIVE)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str  # hex MD5 of the content, as S3 for a single-part upload
    content_type: str
    metadata: dict[str, str]
    last_modified: float
    version: str  # a new id for every put: changes when the content is replaced
    tier: str = STANDARD

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "key": self.key, "size": self.size, "etag": self.etag,
                "content_type": self.content_type, "metadata": dict(self.metadata),
                "last_modified": self.last_modified, "version": self.version,
                "tier": self.tier}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObjectInfo:
        return cls(d["bucket"], d["key"], d["size"], d["etag"], d["content_type"],
                   dict(d["metadata"]), d["last_modified"], d["version"],
                   d.get("tier", STANDARD))


def object_event_body(info: ObjectInfo, op: str, **extra: Any) -> str:
    """The body of an object feed record: the object's info and what happened
    (`op`: Put, Copy, Delete, LifecycleExpiration, LifecycleTransition)."""
    return json.dumps({"op": op, **info.to_dict(), **extra}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class TierUsage:
    objects: int = 0
    bytes: int = 0


class ObjectWriter(Protocol):
    """A put in progress: bytes go in with `write`; nothing is visible before `commit`."""

    def write(self, chunk: bytes) -> None: ...

    @property
    def size(self) -> int: ...

    def commit(self, content_type: str, metadata: dict[str, str], *,
               op: str = "Put", trace: str | None = None) -> ObjectInfo:
        """Make the data durable, then publish the object and its "created" feed record
        (feed `bucket:<bucket>`, carrying `trace`) in one transaction. Replaces any
        previous version."""
        ...

    def abort(self) -> None: ...


class ObjectStore(FeedStore, Protocol):
    def begin_put(self, bucket: str, key: str, *, shard: int) -> ObjectWriter: ...

    def head_object(self, bucket: str, key: str) -> ObjectInfo | None: ...

    def read_object(self, bucket: str, key: str, start: int = 0,
                    length: int | None = None) -> tuple[ObjectInfo, bytes] | None:
        """Bytes [start, start+length) of the current version (to the end if None)."""
        ...

    def list_objects(self, bucket: str, prefix: str, *, after: str | None,
                     limit: int) -> list[ObjectInfo]:
        """Objects whose key starts with `prefix`, in key (code point) order, after `after`."""
        ...

    def copy_object(self, bucket: str, key: str, dst_bucket: str, dst_key: str, *,
                    shard: int, trace: str | None = None) -> ObjectInfo | None:
        """A new version of dst with src's content, type and metadata (None: no src); its
        "created" record carries `trace`."""
        ...

    def delete_object(self, bucket: str, key: str, *, shard: int, version: str | None = None,
                      op: str = "Delete", trace: str | None = None) -> ObjectInfo | None:
        """Remove the object (only that version, if given) and append its "deleted" record
        (carrying `trace`).
        Returns what was deleted, None when there was nothing (no record then)."""
        ...

    def set_tier(self, bucket: str, key: str, version: str, tier: str, *, shard: int) -> bool:
        """Move that version to another storage tier ("archived" record); False when the
        object is gone, was replaced, or is on that tier already."""
        ...

    def usage(self, bucket: str) -> dict[str, TierUsage]: ...

    def close(self) -> None: ...


# -- cache -------------------------------------------------------------------------------


class CacheStore(Protocol):
    def cache_get(self, ns: str, key: str) -> bytes | None: ...

    def cache_set(self, ns: str, key: str, value: bytes, ttl_s: float | None, *,
                  only_if_absent: bool = False) -> bool:
        """Store `value` (for ttl_s seconds, or until deleted). With only_if_absent, store
        it only when no live value exists; returns whether it was stored."""
        ...

    def cache_delete(self, ns: str, key: str) -> bool: ...

    def cache_incr(self, ns: str, key: str, by: int, ttl_s: float | None) -> int:
        """Add `by` to a whole-number value atomically (a missing one counts as 0; the TTL
        applies when the key is created). Raises NotAnInteger for other values."""
        ...

    def cache_clear(self, ns: str) -> int: ...

    def close(self) -> None: ...


__all__ = [
    "ARCHIVE", "AccessDenied", "CacheStore", "ConditionFailed", "ERRORS", "FeedEntry",
    "FeedRecord", "FeedStore", "InvalidItem", "InvalidKey", "InvalidRange", "InvalidRequest",
    "NotAnInteger", "NotFound", "ObjectInfo", "ObjectNotFound", "ObjectStore", "ObjectTooLarge",
    "ObjectWriter", "Plan", "Planned", "STANDARD", "SortKey", "SortRange", "StateError",
    "StoreError", "StoredItem", "TIERS", "TableStore", "TierUsage", "UnknownResource",
    "object_event_body", "shard_of",
]
