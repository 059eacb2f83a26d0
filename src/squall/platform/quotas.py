"""Per-app quotas and the meter behind the storage one.

    concurrency   requests in flight for the whole app on a node (past it: 429)
    memory_mb     the most any one function may declare (a deploy over it is rejected;
                  each worker is then held to its function's memory_mb by the runtime)
    storage_mb    the app's data namespace (its directory, or its PostgreSQL schema on
                  shared backends: tables, cache, objects, queues); past it, writes fail
                  with QuotaExceeded (deletes pass)
    max_workers   warm workers per function

The storage meter measures every `interval_s` (in a thread), so the bound is enforced
with that much lag: a burst can overshoot by what one interval writes.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

from .venvs import dir_size

DEFAULT_CONCURRENCY = 100
DEFAULT_MEMORY_MB = 1024
DEFAULT_STORAGE_MB = 1024
DEFAULT_MAX_WORKERS = 16
STORAGE_CHECK_S = 5.0


class QuotaError(ValueError):
    """A bad quota setting, or an app over one; the message says which."""


@dataclass(frozen=True)
class Quotas:
    concurrency: int = DEFAULT_CONCURRENCY
    memory_mb: int = DEFAULT_MEMORY_MB
    storage_mb: int = DEFAULT_STORAGE_MB
    max_workers: int = DEFAULT_MAX_WORKERS

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise QuotaError(f"quota {f.name} must be a whole number >= 1, got {value!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Quotas | None = None) -> Quotas:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise QuotaError(f"unknown quota {', '.join(unknown)}; quotas are: "
                             f"{', '.join(sorted(known))}")
        return cls(**{**asdict(base or cls()), **data})

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def check_manifest(self, app: str, manifest: dict[str, Any]) -> None:
        for f in manifest["functions"]:
            if f["memory_mb"] > self.memory_mb:
                raise QuotaError(f"function {f['name']!r} declares memory_mb={f['memory_mb']}, "
                                 f"over app {app!r}'s memory quota of {self.memory_mb} MB")
            if f.get("provisioned", 0) > self.max_workers:
                raise QuotaError(f"function {f['name']!r} provisions {f['provisioned']} "
                                 f"workers, over app {app!r}'s max_workers quota of "
                                 f"{self.max_workers}")


class StorageMeter:
    """How much an app's data namespace holds, re-measured in the background."""

    def __init__(self, path: str | Path, interval_s: float = STORAGE_CHECK_S,
                 size: Callable[[], int] | None = None) -> None:
        """`size`: how to measure (default: the size of the directory `path`; on shared
        backends, the app's PostgreSQL schema)."""
        self.path = Path(path)
        self.interval_s = interval_s
        self.size = size or self._dir_size
        self.used_bytes = 0
        self._task: asyncio.Task[None] | None = None

    def _dir_size(self) -> int:
        return dir_size(self.path) if os.path.isdir(self.path) else 0

    @property
    def used_mb(self) -> float:
        return self.used_bytes / (1024 * 1024)

    def over(self, limit_mb: int) -> bool:
        return self.used_bytes > limit_mb * 1024 * 1024

    def measure(self) -> int:
        self.used_bytes = self.size()
        return self.used_bytes

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(None, self.measure)
            except Exception:  # the store is away: keep the last figure, try again
                pass
            await asyncio.sleep(self.interval_s)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
