"""Time for the conformance suites: a fake clock that moves only when told, the real
clock, the durations a suite works with, a timeline that moves a test to points in time
measured from its start, and a runner for async test methods (squall.testing.conformance
explains the two modes)."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable


class FakeClock:
    """A wall clock that moves only when told to."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def elapse(self, seconds: float) -> None:
        """Let `seconds` pass: at once."""
        self.advance(seconds)


class RealClock:
    """The wall clock, for a backend whose server keeps time: elapsing really waits."""

    def __call__(self) -> float:
        return time.time()

    async def elapse(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


SuiteClock = FakeClock | RealClock


@dataclass(frozen=True, slots=True)
class Durations:
    """The durations (seconds) the suite works with, by role."""

    visibility: float = 30.0  # a visibility timeout; a lock
    short: float = 10.0  # a shorter visibility timeout; a lease's time to live
    retry: float = 5.0  # a retry (nack) delay
    delay: float = 60.0  # a send delay; the deduplication window; a longer lock
    expiry: float = 3600.0  # how long an idempotency record is kept


#: Short enough for a real-time run of the whole suite to take seconds, long enough that
#: half of each (the margin around a deadline) dwarfs scheduling and network jitter.
REAL_DURATIONS = Durations(visibility=1.0, short=0.6, retry=0.5, delay=1.0, expiry=1.0)


class Timeline:
    """Moves a test to points in time measured from its start (or last `restart`)."""

    def __init__(self, clock: SuiteClock) -> None:
        self.clock = clock
        self.restart()

    def restart(self) -> None:
        """Measure from now on (after an action that sets a new deadline)."""
        self._pos = 0.0  # where a fake clock stands, exactly
        self._t0 = time.monotonic()

    async def at(self, offset: float) -> None:
        """Elapse until `offset` seconds after the start."""
        if isinstance(self.clock, FakeClock):
            await self.clock.elapse(offset - self._pos)
        else:  # real time: measured, so the time the test's own calls took counts too
            await self.clock.elapse(self._t0 + offset - time.monotonic())
        self._pos = offset


def async_test(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Run an async test method on a fresh event loop, bounded in time."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 60))

    return wrapper
