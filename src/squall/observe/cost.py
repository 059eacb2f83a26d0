"""The cost meter: what the recorded traffic would cost on a pay-per-use platform.

The model is AWS Lambda's (x86, list prices, no free tier): a price per request and a
price per GB-second of billed duration, billed in 1 ms steps. Both prices, the step and
the log-storage price are settings (`Pricing`, or SQUALL_PRICE_* in the environment).

    cost(invocation) = per_request + memory_mb / 1024 * billed_ms / 1000 * per_gb_s
    billed_ms        = duration_ms rounded up to the granularity (at least one step)

Throttled invocations never ran and cost nothing. `cost_summary` aggregates the
invocation log per function and per hour or day; `what_if` re-prices the same traffic
with other settings (memory, batch size, log retention) and says what it assumed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Iterable

MB_PER_GB = 1024.0
FULL_VCPU_MB = 1769  # Lambda: one full vCPU at 1,769 MB; CPU share scales with memory


class PricingError(ValueError):
    """A pricing setting or a what-if change that makes no sense."""


@dataclass(frozen=True, slots=True)
class Pricing:
    per_million_requests_usd: float = 0.20
    per_gb_s_usd: float = 0.0000166667
    granularity_ms: int = 1
    # log storage (CloudWatch Logs list price) and the size of one invocation's record
    log_storage_gb_month_usd: float = 0.03
    bytes_per_invocation: int = 512

    def __post_init__(self) -> None:
        for name in ("per_million_requests_usd", "per_gb_s_usd", "log_storage_gb_month_usd"):
            if getattr(self, name) < 0:
                raise PricingError(f"pricing: {name} must be >= 0, got {getattr(self, name)}")
        if self.granularity_ms < 1:
            raise PricingError(f"pricing: granularity_ms must be >= 1, got {self.granularity_ms}")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Pricing:
        """SQUALL_PRICE_REQUESTS (per million), SQUALL_PRICE_GB_S, SQUALL_PRICE_GRANULARITY_MS."""
        env = os.environ if env is None else env
        kw: dict[str, Any] = {}
        for var, name, kind in (("SQUALL_PRICE_REQUESTS", "per_million_requests_usd", float),
                                ("SQUALL_PRICE_GB_S", "per_gb_s_usd", float),
                                ("SQUALL_PRICE_GRANULARITY_MS", "granularity_ms", int)):
            if env.get(var):
                try:
                    kw[name] = kind(env[var])
                except ValueError:
                    raise PricingError(f"{var}={env[var]!r} is not a number") from None
        return cls(**kw)

    def billed_ms(self, duration_ms: float) -> int:
        g = self.granularity_ms
        return max(g, math.ceil(duration_ms / g - 1e-9) * g)

    def gb_s(self, duration_ms: float, memory_mb: int) -> float:
        return memory_mb / MB_PER_GB * self.billed_ms(duration_ms) / 1000.0

    def invocation_usd(self, duration_ms: float, memory_mb: int, status: str = "ok") -> float:
        if status == "throttled":
            return 0.0
        return (self.per_million_requests_usd / 1e6
                + self.gb_s(duration_ms, memory_mb) * self.per_gb_s_usd)


def cpu_share(memory_mb: int) -> float:
    """The fraction of one vCPU a function of this size gets (Lambda's proportional rule)."""
    return min(1.0, memory_mb / FULL_VCPU_MB)


@dataclass
class _Tally:
    requests: int = 0
    gb_s: float = 0.0
    usd: float = 0.0

    def add(self, duration_ms: float, memory_mb: int, status: str, pricing: Pricing) -> None:
        if status == "throttled":
            return
        self.requests += 1
        self.gb_s += pricing.gb_s(duration_ms, memory_mb)
        self.usd += pricing.invocation_usd(duration_ms, memory_mb, status)

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "gb_s": round(self.gb_s, 6), "usd": self.usd}


BUCKETS = {"minute": 60, "hour": 3600, "day": 86400}


def cost_summary(store: Any, app: str, *, since: float, until: float, by: str = "hour",
                 function: str | None = None, pricing: Pricing | None = None) -> dict[str, Any]:
    """Cost of `app` from the invocation log in [since, until): total, per function, and
    per `by` bucket (minute, hour, day; bucket starts in epoch seconds, UTC)."""
    if by not in BUCKETS:
        raise PricingError(f"cost: by must be one of {', '.join(BUCKETS)}, got {by!r}")
    pricing = pricing or Pricing()
    step = BUCKETS[by]
    total, per_fn, per_bucket = _Tally(), {}, {}
    per_fn_bucket: dict[tuple[str, float], _Tally] = {}
    for fn, started, duration, _billed, memory, _cold, _init, status, _trig in \
            store.invocation_window(app, since, until, function):
        t = math.floor(started / step) * step
        for tally in (total, per_fn.setdefault(fn, _Tally()), per_bucket.setdefault(t, _Tally()),
                      per_fn_bucket.setdefault((fn, t), _Tally())):
            tally.add(duration, memory, status, pricing)
    return {
        "app": app, "since": since, "until": until, "by": by, **total.to_dict(),
        "pricing": {"per_million_requests_usd": pricing.per_million_requests_usd,
                    "per_gb_s_usd": pricing.per_gb_s_usd,
                    "granularity_ms": pricing.granularity_ms},
        "functions": [{"function": fn, **t.to_dict()} for fn, t in
                      sorted(per_fn.items(), key=lambda kv: -kv[1].usd)],
        "buckets": [{"t": t, **v.to_dict()} for t, v in sorted(per_bucket.items())],
        "function_buckets": [{"function": fn, "t": t, **v.to_dict()}
                             for (fn, t), v in sorted(per_fn_bucket.items())],
    }


# -- what-if ---------------------------------------------------------------------------


def parse_changes(text: str) -> dict[str, float]:
    """`memory=512,batch_size=100,retention=30d` -> {"memory": 512, "batch_size": 100,
    "retention_days": 30}."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not value.strip():
            raise PricingError(f"what-if: {part!r} is not KEY=VALUE "
                               "(e.g. memory=512,batch_size=100,retention=30d)")
        value = value.strip()
        try:
            if key == "memory":
                out["memory"] = int(value.removesuffix("MB").removesuffix("mb"))
                if not 128 <= out["memory"] <= 10240:
                    raise PricingError(f"what-if: memory must be 128..10240 MB, got {value}")
            elif key == "batch_size":
                out["batch_size"] = int(value)
                if not 1 <= out["batch_size"] <= 10000:
                    raise PricingError(f"what-if: batch_size must be 1..10000, got {value}")
            elif key == "retention":
                days = float(value[:-1]) if value[-1] == "d" else float(value)
                if days <= 0:
                    raise PricingError(f"what-if: retention must be > 0 days, got {value}")
                out["retention_days"] = days
            else:
                raise PricingError(f"what-if: unknown setting {key!r}; "
                                   "known: memory, batch_size, retention")
        except ValueError as exc:
            if isinstance(exc, PricingError):
                raise
            raise PricingError(f"what-if: {part!r}: {value!r} is not a number") from None
    if not out:
        raise PricingError("what-if: no change given (e.g. memory=512)")
    return out


def what_if(store: Any, app: str, changes: dict[str, float], *, since: float, until: float,
            batch_sizes: dict[str, int] | None = None, function: str | None = None,
            pricing: Pricing | None = None) -> dict[str, Any]:
    """Re-price the traffic recorded in [since, until) under `changes` (parse_changes).

    memory: CPU share follows memory (cpu_share), so a CPU-bound duration scales by
    old_share / new_share and an I/O-bound one stays put: both estimates are given.
    batch_size: for functions fed in batches (`batch_sizes`: function -> current size),
    invocations scale by current / new, each doing proportionally more work (GB-s kept).
    retention: the invocation log kept that many days, at the log-storage price.
    """
    pricing = pricing or Pricing()
    batch_sizes = batch_sizes or {}
    rows = list(store.invocation_window(app, since, until, function))
    days = max((until - since) / 86400.0, 1e-9)
    now_usd = sum(pricing.invocation_usd(r[2], r[4], r[7]) for r in rows)
    cpu_usd = io_usd = 0.0
    assumptions = []
    mem = changes.get("memory")
    new_batch = changes.get("batch_size")
    for fn, _started, duration, _b, memory, _c, _i, status, _t in rows:
        if status == "throttled":
            continue
        m = int(mem) if mem else memory
        factor = 1.0
        if new_batch and batch_sizes.get(fn):
            factor = batch_sizes[fn] / new_batch  # fewer, longer invocations
        cpu_d = duration * cpu_share(memory) / cpu_share(m)
        per_req = pricing.per_million_requests_usd / 1e6
        cpu_usd += factor * per_req + pricing.gb_s(cpu_d / factor, m) * factor * pricing.per_gb_s_usd
        io_usd += factor * per_req + pricing.gb_s(duration / factor, m) * factor * pricing.per_gb_s_usd
    if mem:
        assumptions.append(f"memory {int(mem)} MB for every function; CPU-bound durations "
                           f"scale with CPU share (full vCPU at {FULL_VCPU_MB} MB), "
                           "I/O-bound ones do not")
    if new_batch:
        fed = sorted(f for f in batch_sizes if any(r[0] == f for r in rows))
        assumptions.append(f"batch size {int(new_batch)} for {', '.join(fed) or 'no function'}"
                           " (batch-fed functions); full batches, work per message unchanged")
    out: dict[str, Any] = {
        "app": app, "since": since, "until": until, "invocations": len(rows),
        "current_usd": now_usd, "current_usd_per_month": now_usd / days * 30,
        "estimate_usd_cpu_bound": cpu_usd, "estimate_usd_io_bound": io_usd,
        "estimate_usd_per_month": [min(cpu_usd, io_usd) / days * 30,
                                   max(cpu_usd, io_usd) / days * 30],
        "changes": changes, "assumptions": assumptions,
    }
    if "retention_days" in changes:
        per_day = len(rows) / days
        gb = per_day * changes["retention_days"] * pricing.bytes_per_invocation / 1e9
        out["log_storage_gb"] = gb
        out["log_storage_usd_per_month"] = gb * pricing.log_storage_gb_month_usd
        assumptions.append(f"{pricing.bytes_per_invocation} bytes of log per invocation, "
                           f"${pricing.log_storage_gb_month_usd}/GB-month")
    return out


def total_usd(rows: Iterable[tuple[float, int, str]], pricing: Pricing | None = None) -> float:
    """Cost of (duration_ms, memory_mb, status) rows."""
    pricing = pricing or Pricing()
    return sum(pricing.invocation_usd(d, m, s) for d, m, s in rows)
