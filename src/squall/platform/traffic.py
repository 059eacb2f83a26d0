"""Aliases and traffic shifting, free of I/O: weights, the split, the canary's verdict.

An alias names what a client calls (`prod`); its weights say which versions serve it
(`7` or `7:90,8:10`). The split is smooth weighted round-robin (nginx's): over any 100
requests, a version with weight 10 gets exactly 10, spread out, with no randomness to
make a test flaky.

A canary (as Lambda with CodeDeploy): the alias sends a share to a candidate version for
a window. If the candidate's error rate passes `max_error_rate` once it has served
`min_requests`, the alias goes back to the baseline alone (automatic rollback); if the
window ends first, the candidate gets all the traffic (promotion). The clock is passed
in, so both endings are testable without waiting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DEFAULT_CANARY_WINDOW_S = 300.0
DEFAULT_MAX_ERROR_RATE = 0.05
DEFAULT_MIN_REQUESTS = 10
ALIAS_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


class TrafficError(ValueError):
    """A bad alias or weight specification; the message says what is expected."""


def parse_weights(spec: str) -> dict[int, int]:
    """'7' -> {7: 100}; '7:90,8:10' -> {7: 90, 8: 10} (shares in percent, summing to 100)."""
    weights: dict[int, int] = {}
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise TrafficError("give a version (7) or weighted versions (7:90,8:10)")
    for part in parts:
        version, sep, share = part.partition(":")
        try:
            v = int(version)
            w = int(share) if sep else 100
        except ValueError:
            raise TrafficError(f"{part!r} is not VERSION or VERSION:PERCENT") from None
        if v < 1 or not 0 <= w <= 100:
            raise TrafficError(f"{part!r}: versions start at 1 and shares are 0 to 100")
        if v in weights:
            raise TrafficError(f"version {v} is named twice in {spec!r}")
        weights[v] = w
    if sum(weights.values()) != 100:
        raise TrafficError(f"the shares in {spec!r} add up to {sum(weights.values())}, not 100")
    return weights


def check_alias_name(name: str) -> str:
    if not ALIAS_NAME.match(name):
        raise TrafficError(f"alias {name!r}: lower-case letters, digits and '-', starting "
                           "with a letter, at most 32 characters")
    return name


def format_weights(weights: dict[int, int]) -> str:
    return ",".join(f"{v}:{w}" for v, w in sorted(weights.items()))


class Splitter:
    """Smooth weighted round-robin over an alias's versions."""

    def __init__(self, weights: dict[int, int]) -> None:
        self.weights = {v: w for v, w in weights.items() if w > 0}
        self._current = dict.fromkeys(self.weights, 0)
        self._total = sum(self.weights.values())

    def pick(self) -> int:
        best = -1
        for v, w in self.weights.items():
            self._current[v] += w
            if best < 0 or self._current[v] > self._current[best]:
                best = v
        self._current[best] -= self._total
        return best


@dataclass(frozen=True)
class Canary:
    baseline: int
    candidate: int
    started_at: float
    window_s: float = DEFAULT_CANARY_WINDOW_S
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    min_requests: int = DEFAULT_MIN_REQUESTS

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise TrafficError("the canary window must be longer than 0 s")
        if not 0 <= self.max_error_rate < 1:
            raise TrafficError("the canary's max error rate is a fraction from 0 to below 1")
        if self.min_requests < 1:
            raise TrafficError("the canary needs at least 1 request to judge")
        if self.baseline == self.candidate:
            raise TrafficError("a canary needs two different versions")

    @classmethod
    def from_weights(cls, weights: dict[int, int], started_at: float,
                     **options: Any) -> Canary:
        """The candidate is the newer of exactly two versions."""
        if len(weights) != 2:
            raise TrafficError("a canary splits traffic between exactly two versions, "
                               "e.g. 7:90,8:10")
        baseline, candidate = sorted(weights)
        return cls(baseline, candidate, started_at, **{k: v for k, v in options.items()
                                                       if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dict(baseline=self.baseline, candidate=self.candidate, started_at=self.started_at,
                    window_s=self.window_s, max_error_rate=self.max_error_rate,
                    min_requests=self.min_requests)


class CanaryMonitor:
    """Counts the candidate's requests and errors; `verdict(now)` says what to do."""

    def __init__(self, canary: Canary) -> None:
        self.canary = canary
        self.requests = 0
        self.errors = 0

    def observe(self, version: int, ok: bool) -> None:
        if version == self.canary.candidate:
            self.requests += 1
            self.errors += not ok

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def verdict(self, now: float) -> str | None:
        """'rollback', 'promote', or None (keep watching)."""
        c = self.canary
        if self.requests >= c.min_requests and self.error_rate > c.max_error_rate:
            return "rollback"
        if now >= c.started_at + c.window_s:
            return "promote"
        return None
