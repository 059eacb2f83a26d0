"""API keys and daily quotas shared by every node of a cluster, in the app's store.

When nodes share an app store (`--store postgresql://…`, or one SQLite store file for
nodes on one machine), the key records live in its `security_keys` table
(squall.backends.security_store) in the same format as the embedded keys.json: the
SHA-256 of the key, never the key. `SharedKeyStore` is a KeyStore whose records come from
there: a key created through any node or the CLI works on every node, and a revocation is
refused everywhere within `refresh_s` (0.5 s by default): each node polls one revision
row at that interval on a thread of its own and reloads the keys when it moved. `verify`
reads memory only, so the request path never waits on the database. If the store cannot
be reached, a node keeps serving with the keys it last read (logged; a revocation made
meanwhile reaches it when the store is back).

`SharedQuotas` counts each key's requests per UTC day in `security_quota`, one atomic
upsert per request that will not pass the limit, so the quota is one exact count across
nodes (no overshoot), at the cost of one round trip for requests of keys that have a
quota. The day is the node's UTC date (keep node clocks in sync: NTP). Once the store
says a key is used up for the day, the node refuses it without asking again until the
day changes. Token-bucket rate limits (`rate`, `burst`) stay per node: each node allows
the plan's rate, so N nodes allow up to N times it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from ..backends.base import StoreError
from ..backends.security_store import SqlSecurityRecords
from ..observe import logs
from .keys import ApiKey, KeyStore, KeyStoreError, UsagePlan
from .throttle import ThrottleCounters, Throttled

REFRESH_S = 0.5  # how often a node looks for new and revoked keys


class SharedKeyStore(KeyStore):
    """Hashed API keys in the shared app store; the same API as KeyStore."""

    def __init__(self, records: SqlSecurityRecords, *,
                 clock: Callable[[], float] = time.time, refresh_s: float = REFRESH_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """`clock`: creation times; `monotonic`: the age of the keys read (tests)."""
        if not refresh_s > 0:
            raise KeyStoreError(f"refresh_s must be > 0 seconds, got {refresh_s!r}")
        super().__init__(None, clock=clock)
        self.store = records
        self.refresh_s = refresh_s
        self.monotonic = monotonic
        self.revision = -1  # of the records held
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._failing = False
        self._read_at = 0.0  # monotonic time of the last successful read
        self.reload()

    def reload(self) -> bool:
        """Read the keys again if the store's revision moved; True if it did. The revision
        is read first, so a change made meanwhile is seen again by the next poll."""
        revision = self.store.revision()
        self._read_at = self.monotonic()
        if revision == self.revision:
            return False
        records = {key_id: {"hash": hash_, "name": name, "created": created,
                            "revoked": bool(revoked), "plan": json.loads(plan)}
                   for key_id, hash_, name, created, plan, revoked in self.store.keys()}
        self._records = records  # one reference swap: verify() never sees half a reload
        self.revision = revision
        return True

    def _refresh(self) -> None:
        """Called by verify(): start the poller the first time (CLI use needs none),
        after reading the keys again if they are older than one interval (a node's first
        API-key request may come long after it started)."""
        if self._poller is None:
            with self._lock:
                if self._poller is None and not self._stop.is_set():
                    if self.monotonic() - self._read_at > self.refresh_s:
                        with contextlib.suppress(StoreError):  # the poller logs it
                            self.reload()
                    self._poller = threading.Thread(target=self._poll, daemon=True,
                                                    name="squall-api-keys")
                    self._poller.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self.reload()
            except StoreError as exc:
                if not self._failing:
                    logs.event("cannot refresh the API keys; serving with the keys last read",
                               logging.WARNING, error=str(exc))
                self._failing = True
                continue
            if self._failing:
                logs.event("API keys refreshed again", logging.INFO)
                self._failing = False

    def create(self, name: str, plan: UsagePlan | None = None) -> tuple[str, ApiKey]:
        key_id, plain, record = self.new_key(name, plan)
        self.store.add_key(key_id, record["hash"], name, record["created"],
                           json.dumps(record["plan"]))
        self.reload()
        return plain, self._key(key_id, record)

    def revoke(self, key: str) -> ApiKey:
        key_id = self.key_id(key)
        if not self.store.revoke_key(key_id):
            raise KeyStoreError(f"no API key with id {key_id!r} in {self.store.where}; "
                                "`squall keys list` shows them")
        self.reload()
        return self._key(key_id, self._records[key_id])

    def list(self) -> list[ApiKey]:
        self.reload()
        return [self._key(k, r) for k, r in self._records.items()]

    def close(self) -> None:
        """Stop polling (the store itself is closed by its owner)."""
        self._stop.set()
        poller = self._poller
        if poller is not None and poller is not threading.current_thread():
            poller.join(timeout=self.refresh_s + 5)


class SharedQuotas:
    """Per-key daily counts in the shared store: `await take(key_id, per_day)` counts one
    request or raises Throttled (scope "quota:<id>", retry after the next UTC midnight)."""

    MAX_EXHAUSTED = 100_000  # keys remembered as used up today (bounded memory)

    def __init__(self, records: SqlSecurityRecords, *, wall: Callable[[], float] = time.time,
                 counters: ThrottleCounters | None = None) -> None:
        self.store = records
        self.wall = wall
        self.counters = counters or ThrottleCounters()
        self._exhausted: dict[str, int] = {}  # key id -> the day it was found used up
        self._day: int | None = None  # the last day this node counted on
        self._executor = ThreadPoolExecutor(2, thread_name_prefix="squall-quota")

    async def take(self, key_id: str, per_day: int) -> None:
        now = self.wall()
        day = int(now // 86400)
        scope = f"quota:{key_id}"
        if self._exhausted.get(key_id) != day:
            loop = asyncio.get_running_loop()
            count = await loop.run_in_executor(self._executor, self._count, key_id, day,
                                               per_day)
            if count is not None:
                self.counters.count(scope, True)
                return
            if len(self._exhausted) >= self.MAX_EXHAUSTED:
                self._exhausted.clear()
            self._exhausted[key_id] = day
        self.counters.count(scope, False)
        raise Throttled(scope, (day + 1) * 86400 - now,
                        f"daily quota of {per_day} requests used up for key {key_id}")

    def _count(self, key_id: str, day: int, per_day: int) -> int | None:
        if self._day != day:  # a new day here: drop counts older than yesterday
            self._day = day
            self.store.prune_quota(day - 1)
        return self.store.take_quota(key_id, day, per_day)

    def used(self, key_id: str) -> int:
        """Today's count of `key_id` across the nodes."""
        return self.store.quota_used(key_id, int(self.wall() // 86400))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
