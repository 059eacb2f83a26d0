"""The shared store's objects: metadata, events and the bytes themselves in PostgreSQL, so
nodes on different machines share them with no shared filesystem. A mixin of
PgStateStore.

Bytes are `bytea` chunks of CHUNK_BYTES (1 MiB) in `state_chunks`, keyed by (blob, n),
where the blob id is the object version's id; a range read fetches only the chunks it
overlaps, cut to the range on the server. A put streams: full chunks are committed as
they fill (with an `state_uploads` row saying whose they are and when they were last
touched), the last piece goes in with the commit, and only then, in ONE transaction, the
object row and its "created" feed record appear. So a version is never visible, nor
announced, before all its bytes are durable. A crash mid-upload leaves chunks that no
object points to; `sweep_uploads` (run by the state sweeper) drops those untouched for
ORPHAN_AFTER_S.

Every change of a key (publish, copy onto it, copy from it, delete, tier move) locks it
first (an advisory lock, see state.py), so a copy never reads a source whose chunks are
being deleted, and a replaced version's chunks go in the transaction that replaces it:
readers keep their snapshot (a read is one statement), so they see the old version whole
or the new one whole. Delete and tier moves may name the version they expect, so a
lifecycle sweep never acts on an object that was overwritten since it looked. Tiers are a
label here: archived bytes stay in the same table.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from typing import Any, Callable

from ..base import StoreError
from ..state import (ARCHIVE, STANDARD, FeedEntry, ObjectInfo, TierUsage,
                     object_event_body)
from .schema import NOW

CHUNK_BYTES = 1024 * 1024
CHUNKS_PER_STATEMENT = 8  # a flush sends at most this many chunks in one statement
ORPHAN_AFTER_S = 24 * 3600.0  # an upload untouched this long is abandoned

OBJECT_TABLES = (
    """CREATE TABLE IF NOT EXISTS state_objects (
        bucket text NOT NULL,
        key text COLLATE "C" NOT NULL,
        size bigint NOT NULL,
        etag text NOT NULL,
        content_type text NOT NULL,
        metadata text NOT NULL,
        last_modified double precision NOT NULL,
        version text NOT NULL,
        tier text NOT NULL,
        PRIMARY KEY (bucket, key))""",
    """CREATE TABLE IF NOT EXISTS state_chunks (
        blob text NOT NULL,
        n integer NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (blob, n))""",
    """CREATE TABLE IF NOT EXISTS state_uploads (
        blob text PRIMARY KEY,
        bucket text NOT NULL,
        key text NOT NULL,
        touched double precision NOT NULL)""",
)

_COLS = "bucket, key, size, etag, content_type, metadata, last_modified, version, tier"

_UPSERT = f"""
INSERT INTO state_objects ({_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (bucket, key) DO UPDATE SET size = excluded.size, etag = excluded.etag,
    content_type = excluded.content_type, metadata = excluded.metadata,
    last_modified = excluded.last_modified, version = excluded.version, tier = excluded.tier"""

_SAVE_CHUNKS = """
INSERT INTO state_chunks (blob, n, data)
SELECT %(blob)s, c.n, c.data FROM unnest(%(ns)s::int4[], %(data)s::bytea[]) AS c(n, data)"""

_TOUCH = f"""
INSERT INTO state_uploads (blob, bucket, key, touched)
VALUES (%(blob)s, %(bucket)s, %(key)s, {NOW})
ON CONFLICT (blob) DO UPDATE SET touched = excluded.touched"""

# one statement, one snapshot: the row and exactly the chunks [start, stop) overlaps,
# each cut to the range
_READ = f"""
WITH o AS (
    SELECT {_COLS}, least(size, %(start)s::int8 + COALESCE(%(length)s::int8, size)) AS stop
    FROM state_objects WHERE bucket = %(bucket)s AND key = %(key)s)
SELECT {", ".join(f"o.{c}" for c in _COLS.split(", "))}, o.stop, c.n,
       substring(c.data FROM (greatest(%(start)s::int8 - c.n * %(cs)s::int8, 0) + 1)::int4
                 FOR (least(o.stop, (c.n + 1) * %(cs)s::int8)
                      - greatest(%(start)s::int8, c.n * %(cs)s::int8))::int4)
FROM o LEFT JOIN state_chunks AS c
    ON c.blob = o.version AND c.n >= %(start)s::int8 / %(cs)s::int8
       AND c.n * %(cs)s::int8 < o.stop
ORDER BY c.n"""

_SWEEP = f"""
WITH gone AS (
    DELETE FROM state_uploads WHERE touched < {NOW} - %(older)s RETURNING blob),
chunks AS (
    DELETE FROM state_chunks AS c USING gone WHERE c.blob = gone.blob RETURNING 1)
SELECT count(*) FROM gone"""


def _info(row: tuple | list) -> ObjectInfo:
    b, k, size, etag, ctype, meta, lm, version, tier = row
    return ObjectInfo(b, k, size, etag, ctype, json.loads(meta), lm, version, tier)


def _row(info: ObjectInfo) -> tuple:
    return (info.bucket, info.key, info.size, info.etag, info.content_type,
            json.dumps(info.metadata), info.last_modified, info.version, info.tier)


class _Writer:
    """A put in progress: full chunks are committed as they fill, unseen until commit."""

    def __init__(self, store: ObjectOps, bucket: str, key: str, shard: int) -> None:
        self.store, self.bucket, self.key, self.shard = store, bucket, key, shard
        self.blob = uuid.uuid4().hex  # the version id, if it commits
        self.md5 = hashlib.md5()
        self.buf = bytearray()
        self.saved = 0  # chunks committed so far
        self._size = 0
        self.done = False

    @property
    def size(self) -> int:
        return self._size

    def _check_open(self) -> None:
        if self.done:
            raise StoreError(f"the upload of {self.key!r} to bucket {self.bucket!r} is "
                             "already committed or aborted")

    def write(self, chunk: bytes) -> None:
        self._check_open()
        self.md5.update(chunk)
        self._size += len(chunk)
        self.buf += chunk
        if len(self.buf) >= CHUNK_BYTES:
            full = len(self.buf) // CHUNK_BYTES
            pieces = [bytes(self.buf[i * CHUNK_BYTES:(i + 1) * CHUNK_BYTES])
                      for i in range(full)]
            self.store._save_chunks(self, pieces)
            del self.buf[:full * CHUNK_BYTES]
            self.saved += full

    def commit(self, content_type: str, metadata: dict[str, str], *,
               op: str = "Put", trace: str | None = None) -> ObjectInfo:
        self._check_open()
        self.done = True
        try:
            return self.store._publish(self, content_type, dict(metadata), op, trace)
        except BaseException:
            with contextlib.suppress(StoreError):  # the error that matters is the first
                self.store._drop_upload(self)
            raise

    def abort(self) -> None:
        if not self.done:
            self.done = True
            self.buf.clear()
            self.store._drop_upload(self)


class ObjectOps:
    db: Any
    _lock: Callable[..., None]
    _now: Callable[[], float | None]
    _append: Callable[..., int]

    # -- writing -----------------------------------------------------------------------

    def begin_put(self, bucket: str, key: str, *, shard: int) -> _Writer:
        return _Writer(self, bucket, key, shard)

    def _save_chunks(self, w: _Writer, pieces: list[bytes]) -> None:
        with self.db.transaction(f"cannot upload {w.key!r} to bucket {w.bucket!r}") as conn:
            conn.execute(_TOUCH, {"blob": w.blob, "bucket": w.bucket, "key": w.key,
                                  "now": self._now()})
            for i in range(0, len(pieces), CHUNKS_PER_STATEMENT):
                batch = pieces[i:i + CHUNKS_PER_STATEMENT]
                conn.execute(_SAVE_CHUNKS, {"blob": w.blob, "data": batch,
                                            "ns": list(range(w.saved + i,
                                                             w.saved + i + len(batch)))})

    def _drop_upload(self, w: _Writer) -> None:
        if w.saved:  # nothing reached the database otherwise
            with self.db.transaction(f"cannot abort the upload of {w.key!r} to bucket "
                                     f"{w.bucket!r}") as conn:
                conn.execute("DELETE FROM state_chunks WHERE blob = %s", (w.blob,))
                conn.execute("DELETE FROM state_uploads WHERE blob = %s", (w.blob,))

    def _publish(self, w: _Writer, content_type: str, metadata: dict[str, str],
                 op: str, trace: str | None = None) -> ObjectInfo:
        """The last piece, the object row (replacing any previous version, whose chunks
        go) and its "created" record, in one transaction."""
        with self.db.transaction(f"cannot store {w.key!r} in bucket {w.bucket!r}") as conn:
            self._lock(conn, ("object", w.bucket, w.key))
            if w.saved and conn.execute("DELETE FROM state_uploads WHERE blob = %s",
                                        (w.blob,)).rowcount == 0:
                raise StoreError(f"the upload of {w.key!r} to bucket {w.bucket!r} was idle "
                                 "so long that its data was swept; upload it again")
            if w.buf:
                conn.execute(_SAVE_CHUNKS, {"blob": w.blob, "ns": [w.saved],
                                            "data": [bytes(w.buf)]})
            info = self._replace(conn, ObjectInfo(
                w.bucket, w.key, w.size, w.md5.hexdigest(), content_type, metadata, 0.0,
                w.blob, STANDARD), w.shard, op, trace)
        w.buf.clear()
        return info

    def _replace(self, conn: Any, info: ObjectInfo, shard: int, op: str,
                 trace: str | None = None) -> ObjectInfo:
        """Publish `info` (its bytes are in place) under its key, locked by the caller:
        stamp it, upsert the row, drop the replaced version's chunks, append "created"."""
        now, old = conn.execute(
            f"SELECT {NOW}, (SELECT version FROM state_objects WHERE bucket = %(bucket)s "
            "AND key = %(key)s)", {"now": self._now(), "bucket": info.bucket,
                                   "key": info.key}).fetchone()
        info = ObjectInfo(info.bucket, info.key, info.size, info.etag, info.content_type,
                          info.metadata, now, info.version, info.tier)
        conn.execute(_UPSERT, _row(info))
        if old is not None and old != info.version:
            conn.execute("DELETE FROM state_chunks WHERE blob = %s", (old,))
        self._append(conn, f"bucket:{info.bucket}", FeedEntry(
            shard, info.key, "created", object_event_body(info, op), trace), now)
        return info

    def copy_object(self, bucket: str, key: str, dst_bucket: str, dst_key: str, *,
                    shard: int, trace: str | None = None) -> ObjectInfo | None:
        with self.db.transaction(f"cannot copy {key!r} of bucket {bucket!r} to "
                                 f"{dst_key!r} of bucket {dst_bucket!r}") as conn:
            self._lock(conn, ("object", bucket, key), ("object", dst_bucket, dst_key))
            row = conn.execute(f"SELECT {_COLS} FROM state_objects WHERE bucket = %s AND "
                               "key = %s", (bucket, key)).fetchone()
            if row is None:
                return None
            src = _info(row)
            version = uuid.uuid4().hex
            conn.execute("INSERT INTO state_chunks (blob, n, data) SELECT %s, n, data "
                         "FROM state_chunks WHERE blob = %s", (version, src.version))
            return self._replace(conn, ObjectInfo(
                dst_bucket, dst_key, src.size, src.etag, src.content_type,
                dict(src.metadata), 0.0, version, STANDARD), shard, "Copy", trace)

    def delete_object(self, bucket: str, key: str, *, shard: int, version: str | None = None,
                      op: str = "Delete", trace: str | None = None) -> ObjectInfo | None:
        with self.db.transaction(f"cannot delete {key!r} from bucket {bucket!r}") as conn:
            self._lock(conn, ("object", bucket, key))
            row = conn.execute(
                f"DELETE FROM state_objects WHERE bucket = %s AND key = %s AND "
                f"(%s::text IS NULL OR version = %s) RETURNING {_COLS}",
                (bucket, key, version, version)).fetchone()
            if row is None:
                return None
            info = _info(row)
            conn.execute("DELETE FROM state_chunks WHERE blob = %s", (info.version,))
            self._append(conn, f"bucket:{bucket}", FeedEntry(
                shard, key, "deleted", object_event_body(info, op), trace), self._now())
            return info

    def set_tier(self, bucket: str, key: str, version: str, tier: str, *, shard: int) -> bool:
        with self.db.transaction(f"cannot move {key!r} of bucket {bucket!r} to the {tier} "
                                 "tier") as conn:
            self._lock(conn, ("object", bucket, key))
            row = conn.execute(
                f"UPDATE state_objects SET tier = %s WHERE bucket = %s AND key = %s AND "
                f"version = %s AND tier <> %s RETURNING {_COLS}",
                (tier, bucket, key, version, tier)).fetchone()
            if row is None:
                return False
            info = _info(row)
            self._append(conn, f"bucket:{bucket}", FeedEntry(
                shard, key, "archived" if tier == ARCHIVE else "restored",
                object_event_body(info, "LifecycleTransition")), self._now())
            return True

    def sweep_uploads(self, older_than_s: float = ORPHAN_AFTER_S) -> int:
        """Drop the chunks of uploads untouched for `older_than_s` (their writer crashed,
        or was abandoned); returns how many uploads."""
        rows = self.db.rows("cannot sweep abandoned uploads", _SWEEP,
                            {"now": self._now(), "older": older_than_s})
        return rows[0][0]

    # -- reading -----------------------------------------------------------------------

    def head_object(self, bucket: str, key: str) -> ObjectInfo | None:
        rows = self.db.rows(f"cannot read {key!r} of bucket {bucket!r}",
                            f"SELECT {_COLS} FROM state_objects WHERE bucket = %s AND key = %s",
                            (bucket, key))
        return _info(rows[0]) if rows else None

    def read_object(self, bucket: str, key: str, start: int = 0,
                    length: int | None = None) -> tuple[ObjectInfo, bytes] | None:
        rows = self.db.rows(f"cannot read {key!r} of bucket {bucket!r}", _READ, {
            "bucket": bucket, "key": key, "start": start, "length": length,
            "cs": CHUNK_BYTES})
        if not rows:
            return None
        info, stop = _info(rows[0][:9]), rows[0][9]
        data = b"".join(bytes(r[11]) for r in rows if r[10] is not None)
        if len(data) != max(0, stop - start):
            raise StoreError(f"object {key!r} of bucket {bucket!r} is missing data: read "
                             f"{len(data)} of {stop - start} bytes from {start}")
        return info, data

    def list_objects(self, bucket: str, prefix: str, *, after: str | None,
                     limit: int) -> list[ObjectInfo]:
        query = f"SELECT {_COLS} FROM state_objects WHERE bucket = %s"
        args: list[Any] = [bucket]
        if prefix:
            query += " AND key >= %s AND starts_with(key, %s)"
            args += [prefix, prefix]
        if after is not None:
            query += " AND key > %s"
            args.append(after)
        query += " ORDER BY key LIMIT %s"
        args.append(limit)
        return [_info(r) for r in self.db.rows(f"cannot list bucket {bucket!r}", query, args)]

    def usage(self, bucket: str) -> dict[str, TierUsage]:
        out = {STANDARD: TierUsage(), ARCHIVE: TierUsage()}
        for tier, n, size in self.db.rows(
                f"cannot measure bucket {bucket!r}",
                "SELECT tier, count(*), COALESCE(sum(size), 0)::int8 FROM state_objects "
                "WHERE bucket = %s GROUP BY tier", (bucket,)):
            out[tier] = TierUsage(n, size)
        return out


__all__ = ["CHUNK_BYTES", "OBJECT_TABLES", "ObjectOps", "ORPHAN_AFTER_S"]
