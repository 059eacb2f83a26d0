"""The handles app code holds: `app.table(...)`, `app.cache(...)`, `app.bucket(...)`.

A handle is declared at import time and does no I/O then. Every call goes through the
binding of the running app (`app._invoker.state(kind, resource, op, args)`): in a worker
a CALL frame to the supervisor, in an in-process test a direct call. On the other side
ONE entry point (squall.sources.state.StateService.call) runs it, knowing which function
called: the place where least privilege (`uses=`) is enforced.
"""

from __future__ import annotations

import base64
import io
import json
import mimetypes
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..app_calls import NotRunning
from ..backends.state import InvalidRequest, ObjectInfo, ObjectNotFound
from .spec import BucketConfig, CacheConfig, TableConfig

CHUNK_BYTES = 1024 * 1024  # the size of one streamed upload or download piece
_META_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")
MAX_METADATA_BYTES = 2048  # S3's limit for user metadata


class Item(dict):
    """An item as stored: a dict of its attributes, plus its `version` (1 on insert, +1 on
    every write) for optimistic concurrency (`expected_version=`)."""

    version: int

    def __init__(self, data: dict[str, Any], version: int) -> None:
        super().__init__(data)
        self.version = version

    def __repr__(self) -> str:
        return f"Item({dict.__repr__(self)}, version={self.version})"


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a query or scan; pass `next_token` as `page_token` for the next."""

    items: list[Item]
    next_token: str | None = None

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class _Handle:
    kind = ""

    def __init__(self, app: Any, config: Any) -> None:
        self._app = app
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    def _call(self, op: str, args: list[Any]) -> Any:
        binding = self._app._invoker
        if binding is None or not hasattr(binding, "state"):
            raise NotRunning(f"app {self._app.name!r} is not running here: use {self.kind} "
                             f"{self.name!r} inside a function or under squall.testing")
        return binding.state(self.kind, self.name, op, args)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _item(pair: list | None) -> Item | None:
    return None if pair is None else Item(pair[0], pair[1])


class Table(_Handle):
    """A table of JSON items keyed by `key` (and `sort_key`), with a change stream."""

    kind = "table"
    config: TableConfig

    def _key(self, key: Any) -> Any:
        cfg = self.config
        if isinstance(key, dict):
            out = {cfg.key: key.get(cfg.key)}
            if cfg.sort_key is not None:
                out[cfg.sort_key] = key.get(cfg.sort_key)
            return out
        if isinstance(key, tuple) and cfg.sort_key is not None and len(key) == 2:
            return {cfg.key: key[0], cfg.sort_key: key[1]}
        return {cfg.key: key} if cfg.sort_key is None else key

    def get(self, key: Any) -> Item | None:
        """The item with this key, or None."""
        return _item(self._call("get", [self._key(key)]))

    def put(self, item: dict[str, Any], *, condition: dict[str, Any] | None = None,
            expected_version: int | None = None) -> Item:
        """Store the whole item (replacing any). `expected_version=0`: only if absent;
        `condition=`: only if the current item matches. Raises ConditionFailed."""
        return _item(self._call("put", [item, condition, expected_version]))  # type: ignore

    def update(self, key: Any, *, set: dict[str, Any] | None = None,
               remove: list[str] | None = None, increment: dict[str, Any] | None = None,
               append: dict[str, list] | None = None, condition: dict[str, Any] | None = None,
               expected_version: int | None = None) -> Item:
        """Change some attributes atomically (creating the item if absent): `set`,
        `remove`, `increment` (atomic counters), `append` (to lists). Returns the new item."""
        return _item(self._call("update", [self._key(key), {
            "set": set, "remove": remove, "increment": increment, "append": append},
            condition, expected_version]))  # type: ignore[return-value]

    def increment(self, key: Any, attribute: str, by: int | float = 1) -> int | float:
        """Add `by` to a number attribute atomically; returns the new value."""
        return self.update(key, increment={attribute: by})[attribute]

    def delete(self, key: Any, *, condition: dict[str, Any] | None = None,
               expected_version: int | None = None) -> Item | None:
        """Delete the item; returns what was deleted (None if there was nothing)."""
        return _item(self._call("delete", [self._key(key), condition, expected_version]))

    def query(self, key: Any, *, sort: dict[str, Any] | None = None,
              filter: dict[str, Any] | None = None, limit: int = 100, reverse: bool = False,
              page_token: str | None = None) -> Page:
        """Items with partition key `key`, in sort-key order. `sort` selects a range:
        {">=": a, "<": b}, {"between": [a, b]}, {"begins_with": "2024-"}, {"=": x}.
        `filter` is a condition on the other attributes."""
        items, token = self._call("query", [key, sort, filter, limit, reverse, page_token])
        return Page([Item(d, v) for d, v in items], token)

    def scan(self, *, filter: dict[str, Any] | None = None, limit: int = 100,
             page_token: str | None = None) -> Page:
        """Every item of the table, a page at a time, optionally filtered."""
        items, token = self._call("scan", [filter, limit, page_token])
        return Page([Item(d, v) for d, v in items], token)

    def query_all(self, key: Any, **kw: Any) -> Iterator[Item]:
        token = None
        while True:
            page = self.query(key, page_token=token, **kw)
            yield from page
            token = page.next_token
            if token is None:
                return

    def scan_all(self, **kw: Any) -> Iterator[Item]:
        token = None
        while True:
            page = self.scan(page_token=token, **kw)
            yield from page
            token = page.next_token
            if token is None:
                return


_MISS = object()


class Cache(_Handle):
    """A key -> JSON value cache with TTLs and atomic counters (embedded or Redis)."""

    kind = "cache"
    config: CacheConfig

    def get(self, key: str, default: Any = None) -> Any:
        raw = self._call("get", [key])
        return default if raw is None else json.loads(raw)

    def set(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        self._call("set", [key, _encode(self.name, value), ttl_s, False])

    def add(self, key: str, value: Any, ttl_s: float | None = None) -> bool:
        """Set only if the key holds no live value; True when it was set."""
        return self._call("set", [key, _encode(self.name, value), ttl_s, True])

    def delete(self, key: str) -> bool:
        return self._call("delete", [key])

    def incr(self, key: str, by: int = 1, ttl_s: float | None = None) -> int:
        """Add `by` atomically (a missing key starts at 0); the TTL applies on creation."""
        if isinstance(by, bool) or not isinstance(by, int):
            raise InvalidRequest(f"cache {self.name!r}: incr needs a whole number, got {by!r}")
        return self._call("incr", [key, by, ttl_s])

    def get_or_compute(self, key: str, compute: Callable[[], Any],
                       ttl_s: float | None = None) -> Any:
        """The cached value, or `compute()` stored for `ttl_s`. Concurrent misses may each
        compute; the first value stored wins and every caller gets that one."""
        raw = self._call("get", [key])
        if raw is not None:
            return json.loads(raw)
        value = compute()
        encoded = _encode(self.name, value)
        if self._call("set", [key, encoded, ttl_s, True]):
            return value
        raw = self._call("get", [key])
        return value if raw is None else json.loads(raw)

    def clear(self) -> int:
        """Delete every key of this cache; returns how many."""
        return self._call("clear", [])


def _encode(cache: str, value: Any) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"cache {cache!r}: the value is not JSON-serialisable: "
                             f"{exc}") from None


@dataclass(frozen=True, slots=True)
class Object:
    """An object's bytes (all, or the requested range) and its info."""

    info: ObjectInfo
    body: bytes
    range: tuple[int, int] | None = None  # (first, last) byte positions, inclusive

    @property
    def key(self) -> str:
        return self.info.key

    @property
    def etag(self) -> str:
        return self.info.etag

    @property
    def content_type(self) -> str:
        return self.info.content_type

    @property
    def metadata(self) -> dict[str, str]:
        return self.info.metadata

    @property
    def size(self) -> int:
        """The whole object's size (the body may be a range of it)."""
        return self.info.size

    def text(self, encoding: str = "utf-8") -> str:
        return self.body.decode(encoding)


@dataclass(frozen=True, slots=True)
class Listing:
    """One page of a listing: objects, and with a delimiter the common prefixes
    ("folders") in place of the objects under them."""

    objects: list[ObjectInfo]
    prefixes: list[str] = field(default_factory=list)
    next_token: str | None = None

    @property
    def is_truncated(self) -> bool:
        return self.next_token is not None

    @property
    def keys(self) -> list[str]:
        return [o.key for o in self.objects]

    def __iter__(self) -> Iterator[ObjectInfo]:
        return iter(self.objects)


def check_metadata(bucket: str, metadata: Any) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidRequest(f"bucket {bucket!r}: metadata must be a dict of str to str")
    out = {}
    for k, v in metadata.items():
        if not isinstance(k, str) or not _META_RE.fullmatch(k.lower()):
            raise InvalidRequest(f"bucket {bucket!r}: metadata name {k!r} is invalid: use "
                                 "letters, digits, '-' or '_'")
        if not isinstance(v, str):
            raise InvalidRequest(f"bucket {bucket!r}: metadata {k!r} must be a string")
        out[k.lower()] = v
    size = sum(len(k.encode()) + len(v.encode()) for k, v in out.items())
    if size > MAX_METADATA_BYTES:
        raise InvalidRequest(f"bucket {bucket!r}: user metadata is {size} bytes, over the "
                             f"{MAX_METADATA_BYTES}-byte limit")
    return out


def _chunks(data: Any) -> Iterator[bytes]:
    if isinstance(data, (str, os.PathLike)):
        with open(data, "rb") as f:
            yield from _chunks(f)
        return
    read = getattr(data, "read", None)
    if read is not None:
        while True:
            chunk = read(CHUNK_BYTES)
            if not chunk:
                return
            if isinstance(chunk, str):
                chunk = chunk.encode()
            yield chunk
        return
    for chunk in data:
        if isinstance(chunk, str):
            chunk = chunk.encode()
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise InvalidRequest(f"an object body iterator must yield bytes, got "
                                 f"{type(chunk).__name__}")
        yield bytes(chunk)


class Bucket(_Handle):
    """Objects under keys, with events, lifecycle tiers and ETags (S3-like)."""

    kind = "bucket"
    config: BucketConfig

    def put(self, key: str, data: bytes | str | Any, *, content_type: str | None = None,
            metadata: dict[str, str] | None = None) -> ObjectInfo:
        """Store an object from bytes, a str, a binary file, or an iterator of bytes
        (streamed in pieces, never whole in memory). Use `put_file` for a path."""
        ctype = content_type or mimetypes.guess_type(key)[0] or "application/octet-stream"
        meta = check_metadata(self.name, metadata)
        if isinstance(data, str):
            data = data.encode()
            if content_type is None and ctype == "application/octet-stream":
                ctype = "text/plain; charset=utf-8"
        if isinstance(data, (bytes, bytearray, memoryview)) and len(data) <= CHUNK_BYTES:
            return ObjectInfo.from_dict(self._call("put", [key, bytes(data), ctype, meta]))
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = io.BytesIO(bytes(data))
        upload = self._call("upload_begin", [key])
        try:
            for chunk in _chunks(data):
                if chunk:
                    self._call("upload_part", [upload, chunk])
            return ObjectInfo.from_dict(self._call("upload_commit", [upload, ctype, meta]))
        except BaseException:
            try:
                self._call("upload_abort", [upload])
            except Exception:  # the original error matters more
                pass
            raise

    def put_file(self, key: str, path: str | os.PathLike, **kw: Any) -> ObjectInfo:
        if kw.get("content_type") is None:
            kw["content_type"] = mimetypes.guess_type(str(path))[0] or \
                mimetypes.guess_type(key)[0]
        with open(path, "rb") as f:
            return self.put(key, f, **kw)

    def get(self, key: str, *, range: tuple[int, int | None] | None = None) -> Object:
        """The object's bytes; `range=(first, last)` gives bytes first..last inclusive
        (HTTP Range semantics; last=None: to the end). Raises ObjectNotFound."""
        first, last = (range if range is not None else (None, None))
        info, body, span = self._call("get", [key, first, last])
        return Object(ObjectInfo.from_dict(info), body, tuple(span) if span else None)

    def iter_bytes(self, key: str, chunk_size: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The object in pieces (range reads); raises if it is replaced meanwhile."""
        info = self.head(key)
        pos = 0
        while pos < info.size:
            obj = self.get(key, range=(pos, pos + chunk_size - 1))
            if obj.info.version != info.version:
                raise ObjectNotFound(f"bucket {self.name!r}: object {key!r} was replaced "
                                     "while being read")
            yield obj.body
            pos += len(obj.body)

    def download(self, key: str, path: str | os.PathLike) -> ObjectInfo:
        info = self.head(key)
        with open(path, "wb") as f:
            for chunk in self.iter_bytes(key):
                f.write(chunk)
        return info

    def head(self, key: str) -> ObjectInfo:
        """The object's info without its bytes. Raises ObjectNotFound."""
        return ObjectInfo.from_dict(self._call("head", [key]))

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
            return True
        except ObjectNotFound:
            return False

    def list(self, prefix: str = "", *, delimiter: str | None = None, limit: int = 1000,
             continuation_token: str | None = None) -> Listing:
        """Objects under `prefix` in key order, a page of at most `limit` entries; with a
        delimiter (usually "/"), keys below the next delimiter fold into `prefixes`."""
        objs, prefixes, token = self._call("list", [prefix, delimiter, limit,
                                                    continuation_token])
        return Listing([ObjectInfo.from_dict(o) for o in objs], prefixes, token)

    def list_all(self, prefix: str = "") -> Iterator[ObjectInfo]:
        token = None
        while True:
            page = self.list(prefix, continuation_token=token)
            yield from page
            token = page.next_token
            if token is None:
                return

    def copy(self, key: str, dst_key: str, *, dst_bucket: str | None = None) -> ObjectInfo:
        """Copy content, type and metadata to `dst_key` (in this or another bucket)."""
        return ObjectInfo.from_dict(self._call("copy", [key, dst_bucket or self.name,
                                                        dst_key]))

    def delete(self, key: str) -> bool:
        """Delete the object; False when there was none (not an error, as in S3)."""
        return self._call("delete", [key])

    def usage(self) -> dict[str, dict[str, int]]:
        """Storage used per tier: {"standard": {"objects": n, "bytes": b}, "archive": …}."""
        return self._call("usage", [])


def encode_token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()
                                    ).decode().rstrip("=")


def decode_token(token: Any, what: str) -> Any:
    if not isinstance(token, str):
        raise InvalidRequest(f"{what}: a page token must be a string")
    try:
        return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError):
        raise InvalidRequest(f"{what}: the page token {token[:40]!r} is malformed") from None


__all__ = ["Bucket", "Cache", "Item", "Listing", "Object", "Page", "Table"]
