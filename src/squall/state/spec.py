"""Declared state resources: tables, caches and buckets, as small frozen dataclasses.

Pure data, validated when made (at `app.table(...)` time), carried in the manifest so
the supervisor can open and sweep them without importing user code.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError

_TABLE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # DynamoDB's alphabet
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # S3's, 3-63 characters
_ATTR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,254}$")

DEFAULT_SHARDS = 4
DEFAULT_STREAM_RETENTION_S = 24 * 3600.0  # DynamoDB Streams keep 24 hours
DEFAULT_MAX_OBJECT_BYTES = 5 * 1024**3  # S3's single-PUT limit


def _positive_int(owner: str, name: str, value: Any, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= hi:
        raise ConfigError(f"{owner}: {name} must be a whole number from 1 to {hi}, "
                          f"got {value!r}")


def _days(owner: str, name: str, value: Any) -> None:
    if value is None:
        return
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not math.isfinite(value) or value <= 0):
        raise ConfigError(f"{owner}: {name} must be a number of days > 0 or None, "
                          f"got {value!r}")


@dataclass(frozen=True, slots=True)
class TableConfig:
    name: str
    key: str
    sort_key: str | None = None
    ttl_attribute: str | None = None
    shards: int = DEFAULT_SHARDS  # change-stream shards: one partition key, one shard
    stream_retention_s: float = DEFAULT_STREAM_RETENTION_S

    def __post_init__(self) -> None:
        owner = f"table {self.name!r}"
        if not isinstance(self.name, str) or not _TABLE_RE.fullmatch(self.name):
            raise ConfigError(f"table name {self.name!r} is invalid: use 1-64 letters, "
                              "digits, '_', '-' or '.'")
        for what in ("key", "sort_key", "ttl_attribute"):
            v = getattr(self, what)
            if (v is not None or what == "key") and (
                    not isinstance(v, str) or not _ATTR_RE.fullmatch(v)):
                raise ConfigError(f"{owner}: {what} must be an attribute name (a letter or "
                                  f"'_', then letters, digits, '_' or '-'), got {v!r}")
        if self.sort_key is not None and self.sort_key == self.key:
            raise ConfigError(f"{owner}: sort_key must differ from key")
        if self.ttl_attribute is not None and self.ttl_attribute in (self.key, self.sort_key):
            raise ConfigError(f"{owner}: ttl_attribute cannot be a key attribute")
        _positive_int(owner, "shards", self.shards, 256)
        if (not isinstance(self.stream_retention_s, (int, float))
                or isinstance(self.stream_retention_s, bool)
                or not 60 <= self.stream_retention_s <= 7 * 86400):
            raise ConfigError(f"{owner}: stream_retention_s must be seconds from 60 to "
                              f"{7 * 86400}, got {self.stream_retention_s!r}")

    @property
    def feed(self) -> str:
        return f"table:{self.name}"

    def to_manifest(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "sort_key": self.sort_key,
                "ttl_attribute": self.ttl_attribute, "shards": self.shards,
                "stream_retention_s": self.stream_retention_s}


@dataclass(frozen=True, slots=True)
class CacheConfig:
    name: str
    default_ttl_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _TABLE_RE.fullmatch(self.name):
            raise ConfigError(f"cache name {self.name!r} is invalid: use 1-64 letters, "
                              "digits, '_', '-' or '.'")
        t = self.default_ttl_s
        if t is not None and (not isinstance(t, (int, float)) or isinstance(t, bool)
                              or not math.isfinite(t) or t <= 0):
            raise ConfigError(f"cache {self.name!r}: default_ttl_s must be seconds > 0 or "
                              f"None, got {t!r}")

    def to_manifest(self) -> dict[str, Any]:
        return {"name": self.name, "default_ttl_s": self.default_ttl_s}


@dataclass(frozen=True, slots=True)
class LifecycleRule:
    """Objects under `prefix` move to the archive tier `archive_after_days` after their
    last write, and are deleted `expire_after_days` after it (S3 lifecycle rules)."""

    prefix: str = ""
    archive_after_days: float | None = None
    expire_after_days: float | None = None

    def check(self, owner: str) -> None:
        if not isinstance(self.prefix, str):
            raise ConfigError(f"{owner}: a lifecycle prefix must be a string")
        _days(owner, "archive_after_days", self.archive_after_days)
        _days(owner, "expire_after_days", self.expire_after_days)
        if self.archive_after_days is None and self.expire_after_days is None:
            raise ConfigError(f"{owner}: a lifecycle rule needs archive_after_days or "
                              "expire_after_days")
        if (self.archive_after_days is not None and self.expire_after_days is not None
                and self.expire_after_days <= self.archive_after_days):
            raise ConfigError(f"{owner}: expire_after_days ({self.expire_after_days:g}) must "
                              f"be later than archive_after_days ({self.archive_after_days:g})")

    def to_manifest(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "archive_after_days": self.archive_after_days,
                "expire_after_days": self.expire_after_days}


@dataclass(frozen=True, slots=True)
class BucketConfig:
    name: str
    shards: int = DEFAULT_SHARDS  # object-event shards: one key, one shard, in order
    lifecycle: tuple[LifecycleRule, ...] = field(default_factory=tuple)
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _BUCKET_RE.fullmatch(self.name) or \
                ".." in self.name:
            raise ConfigError(f"bucket name {self.name!r} is invalid: use 3-63 lower-case "
                              "letters, digits, '.' or '-', starting and ending with a "
                              "letter or digit")
        owner = f"bucket {self.name!r}"
        _positive_int(owner, "shards", self.shards, 256)
        _positive_int(owner, "max_object_bytes", self.max_object_bytes, 5 * 1024**4)
        for rule in self.lifecycle:
            if not isinstance(rule, LifecycleRule):
                raise ConfigError(f"{owner}: lifecycle rules must be squall.LifecycleRule "
                                  f"(or dicts of its fields), got {rule!r}")
            rule.check(owner)

    @property
    def feed(self) -> str:
        return f"bucket:{self.name}"

    def to_manifest(self) -> dict[str, Any]:
        return {"name": self.name, "shards": self.shards,
                "lifecycle": [r.to_manifest() for r in self.lifecycle],
                "max_object_bytes": self.max_object_bytes}

    @classmethod
    def from_manifest(cls, d: dict[str, Any]) -> BucketConfig:
        return cls(d["name"], d.get("shards", DEFAULT_SHARDS),
                   tuple(LifecycleRule(**r) for r in d.get("lifecycle", ())),
                   d.get("max_object_bytes", DEFAULT_MAX_OBJECT_BYTES))


def lifecycle_rules(owner: str, rules: Any) -> tuple[LifecycleRule, ...]:
    """Accept LifecycleRule objects or dicts of their fields."""
    if rules is None:
        return ()
    if isinstance(rules, (LifecycleRule, dict)):
        rules = [rules]
    out = []
    for r in rules:
        if isinstance(r, dict):
            try:
                r = LifecycleRule(**r)
            except TypeError as exc:
                raise ConfigError(f"{owner}: bad lifecycle rule {r!r}: {exc}") from None
        out.append(r)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class StateDeclarations:
    """Everything an app declared about state, as the supervisor reads it."""

    tables: dict[str, TableConfig] = field(default_factory=dict)
    caches: dict[str, CacheConfig] = field(default_factory=dict)
    buckets: dict[str, BucketConfig] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> StateDeclarations:
        state = manifest.get("state") or {}
        return cls(
            {t["name"]: TableConfig(**t) for t in state.get("tables", ())},
            {c["name"]: CacheConfig(**c) for c in state.get("caches", ())},
            {b["name"]: BucketConfig.from_manifest(b) for b in state.get("buckets", ())})
