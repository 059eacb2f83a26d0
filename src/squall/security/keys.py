"""API keys and their usage plans, stored hashed in a small file (0600).

A key is `sq_<id>_<secret>`: the id finds the record, the SHA-256 of the whole key is
compared in constant time. Keys are 32 random bytes, so a fast hash is enough (a slow
password hash protects low-entropy secrets, which these are not); the plain key is shown
once, by `squall keys create`, and never stored.

The file is re-read when it changes (checked at most once a second), so a key revoked
with the CLI stops working on a running server within a second. This is the embedded
mode's store; nodes that share an app store keep the same records in it instead
(squall.security.shared_keys).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from .declare import is_positive
from .files import write_private

_KEY_RE = re.compile(r"^sq_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class KeyStoreError(ValueError):
    """A key operation that cannot be done; the message says why."""


@dataclass(frozen=True, slots=True)
class UsagePlan:
    """What one key may do: `rate` requests/s with bursts of `burst`, and at most
    `quota_per_day` requests per UTC day (None: no such limit)."""

    rate: float | None = None
    burst: int | None = None
    quota_per_day: int | None = None

    def __post_init__(self) -> None:
        if self.rate is not None and not is_positive(self.rate):
            raise KeyStoreError(f"usage plan: rate must be > 0 requests per second, "
                                f"got {self.rate!r}")
        for name in ("burst", "quota_per_day"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < 1):
                raise KeyStoreError(f"usage plan: {name} must be a whole number >= 1, "
                                    f"got {value!r}")


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    created: float
    plan: UsagePlan
    revoked: bool = False

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created": self.created,
                "revoked": self.revoked, "plan": asdict(self.plan)}


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """Hashed API keys in `path` (None: in memory, for tests)."""

    def __init__(self, path: str | Path | None, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path) if path is not None else None
        self.clock = clock
        self._records: dict[str, dict[str, Any]] = {}
        self._seen: tuple[int, int, int] | None = None  # the file as last read
        self._checked = 0.0
        self._lock = threading.Lock()
        self._load()

    @classmethod
    def for_data_dir(cls, data_dir: str | Path) -> KeyStore:
        return cls(Path(data_dir) / "security" / "keys.json")

    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        stat = self.path.stat()
        # every save replaces the file: a new inode, even within one mtime tick
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if signature == self._seen:
            return
        try:
            data = json.loads(self.path.read_text())
        except ValueError as exc:
            raise KeyStoreError(f"the key file {self.path} is corrupt: {exc}") from None
        self._records = data.get("keys", {})
        self._seen = signature

    def _save(self) -> None:
        if self.path is None:
            return
        write_private(self.path, json.dumps({"keys": self._records}, indent=1).encode())
        stat = self.path.stat()
        self._seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked >= 1.0:
            self._checked = now
            self._load()

    def new_key(self, name: str, plan: UsagePlan | None) -> tuple[str, str, dict[str, Any]]:
        """A fresh key for `name`: its id, the plain key and the record to store."""
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise KeyStoreError(f"key name {name!r} is invalid: use 1-64 letters, digits, '_', "
                            "'.', '@' or '-'")
        key_id = secrets.token_hex(6)
        plain = f"sq_{key_id}_{secrets.token_urlsafe(32)}"
        return key_id, plain, {"hash": _hash(plain), "name": name, "created": self.clock(),
                               "revoked": False, "plan": asdict(plan or UsagePlan())}

    @staticmethod
    def key_id(key: str) -> str:
        """The id of `key`, given as an id or as the plain key."""
        m = _KEY_RE.fullmatch(key)
        return m.group(1) if m else key

    def create(self, name: str, plan: UsagePlan | None = None) -> tuple[str, ApiKey]:
        """A new key: returns the plain key (show it once) and its record."""
        key_id, plain, record = self.new_key(name, plan)
        with self._lock:
            self._load()
            self._records[key_id] = record
            self._save()
        return plain, self._key(key_id, record)

    def revoke(self, key: str) -> ApiKey:
        """Revoke by id (or by the plain key)."""
        with self._lock:
            self._load()
            key_id = self.key_id(key)
            record = self._records.get(key_id)
            if record is None:
                raise KeyStoreError(f"no API key with id {key_id!r}; `squall keys list` shows them")
            record["revoked"] = True
            self._save()
        return self._key(key_id, record)

    def list(self) -> list[ApiKey]:
        with self._lock:
            self._load()
            return [self._key(k, r) for k, r in self._records.items()]

    def close(self) -> None:
        """Nothing to release for a file (the shared store stops its poller here)."""

    def verify(self, key: str) -> ApiKey | None:
        """The live key record for a presented key, or None (unknown, wrong or revoked)."""
        self._refresh()
        m = _KEY_RE.fullmatch(key)
        if m is None:
            return None
        record = self._records.get(m.group(1))
        if record is None or not hmac.compare_digest(record["hash"], _hash(key)):
            return None
        if record.get("revoked"):
            return None
        return self._key(m.group(1), record)

    @staticmethod
    def _key(key_id: str, record: dict[str, Any]) -> ApiKey:
        return ApiKey(key_id, record["name"], record["created"],
                      UsagePlan(**record.get("plan") or {}), bool(record.get("revoked")))
