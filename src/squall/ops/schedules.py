"""Schedules and their next firings (`squall schedules`, the dashboard's Schedules page)."""

from __future__ import annotations

from typing import Any

from ..backends.broker import QueueBroker
from ..config import FunctionConfig
from ..sources.scheduler import ScheduledFunction


def schedule_rows(configs: dict[str, FunctionConfig], now: float,
                  count: int = 3) -> list[dict[str, Any]]:
    """Each scheduled function with its expression and its next `count` firings (UTC)."""
    rows = []
    for cfg in configs.values():
        if cfg.schedule is None:
            continue
        sf = ScheduledFunction(cfg)
        nxt = [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in sf.next_firings(now, count)]
        rows.append({"function": cfg.name, "expression": cfg.schedule.expression,
                     "timezone": cfg.schedule.timezone, "missed": cfg.schedule.missed,
                     "next": nxt, "key": sf.key})
    return rows


async def with_last_firing(broker: QueueBroker,
                           rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with `lastFired`: the tick (epoch seconds) last fired, across nodes."""
    return [{**r, "lastFired": await broker.last_tick(r["key"])} for r in rows]
