"""Small asyncio helpers shared by the long-running loops (consumers, scheduler, log)."""

from __future__ import annotations

import asyncio
from typing import Any, Iterable


async def cancel(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel tasks and wait until each has finished unwinding."""
    live = [t for t in tasks if t is not None]
    for t in live:
        t.cancel()
    for t in live:
        try:
            await t
        except asyncio.CancelledError:
            pass


async def cancel_all(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel tasks and wait until each has finished, whatever it raised (stop paths:
    a delivery or a scan that failed has already said so in the log)."""
    live = [t for t in tasks if t is not None]
    for t in live:
        t.cancel()
    for t in live:
        try:
            await t
        except BaseException:
            pass
