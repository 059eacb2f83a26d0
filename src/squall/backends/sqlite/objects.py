"""The embedded store's objects: bytes in files, metadata and events in SQLite.

A put streams into `objects/tmp/<random>.part`, computing the MD5 as it goes; commit
fsyncs the file, renames it to `objects/<tier>/<bucket>/<vv>/<version>` (a fresh random
version id: user keys never become paths), fsyncs the directory, and only then publishes
the metadata row and the "created" feed record in one transaction. A crash before the
commit leaves at most an orphan file, never a visible object without its bytes or an
event for an object that is not durable. Files are immutable once published: copies are
hard links, tier moves link the file into the other tier before the row says so.

A mixin of SqliteStateStore.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import uuid
from pathlib import Path
from typing import Any, Callable

from ..base import StoreError
from ..state import (ARCHIVE, STANDARD, FeedEntry, ObjectInfo, TierUsage,
                     object_event_body)

_COLS = "bucket, key, size, etag, content_type, metadata, last_modified, version, tier"


def _info(row: tuple) -> ObjectInfo:
    b, k, size, etag, ctype, meta, lm, version, tier = row
    return ObjectInfo(b, k, size, etag, ctype, json.loads(meta), lm, version, tier)


def _link_or_copy(src: Path, dst: Path, tmp: Path) -> None:
    """Give `dst` the bytes of `src`: a hard link (published files never change), or on
    another filesystem a durable copy."""
    try:
        os.link(src, dst)
    except (FileNotFoundError, FileExistsError):
        raise
    except OSError:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Writer:
    def __init__(self, store: ObjectOps, bucket: str, key: str, shard: int) -> None:
        self.store, self.bucket, self.key, self.shard = store, bucket, key, shard
        self.tmp = store.objects_dir / "tmp" / f"{uuid.uuid4().hex}.part"
        self.file = open(self.tmp, "wb")
        self.md5 = hashlib.md5()
        self._size = 0
        self.done = False

    @property
    def size(self) -> int:
        return self._size

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.md5.update(chunk)
        self._size += len(chunk)

    def commit(self, content_type: str, metadata: dict[str, str], *,
               op: str = "Put", trace: str | None = None) -> ObjectInfo:
        self.done = True
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
        finally:
            self.file.close()
        version = uuid.uuid4().hex
        final = self.store._blob(STANDARD, self.bucket, version)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp, final)
        _fsync_dir(final.parent)
        info = ObjectInfo(self.bucket, self.key, self._size, self.md5.hexdigest(),
                          content_type, dict(metadata), self.store.clock(), version, STANDARD)
        try:
            self.store._publish(info, self.shard, op, trace)
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        return info

    def abort(self) -> None:
        if not self.done:
            self.done = True
            self.file.close()
            self.tmp.unlink(missing_ok=True)


class ObjectOps:
    objects_dir: Path
    clock: Callable[[], float]
    _tx: Any
    _read: Any
    _append: Callable[[sqlite3.Connection, str, FeedEntry, float], int]

    def _blob(self, tier: str, bucket: str, version: str) -> Path:
        return self.objects_dir / tier / bucket / version[:2] / version

    def _publish(self, info: ObjectInfo, shard: int, op: str,
                 trace: str | None = None) -> None:
        """The new version's row and its "created" record, in one transaction; the
        replaced version's file goes after the commit."""
        with self._tx() as db:
            old = db.execute(f"SELECT {_COLS} FROM objects WHERE bucket = ? AND key = ?",
                             (info.bucket, info.key)).fetchone()
            db.execute(f"INSERT OR REPLACE INTO objects ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?)",
                       (info.bucket, info.key, info.size, info.etag, info.content_type,
                        json.dumps(info.metadata), info.last_modified, info.version,
                        info.tier))
            self._append(db, f"bucket:{info.bucket}", FeedEntry(
                shard, info.key, "created", object_event_body(info, op), trace),
                info.last_modified)
        if old is not None:
            self._drop_file(_info(old))

    def _drop_file(self, info: ObjectInfo) -> None:
        self._blob(info.tier, info.bucket, info.version).unlink(missing_ok=True)

    def begin_put(self, bucket: str, key: str, *, shard: int) -> _Writer:
        return _Writer(self, bucket, key, shard)

    def head_object(self, bucket: str, key: str) -> ObjectInfo | None:
        rows = self._read(f"SELECT {_COLS} FROM objects WHERE bucket = ? AND key = ?",
                          (bucket, key))
        return _info(rows[0]) if rows else None

    def read_object(self, bucket: str, key: str, start: int = 0,
                    length: int | None = None) -> tuple[ObjectInfo, bytes] | None:
        for _ in range(3):  # a concurrent replace may remove the file we looked up
            info = self.head_object(bucket, key)
            if info is None:
                return None
            try:
                with open(self._blob(info.tier, bucket, info.version), "rb") as f:
                    f.seek(start)
                    return info, f.read(-1 if length is None else length)
            except FileNotFoundError:
                continue
        return None

    def list_objects(self, bucket: str, prefix: str, *, after: str | None,
                     limit: int) -> list[ObjectInfo]:
        sql = f"SELECT {_COLS} FROM objects WHERE bucket = ?"
        args: list[Any] = [bucket]
        if prefix:
            sql += " AND key >= ? AND substr(key, 1, ?) = ?"
            args += [prefix, len(prefix), prefix]
        if after is not None:
            sql += " AND key > ?"
            args.append(after)
        sql += " ORDER BY key LIMIT ?"
        args.append(limit)
        return [_info(r) for r in self._read(sql, args)]

    def copy_object(self, bucket: str, key: str, dst_bucket: str, dst_key: str, *,
                    shard: int, trace: str | None = None) -> ObjectInfo | None:
        version = uuid.uuid4().hex
        final = self._blob(STANDARD, dst_bucket, version)
        final.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):  # the source may be replaced while we link it
            src = self.head_object(bucket, key)
            if src is None:
                return None
            source = self._blob(src.tier, bucket, src.version)
            try:
                _link_or_copy(source, final, self.objects_dir / "tmp" / f"{version}.part")
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise StoreError(f"object {key!r} of bucket {bucket!r} has no data file "
                                     f"({source})") from None
        _fsync_dir(final.parent)
        info = ObjectInfo(dst_bucket, dst_key, src.size, src.etag, src.content_type,
                          dict(src.metadata), self.clock(), version, STANDARD)
        try:
            self._publish(info, shard, "Copy", trace)
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        return info

    def delete_object(self, bucket: str, key: str, *, shard: int, version: str | None = None,
                      op: str = "Delete", trace: str | None = None) -> ObjectInfo | None:
        with self._tx() as db:
            row = db.execute(f"SELECT {_COLS} FROM objects WHERE bucket = ? AND key = ?",
                             (bucket, key)).fetchone()
            if row is None:
                return None
            info = _info(row)
            if version is not None and info.version != version:
                return None
            db.execute("DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, key))
            now = self.clock()
            self._append(db, f"bucket:{bucket}", FeedEntry(
                shard, key, "deleted", object_event_body(info, op), trace), now)
        self._drop_file(info)
        return info

    def set_tier(self, bucket: str, key: str, version: str, tier: str, *, shard: int) -> bool:
        info = self.head_object(bucket, key)
        if info is None or info.version != version or info.tier == tier:
            return False
        src = self._blob(info.tier, bucket, version)
        dst = self._blob(tier, bucket, version)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            _link_or_copy(src, dst, self.objects_dir / "tmp" / f"{version}.{tier}.part")
        except (FileExistsError, FileNotFoundError):
            return False  # another sweeper moves it, or it is gone
        _fsync_dir(dst.parent)
        with self._tx() as db:
            moved = db.execute("UPDATE objects SET tier = ? WHERE bucket = ? AND key = ? AND "
                               "version = ? AND tier = ?",
                               (tier, bucket, key, version, info.tier)).rowcount
            if moved:
                archived = ObjectInfo(bucket, key, info.size, info.etag, info.content_type,
                                      info.metadata, info.last_modified, version, tier)
                self._append(db, f"bucket:{bucket}", FeedEntry(
                    shard, key, "archived" if tier == ARCHIVE else "restored",
                    object_event_body(archived, "LifecycleTransition")), self.clock())
        (src if moved else dst).unlink(missing_ok=True)
        return bool(moved)

    def usage(self, bucket: str) -> dict[str, TierUsage]:
        out = {STANDARD: TierUsage(), ARCHIVE: TierUsage()}
        for tier, n, size in self._read("SELECT tier, COUNT(*), COALESCE(SUM(size), 0) FROM "
                                        "objects WHERE bucket = ? GROUP BY tier", (bucket,)):
            out[tier] = TierUsage(n, size)
        return out
