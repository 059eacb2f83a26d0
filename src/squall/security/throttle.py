"""Token buckets: app-wide, per route and per API key, plus daily quotas per key.

A bucket holds up to `burst` tokens and refills at `rate` per second; a request takes one
token or is refused with the seconds until one is back (the `Retry-After`). Time comes
from an injected monotonic clock, so tests are deterministic.

`ThrottleCounters` is the in-process tally the metrics read (squall.observe.metrics):
allowed and throttled requests per scope ("app", "route:<function>", "key:<id>",
"quota:<id>").
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from typing import Any, Callable


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> float:
        """0.0 if a token was taken, else the seconds until one will be there."""
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class ThrottleCounters:
    """Allowed/throttled counts per scope; `snapshot()` is what a metrics exporter reads."""

    def __init__(self) -> None:
        self.allowed: dict[str, int] = defaultdict(int)
        self.throttled: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def count(self, scope: str, ok: bool) -> None:
        with self._lock:
            (self.allowed if ok else self.throttled)[scope] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            scopes = set(self.allowed) | set(self.throttled)
            return {s: {"allowed": self.allowed.get(s, 0), "throttled": self.throttled.get(s, 0)}
                    for s in sorted(scopes)}

    def collect(self) -> Any:
        """A prometheus-client collector: `registry.register(counters)` exposes
        squall_gateway_requests_total{scope,outcome} (outcome: allowed | throttled)."""
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily("squall_gateway_requests", "Requests through a gateway "
                                     "token bucket or quota, by scope and outcome",
                                     labels=["scope", "outcome"])
        for scope, counts in self.snapshot().items():
            for outcome, n in counts.items():
                family.add_metric([scope, outcome], n)
        yield family


class Throttled(Exception):
    def __init__(self, scope: str, retry_after_s: float, reason: str) -> None:
        super().__init__(reason)
        self.scope = scope
        self.retry_after_s = retry_after_s
        self.reason = reason

    @property
    def retry_after(self) -> int:
        """Whole seconds for the `Retry-After` header (at least 1)."""
        return max(1, math.ceil(self.retry_after_s))


class Throttles:
    """All the buckets of one gateway. `check(scope, rate, burst)` takes a token or raises
    `Throttled`; `quota(key_id, per_day)` counts a key's requests per UTC day."""

    MAX_BUCKETS = 100_000  # keys seen: oldest dropped beyond this (bounded memory)

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 counters: ThrottleCounters | None = None) -> None:
        self.clock = clock
        self.wall = wall
        self.counters = counters or ThrottleCounters()
        self._buckets: dict[str, TokenBucket] = {}
        self._quota: dict[str, tuple[int, int]] = {}  # key -> (day, count)

    def check(self, scope: str, rate: float, burst: int) -> None:
        now = self.clock()
        bucket = self._buckets.get(scope)
        if bucket is None or bucket.rate != rate or bucket.burst != burst:
            if len(self._buckets) >= self.MAX_BUCKETS:
                self._buckets.pop(next(iter(self._buckets)))
            bucket = self._buckets[scope] = TokenBucket(rate, burst, now)
        wait = bucket.take(now)
        self.counters.count(scope, wait == 0.0)
        if wait:
            raise Throttled(scope, wait, f"rate limit of {rate:g} requests/s (burst {burst}) "
                            f"exceeded for {scope}")

    def quota(self, key_id: str, per_day: int) -> None:
        now = self.wall()
        day = int(now // 86400)
        scope = f"quota:{key_id}"
        seen_day, count = self._quota.get(key_id, (day, 0))
        if seen_day != day:
            count = 0
        if count >= per_day:
            self.counters.count(scope, False)
            raise Throttled(scope, (day + 1) * 86400 - now,
                            f"daily quota of {per_day} requests used up for key {key_id}")
        self._quota[key_id] = (day, count + 1)
        self.counters.count(scope, True)
