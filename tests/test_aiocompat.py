"""squall.aiocompat.wait_for: asyncio.wait_for's contract, and a cancellation that
arrives as the awaited future completes is never lost (it is on Python 3.11)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from squall.aiocompat import wait_for
from squall.testing.conformance import async_test


async def _cancel_as_it_completes(waiter) -> object:
    fut = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(waiter(fut, 10))
    await asyncio.sleep(0)  # the task now waits on fut
    fut.set_result("woken")  # a wake-up and a stop() in the same loop iteration
    task.cancel()
    try:
        return await task
    except asyncio.CancelledError:
        return "cancelled"


@async_test
async def test_a_cancellation_as_the_future_completes_is_not_lost():
    assert await _cancel_as_it_completes(wait_for) == "cancelled"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio.wait_for fixed in 3.12")
@async_test
async def test_asyncio_wait_for_on_3_11_loses_it():
    # why the helper exists: the task got the result and would have run on
    assert await _cancel_as_it_completes(asyncio.wait_for) == "woken"


@async_test
async def test_result_timeout_and_cancelling_the_awaited_future():
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.call_soon(done.set_result, 7)
    assert await wait_for(done, 5) == 7
    slow = loop.create_future()
    with pytest.raises(asyncio.TimeoutError):
        await wait_for(slow, 0.01)
    assert slow.cancelled()  # as asyncio.wait_for does
    event = asyncio.Event()
    loop.call_later(0.01, event.set)
    assert await wait_for(event.wait(), None) is True
    failing = loop.create_future()
    failing.set_exception(ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        await wait_for(failing, 1)
