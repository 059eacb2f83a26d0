"""Records in JetStream KV buckets, changed only by compare-and-set on revisions.

A bucket is a stream KV_<bucket> on subjects $KV.<bucket>.<key> keeping the last value of
each key (the same layout nats-py and the nats CLI use, so `nats kv` can inspect it).
Every write says which revision it replaces (Nats-Expected-Last-Subject-Sequence: 0 for
a key never written); the server refuses it if another write came first. `cas` runs the
read-decide-write loop over that: of two nodes racing, exactly one write lands and the
other decides again on what it wrote. A write whose answer was lost is retried by the
connection and then conflicts with itself: records carry a nonce so the writer can
recognise its own write when it reads it back.

Values are JSON. Buckets are created on first use; 2.9 has no per-key TTL, so a record's
expiry is in its value (judged with the broker's clock) and a bucket-wide max age only
sweeps records nobody read again.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Callable, Generic, TypeVar

from ..broker import BrokerError
from .connection import (
    STREAM_NAME_IN_USE,
    STREAM_NOT_FOUND,
    WRONG_LAST_SEQUENCE,
    Connection,
    JetStreamError,
)

T = TypeVar("T")
MAX_CAS_ROUNDS = 100


class Keep(Generic[T]):
    """A decision to leave the record as it is and answer `result`."""

    __slots__ = ("result",)

    def __init__(self, result: T) -> None:
        self.result = result


class Write(Generic[T]):
    """A decision to store `value` (None: delete the key) and answer `result`."""

    __slots__ = ("result", "value")

    def __init__(self, value: dict[str, Any] | None, result: T) -> None:
        self.value = value
        self.result = result


Decide = Callable[[dict[str, Any] | None], "Keep[T] | Write[T]"]


def nonce() -> str:
    return secrets.token_hex(8)


class KvStore:
    def __init__(self, conn: Connection, *, replicas: int = 1) -> None:
        self.conn = conn
        self.replicas = replicas
        self._ready: set[str] = set()

    async def ensure(self, bucket: str, *, max_age_s: float | None = None) -> None:
        """Create `bucket` unless it exists (any node may, concurrently)."""
        if bucket in self._ready:
            return
        stream = f"KV_{bucket}"
        try:
            await self.conn.api(f"STREAM.INFO.{stream}")
        except JetStreamError as exc:
            if exc.err_code != STREAM_NOT_FOUND:
                raise
            age = int(max_age_s * 1e9) if max_age_s else 0
            config = {
                "name": stream, "subjects": [f"$KV.{bucket}.>"], "retention": "limits",
                "storage": "file", "num_replicas": self.replicas, "discard": "new",
                "max_msgs_per_subject": 1, "max_age": age, "deny_delete": True,
                "allow_rollup_hdrs": True, "allow_direct": True,
                "duplicate_window": min(age, int(120e9)) if age else int(120e9),
            }
            try:
                await self.conn.api(f"STREAM.CREATE.{stream}", config)
            except JetStreamError as exc2:
                if exc2.err_code != STREAM_NAME_IN_USE:
                    raise
        self._ready.add(bucket)

    async def get(self, bucket: str, key: str) -> tuple[dict[str, Any] | None, int]:
        """(value, revision); (None, revision of the delete marker or 0) when absent."""
        msg = await self.conn.direct_get(f"KV_{bucket}", {"last_by_subj": f"$KV.{bucket}.{key}"})
        if msg is None:
            return None, 0
        headers = msg.headers or {}
        revision = int(headers.get("Nats-Sequence", 0))
        if headers.get("KV-Operation") in ("DEL", "PURGE"):
            return None, revision
        try:
            return json.loads(msg.data), revision
        except ValueError as exc:
            raise BrokerError(f"bad record {key!r} in KV bucket {bucket}: {exc}") from exc

    async def write(self, bucket: str, key: str, value: dict[str, Any] | None, *,
                    revision: int) -> bool:
        """Store (or delete, for None) `key` if its revision is still `revision`."""
        headers = {"Nats-Expected-Last-Subject-Sequence": str(revision)}
        body = b""
        if value is None:
            headers["KV-Operation"] = "DEL"
        else:
            body = json.dumps(value, separators=(",", ":")).encode()
        try:
            await self.conn.publish(f"$KV.{bucket}.{key}", body, headers)
        except JetStreamError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                return False
            raise
        return True

    async def cas(self, bucket: str, key: str, decide: Decide[T]) -> T:
        """Read `key`, let `decide` choose, write on the revision read; again on conflict."""
        for _ in range(MAX_CAS_ROUNDS):
            value, revision = await self.get(bucket, key)
            decision = decide(value)
            if isinstance(decision, Keep):
                return decision.result
            if value is None and decision.value is None:
                return decision.result  # delete what is not there
            if await self.write(bucket, key, decision.value, revision=revision):
                return decision.result
        raise BrokerError(f"record {key!r} in KV bucket {bucket} is changing too fast: "
                          f"no write landed in {MAX_CAS_ROUNDS} rounds")

    async def purge(self, bucket: str, key_prefix: str) -> None:
        """Drop every key under `key_prefix` (ends with a token, no wildcard)."""
        try:
            await self.conn.api(f"STREAM.PURGE.KV_{bucket}",
                                {"filter": f"$KV.{bucket}.{key_prefix}.>"})
        except JetStreamError as exc:
            if exc.err_code != STREAM_NOT_FOUND:
                raise
