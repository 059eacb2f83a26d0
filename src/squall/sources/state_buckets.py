"""The state service's buckets: puts (whole and in upload sessions), gets with ranges,
head, list, copy, delete and usage. A mixin of StateService (squall.sources.state), which
dispatches `bucket` calls here after `authorize`. The writes that cause object events
(put, upload_commit, copy, delete) take the caller's `trace` for the event's record."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..backends.state import (InvalidRange, InvalidRequest, ObjectNotFound, ObjectTooLarge,
                              UnknownResource, shard_of)
from ..state.handles import check_metadata, decode_token, encode_token
from ..state.keys import check_object_key, check_prefix

MAX_GET_BYTES = 64 * 1024 * 1024  # a whole-object get in one call; larger: use ranges
_MAX_CHAR = "\U0010ffff"


@dataclass
class _Upload:
    writer: Any
    bucket: str
    key: str
    caller: str | None
    limit: int
    touched: float


class BucketOps:
    store: Any
    clock: Any
    _uploads: dict[str, _Upload]
    _limit: Any

    def _commit(self, spec: Any, writer: Any, content_type: Any, metadata: Any,
                trace: str | None) -> Any:
        if not isinstance(content_type, str) or not content_type or len(content_type) > 256:
            writer.abort()
            raise InvalidRequest(f"bucket {spec.name!r}: content_type must be a short string")
        try:
            meta = check_metadata(spec.name, metadata)
        except Exception:
            writer.abort()
            raise
        info = writer.commit(content_type, meta, trace=trace)
        self.signal.notify(spec.feed)
        return info.to_dict()

    def _bucket_put(self, spec: Any, key: str, data: bytes, content_type: str = \
                    "application/octet-stream", metadata: Any = None, *,
                    caller: str | None, trace: str | None = None) -> Any:
        check_object_key(spec.name, key)
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidRequest(f"bucket {spec.name!r}: object data travels as bytes")
        if len(data) > spec.max_object_bytes:
            raise ObjectTooLarge(f"bucket {spec.name!r}: object {key!r} is {len(data)} bytes, "
                                 f"over the bucket's max_object_bytes={spec.max_object_bytes}")
        writer = self.store.begin_put(spec.name, key, shard=shard_of(key, spec.shards))
        try:
            writer.write(bytes(data))
        except BaseException:
            writer.abort()
            raise
        return self._commit(spec, writer, content_type, metadata, trace)

    def _upload(self, spec: Any, upload_id: Any, caller: str | None) -> _Upload:
        up = self._uploads.get(upload_id) if isinstance(upload_id, str) else None
        if up is None or up.bucket != spec.name or up.caller != caller:
            raise InvalidRequest(f"bucket {spec.name!r}: no upload {upload_id!r} in progress "
                                 "(finished, aborted, or idle too long)")
        up.touched = time.monotonic()
        return up

    def _bucket_upload_begin(self, spec: Any, key: str, *, caller: str | None) -> str:
        check_object_key(spec.name, key)
        upload_id = uuid.uuid4().hex
        writer = self.store.begin_put(spec.name, key, shard=shard_of(key, spec.shards))
        self._uploads[upload_id] = _Upload(writer, spec.name, key, caller,
                                           spec.max_object_bytes, time.monotonic())
        return upload_id

    def _bucket_upload_part(self, spec: Any, upload_id: str, chunk: bytes, *,
                            caller: str | None) -> int:
        up = self._upload(spec, upload_id, caller)
        if up.writer.size + len(chunk) > up.limit:
            self._uploads.pop(upload_id, None)
            up.writer.abort()
            raise ObjectTooLarge(f"bucket {spec.name!r}: object {up.key!r} is over the "
                                 f"bucket's max_object_bytes={up.limit}; upload aborted")
        up.writer.write(bytes(chunk))
        return up.writer.size

    def _bucket_upload_commit(self, spec: Any, upload_id: str, content_type: str,
                              metadata: Any = None, *, caller: str | None,
                              trace: str | None = None) -> Any:
        up = self._upload(spec, upload_id, caller)
        self._uploads.pop(upload_id, None)
        return self._commit(spec, up.writer, content_type, metadata, trace)

    def _bucket_upload_abort(self, spec: Any, upload_id: str, *, caller: str | None) -> None:
        up = self._uploads.pop(upload_id, None)
        if up is not None:
            up.writer.abort()

    def _bucket_head(self, spec: Any, key: str, *, caller: str | None) -> Any:
        info = self.store.head_object(spec.name, check_object_key(spec.name, key))
        if info is None:
            raise ObjectNotFound(f"bucket {spec.name!r} has no object {key!r}")
        return info.to_dict()

    def _bucket_get(self, spec: Any, key: str, first: Any = None, last: Any = None, *,
                    caller: str | None) -> Any:
        check_object_key(spec.name, key)
        missing = ObjectNotFound(f"bucket {spec.name!r} has no object {key!r}")
        if first is None and last is None:
            info = self.store.head_object(spec.name, key)
            if info is not None and info.size > MAX_GET_BYTES:
                raise InvalidRequest(f"bucket {spec.name!r}: object {key!r} is {info.size} "
                                     f"bytes; read it in ranges (iter_bytes, download)")
            got = self.store.read_object(spec.name, key)
            if got is None:
                raise missing
            return [got[0].to_dict(), got[1], None]
        for v in (first, last):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise InvalidRange(f"bucket {spec.name!r}: a range is (first, last) byte "
                                   f"positions >= 0, got ({first!r}, {last!r})")
        first = first or 0
        info = self.store.head_object(spec.name, key)
        if info is None:
            raise missing
        if first >= info.size or (last is not None and last < first):
            raise InvalidRange(f"bucket {spec.name!r}: range ({first}, {last}) is not "
                               f"satisfiable for object {key!r} of {info.size} bytes")
        end = info.size - 1 if last is None else min(last, info.size - 1)
        if end - first + 1 > MAX_GET_BYTES:
            raise InvalidRequest(f"bucket {spec.name!r}: a range may be at most "
                                 f"{MAX_GET_BYTES} bytes")
        got = self.store.read_object(spec.name, key, first, end - first + 1)
        if got is None:
            raise missing
        return [got[0].to_dict(), got[1], [first, first + len(got[1]) - 1]]

    def _bucket_list(self, spec: Any, prefix: str = "", delimiter: Any = None,
                     limit: int = 1000, token: Any = None, *, caller: str | None) -> Any:
        what = f"bucket {spec.name!r}"
        check_prefix(spec.name, prefix)
        limit = self._limit(limit, what)
        if delimiter is not None and (not isinstance(delimiter, str) or not delimiter):
            raise InvalidRequest(f"{what}: delimiter must be a non-empty string or None")
        after = decode_token(token, what)["a"] if token is not None else None
        objects: list[Any] = []
        prefixes: list[str] = []
        while len(objects) + len(prefixes) < limit:
            page = self.store.list_objects(spec.name, prefix, after=after, limit=limit)
            if not page:
                return [objects, prefixes, None]
            for info in page:
                rest = info.key[len(prefix):]
                cut = rest.find(delimiter) if delimiter else -1
                if cut < 0:
                    objects.append(info.to_dict())
                    after = info.key
                else:
                    common = prefix + rest[:cut + len(delimiter)]
                    if not prefixes or prefixes[-1] != common:
                        prefixes.append(common)
                    after = common + _MAX_CHAR  # skip everything under it
                    break
                if len(objects) + len(prefixes) >= limit:
                    break
        more = self.store.list_objects(spec.name, prefix, after=after, limit=1)
        return [objects, prefixes, encode_token({"a": after}) if more else None]

    def _bucket_copy(self, spec: Any, key: str, dst_bucket: str, dst_key: str, *,
                     caller: str | None, trace: str | None = None) -> Any:
        check_object_key(spec.name, key)
        dst = self.decls.buckets.get(dst_bucket)
        if dst is None:
            raise UnknownResource(f"app has no bucket named {dst_bucket!r} to copy into")
        self.authorize(caller, "bucket", dst_bucket, "write")
        check_object_key(dst_bucket, dst_key)
        info = self.store.copy_object(spec.name, key, dst_bucket, dst_key,
                                      shard=shard_of(dst_key, dst.shards), trace=trace)
        if info is None:
            raise ObjectNotFound(f"bucket {spec.name!r} has no object {key!r} to copy")
        self.signal.notify(dst.feed)
        return info.to_dict()

    def _bucket_delete(self, spec: Any, key: str, *, caller: str | None,
                       trace: str | None = None) -> bool:
        check_object_key(spec.name, key)
        gone = self.store.delete_object(spec.name, key, shard=shard_of(key, spec.shards),
                                        trace=trace)
        if gone is not None:
            self.signal.notify(spec.feed)
        return gone is not None

    def _bucket_usage(self, spec: Any, *, caller: str | None) -> Any:
        return {tier: {"objects": u.objects, "bytes": u.bytes}
                for tier, u in self.store.usage(spec.name).items()}

    def usage(self) -> dict[str, dict[str, dict[str, int]]]:
        """Storage used per bucket and tier (for the CLI and the admin API)."""
        return {name: self._bucket_usage(spec, caller=None)
                for name, spec in self.decls.buckets.items()}
