"""Deterministic stand-ins for the engine's outside world."""

from __future__ import annotations


class FakeClock:
    """Epoch seconds that only move when something sleeps."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds
