"""Per-step retry policy in the shape of Step Functions' Retry field. Pure: no I/O."""

from __future__ import annotations

import random as _random
from dataclasses import dataclass
from typing import Any, Callable

from ..config import ConfigError

JITTER = ("NONE", "FULL")


@dataclass(frozen=True, slots=True)
class StepRetry:
    """IntervalSeconds, MaxAttempts (retries after the first attempt), BackoffRate,
    MaxDelaySeconds, JitterStrategy, ErrorEquals ("States.ALL" matches every error)."""

    interval_s: float = 1.0
    max_attempts: int = 0  # Step Functions' default without a Retry field: no retry
    backoff_rate: float = 2.0
    max_delay_s: float | None = None
    jitter: str = "NONE"
    errors: tuple[str, ...] = ("States.ALL",)

    def __post_init__(self) -> None:
        if self.interval_s < 0 or self.max_attempts < 0 or self.backoff_rate < 1.0:
            raise ConfigError(f"retry policy {self}: interval_s >= 0, max_attempts >= 0 and "
                              "backoff_rate >= 1 are required")
        if self.jitter not in JITTER:
            raise ConfigError(f"retry policy: jitter must be one of {JITTER}, got "
                              f"{self.jitter!r}")

    @classmethod
    def of(cls, value: Any) -> StepRetry:
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            aliases = {"IntervalSeconds": "interval_s", "MaxAttempts": "max_attempts",
                       "BackoffRate": "backoff_rate", "MaxDelaySeconds": "max_delay_s",
                       "JitterStrategy": "jitter", "ErrorEquals": "errors"}
            kw = {aliases.get(k, k): v for k, v in value.items()}
            if "errors" in kw:
                kw["errors"] = tuple(kw["errors"])
            try:
                return cls(**kw)
            except TypeError as exc:
                raise ConfigError(f"retry policy {value!r}: {exc}") from None
        raise ConfigError(f"retry must be a StepRetry or a dict, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"interval_s": self.interval_s, "max_attempts": self.max_attempts,
                "backoff_rate": self.backoff_rate, "max_delay_s": self.max_delay_s,
                "jitter": self.jitter, "errors": list(self.errors)}

    def matches(self, error_type: str | None) -> bool:
        return "States.ALL" in self.errors or (error_type or "") in self.errors

    def delay(self, retry: int, rand: Callable[[], float] = _random.random) -> float:
        """Seconds before retry number `retry` (1-based)."""
        d = self.interval_s * self.backoff_rate ** (retry - 1)
        if self.max_delay_s is not None:
            d = min(d, self.max_delay_s)
        if self.jitter == "FULL":
            d = d * rand()
        return d
