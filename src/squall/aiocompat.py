"""asyncio behaviour that differs between the Python versions Squall supports (3.11+),
made the same for every layer (pure asyncio, no Squall imports)."""

from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

T = TypeVar("T")


async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:
    """`asyncio.wait_for`, without Python 3.11's lost cancellation: there, a task
    cancelled in the loop iteration in which the awaited future completes gets the
    result instead of CancelledError and runs on, so a `stop()` that cancels a waiting
    loop (a long poll woken by a commit at that moment) waits for it forever (fixed in
    3.12; seen here as a stream consumer that never stopped, about 1 run in 20 of
    tests/test_leases.py under load). Same contract otherwise: the result, TimeoutError
    after `timeout` seconds (None: no limit), the awaited future cancelled on timeout or
    when the caller is cancelled."""
    fut = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait((fut,), timeout=timeout)
    except asyncio.CancelledError:
        fut.cancel()
        raise
    if not done:
        fut.cancel()
        await asyncio.wait((fut,))  # until it has finished cancelling, as wait_for does
        if fut.cancelled():
            raise asyncio.TimeoutError()
    return fut.result()
