"""The scheduler: fires scheduled functions, exactly once per tick.

A firing is one atomic broker write that records the tick as fired and enqueues the
Scheduled Event on the function's asynchronous-invocation queue, so a tick is never fired
twice (not after a restart, not by a second node) and never lost once recorded. Ticks
missed while nothing ran are handled by the schedule's `missed` policy. Between ticks
the scheduler sleeps until the next one; it never polls.

With several nodes on one broker, only the holder of the "scheduler" lease fires; the
others check the lease once per interval and take over when its holder stops renewing
(the missed ticks are then handled by the `missed` policy, as after a restart).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timezone
from typing import Callable

from ..backends.broker import OutMessage, QueueBroker
from ..config import FunctionConfig
from ..events.schedule import Schedule, missed_ticks, parse_schedule, scheduled_event
from ..observe import logs
from ..runtime.aio import cancel
from .leases import LeaseKeeper

MAX_SLEEP_S = 60.0  # re-check at least this often (clock jumps, suspend)


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


class ScheduledFunction:
    def __init__(self, cfg: FunctionConfig) -> None:
        assert cfg.schedule is not None
        self.cfg = cfg
        self.trigger = cfg.schedule
        self.schedule: Schedule = parse_schedule(cfg.schedule.expression, cfg.schedule.timezone)

    @property
    def key(self) -> str:
        return f"{self.cfg.name}:{self.trigger.expression}@{self.trigger.timezone}"

    def next_firings(self, after: float, n: int) -> list[datetime]:
        out: list[datetime] = []
        t = _dt(after)
        for _ in range(n):
            nxt = self.schedule.next_after(t)
            if nxt is None:
                break
            out.append(nxt)
            t = nxt
        return out


class Scheduler:
    LEASE = "scheduler"

    def __init__(self, broker: QueueBroker, configs: dict[str, FunctionConfig], *,
                 clock: Callable[[], float] = time.time,
                 leases: LeaseKeeper | None = None) -> None:
        self.broker = broker
        self.clock = clock
        self.leases = leases
        self.functions = [ScheduledFunction(c) for c in configs.values() if c.schedule]
        self.started_at = clock()
        self._task: asyncio.Task[None] | None = None

    async def fire_due(self) -> int:
        """Fire every tick that is due now; returns how many were fired."""
        fired = 0
        now = self.clock()
        for sf in self.functions:
            last = await self.broker.last_tick(sf.key)
            since = last if last is not None else self.started_at
            for tick in missed_ticks(sf.schedule, _dt(since), _dt(now), sf.trigger.missed,
                                     limit=100):
                event = scheduled_event(sf.cfg.name, tick)
                msg = OutMessage(body=json.dumps(event).encode(),
                                 attributes={"schedule": sf.trigger.expression})
                if await self.broker.fire_tick(sf.key, tick.timestamp(),
                                               f"_async.{sf.cfg.name}", msg):
                    fired += 1
        return fired

    async def step(self) -> bool:
        """Fire what is due if this node leads (holds the scheduler lease); True if so."""
        leader = self.leases is None or await self.leases.acquire(self.LEASE)
        if leader:
            try:
                await self.fire_due()
            except Exception as exc:  # keep the schedule alive; say so
                logs.event("schedule firing failed", logging.ERROR, error=str(exc))
        return leader

    def next_due(self) -> float | None:
        now = _dt(self.clock())
        times = [t for sf in self.functions if (t := sf.schedule.next_after(now)) is not None]
        return min(times).timestamp() if times else None

    def start(self) -> None:
        if self.functions:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            leader = await self.step()
            nxt = self.next_due()
            if nxt is None:
                return
            wait = min(MAX_SLEEP_S, max(0.0, nxt - self.clock()) + 0.001)
            if not leader:
                assert self.leases is not None
                wait = min(wait, self.leases.interval)  # be ready to take over
            await asyncio.sleep(wait)
