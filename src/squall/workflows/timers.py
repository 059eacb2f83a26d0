"""The supervisor's durable-timer loop, shared by workflows (`wf.sleep`, signal
timeouts) and state machines (long Waits and Retry back-offs). The timers themselves
are recorded in the workflow store by their owners; this only fires the due ones on
time: `timers` is the owner's heap of (fire_at, …) tuples, `changed` is set when one
is armed, `fire_due()` fires whatever the clock says is due."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from ..aiocompat import wait_for


async def timer_loop(fire_due: Callable[[], Awaitable[Any]], timers: list[tuple[Any, ...]],
                     changed: asyncio.Event, clock: Callable[[], float],
                     running: Callable[[], bool] = lambda: True) -> None:
    while running():
        await fire_due()
        changed.clear()
        delay = (timers[0][0] - clock()) if timers else None
        try:
            await wait_for(changed.wait(), None if delay is None else max(delay, 0.001))
        except asyncio.TimeoutError:
            pass
