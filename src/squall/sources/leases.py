"""Leases held by this node: who runs the scheduler, who reads which stream shard.

A lease is a broker record (name -> holder, expiry) taken with one compare-and-set, so
across any number of nodes at most one holds it until it expires. The keeper renews what
this node holds every third of the time-to-live; a node that dies stops renewing, and
another takes the lease over once it expires (at most `ttl_s` plus one check interval
later). A holder that is paused past its expiry (a long GC pause, a suspended VM) may
briefly overlap with the next holder: the work guarded by a lease must tolerate that
(scheduler ticks are fired exactly once by the broker anyway; stream checkpoints never go
back, so an overlap re-delivers records, at least once, never skips them).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time

from ..backends.broker import BrokerError, QueueBroker
from ..observe import logs
from ..runtime.aio import cancel

DEFAULT_TTL_S = 10.0


def new_node_id() -> str:
    """host:pid:random — unique per process start, readable in logs and the lease table."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class LeaseKeeper:
    def __init__(self, broker: QueueBroker, node_id: str, *,
                 ttl_s: float = DEFAULT_TTL_S) -> None:
        self.broker = broker
        self.node_id = node_id
        self.ttl_s = ttl_s
        # name -> monotonic deadline until which this node may act on the lease; kept a
        # little short of the broker's expiry so a slow renewal never overlaps by design
        self._held: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def interval(self) -> float:
        return self.ttl_s / 3

    def holds(self, name: str) -> bool:
        deadline = self._held.get(name)
        return deadline is not None and time.monotonic() < deadline

    async def acquire(self, name: str, *, renewal: bool = False) -> bool:
        """Take (or renew) `name` now; True when this node holds it."""
        started = time.monotonic()
        try:
            got = await self.broker.lease(name, self.node_id, self.ttl_s)
        except BrokerError as exc:
            logs.event("lease check failed", logging.WARNING, lease=name, error=str(exc))
            got = False
        if renewal and name not in self._held:
            return False  # released while the renewal was on its way: let it expire
        if got:
            if name not in self._held:
                logs.event("lease taken", lease=name, node=self.node_id)
            self._held[name] = started + self.ttl_s * 0.9
            self._ensure_renewing()
        elif self._held.pop(name, None) is not None:
            logs.event("lease lost", logging.WARNING, lease=name, node=self.node_id)
        return got

    async def wait_turn(self) -> None:
        """Sleep one check interval (between attempts to take a lease held elsewhere)."""
        await asyncio.sleep(self.interval)

    def _ensure_renewing(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._renew())

    async def _renew(self) -> None:
        while self._held:
            await asyncio.sleep(self.interval)
            for name in list(self._held):
                if name in self._held:
                    await self.acquire(name, renewal=True)

    async def release(self, name: str) -> None:
        """Give up one lease (the work it guarded is done): no longer renewed, and free
        for another node at once."""
        if self._held.pop(name, None) is None:
            return
        try:
            await self.broker.release(name, self.node_id)
        except BrokerError:
            pass  # it expires on its own

    async def release_all(self) -> None:
        await cancel(self._task)
        self._task = None
        held, self._held = list(self._held), {}
        for name in held:
            try:
                await self.broker.release(name, self.node_id)
            except BrokerError:
                pass  # it expires on its own
