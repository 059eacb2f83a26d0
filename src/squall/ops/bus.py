"""The event bus: its rules, its archive, and replay (`squall replay`, the Bus page)."""

from __future__ import annotations

import json
from typing import Any

from ..backends.broker import QueueBroker
from . import OpsError

MAX_ARCHIVE_PAGE = 1000


def rules(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The app's rules as declared: name, event pattern, targets, input shaping."""
    return [{"name": r["name"], "pattern": r["pattern"], "targets": list(r["targets"]),
             "inputPath": r.get("input_path"), "inputTransformer": r.get("input_transformer"),
             "description": r.get("description", "")}
            for r in manifest.get("rules", [])]


def check_range(start: float, end: float) -> None:
    if not end > start:
        raise OpsError("the end of a replay or archive range must be after its start")


async def archive(broker: QueueBroker, start: float, end: float, *, limit: int = 100,
                  after: str | None = None) -> list[dict[str, Any]]:
    """Archived events with start <= time < end, oldest first, paged by event id."""
    check_range(start, end)
    if not 1 <= limit <= MAX_ARCHIVE_PAGE:
        raise OpsError(f"limit must be from 1 to {MAX_ARCHIVE_PAGE}, got {limit}")
    out = []
    for e in await broker.archived(start, end, limit=limit, after=after):
        try:
            event: Any = json.loads(e.body)
        except ValueError:
            event = e.body
        out.append({"id": e.event_id, "time": e.time, "source": e.source,
                    "detailType": e.detail_type, "event": event})
    return out


async def replay(messaging: Any, start: float, end: float, *, rule: str | None = None,
                 name: str = "replay") -> int:
    """Deliver archived events from [start, end) again through the rules (only `rule`'s
    targets if given); `messaging` is a configured squall.sources.messaging.Messaging."""
    from ..sources.messaging import UnknownQueue

    check_range(start, end)
    try:
        return await messaging.replay(start, end, rule=rule, name=name)
    except UnknownQueue as exc:
        raise OpsError(str(exc), "not_found") from None
