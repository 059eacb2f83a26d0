"""Queues and their dead-letter queues: depth, dead letters with why they died, redrive.

`squall dlq list|show|redrive` and the dashboard's Queues page both come through here.
A redrive moves dead letters back to the queue they died on at a bounded rate (a fixed
handler must not be buried under the whole backlog at once), in small batches, each one
durable before the next.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Awaitable, Callable, Iterable, Sequence

from ..backends.broker import Delivery, QueueBroker
from ..config import FunctionConfig
from . import OpsError, not_found

DEFAULT_REDRIVE_RATE = 100.0  # messages per second


def dead_letter_queues(configs: dict[str, FunctionConfig],
                       queue: str | None = None) -> dict[str, str]:
    """Dead-letter queue -> the queue it serves; only `queue`'s (named by itself or by its
    DLQ) when given."""
    out = {c.queue.dead_letter_queue: c.queue.queue for c in configs.values() if c.queue}
    if queue is None:
        return out
    match = {d: q for d, q in out.items() if queue in (d, q)}
    if not match:
        known = ", ".join(sorted(out.values())) or "none"
        raise not_found(f"no queue named {queue!r} in this app; its queues are: {known}")
    return match


def _matches(d: Delivery, contains: str | None, error: str | None) -> bool:
    if contains and contains not in d.body.decode("utf-8", "replace"):
        return False
    if error and error not in (d.last_error or ""):
        return False
    return True


async def collect(broker: QueueBroker, dlqs: Iterable[str], *, contains: str | None = None,
                  error: str | None = None, limit: int = 100) -> list[Delivery]:
    """Dead letters of `dlqs`, oldest first per queue, filtered by body and last error."""
    out: list[Delivery] = []
    for dlq in dlqs:
        after = None
        while len(out) < limit:
            page = await broker.peek(dlq, 500, after_id=after)
            if not page:
                break
            out += [d for d in page if _matches(d, contains, error)]
            after = page[-1].message_id
    return out[:limit]


def select(deliveries: list[Delivery], ids: Sequence[str]) -> list[Delivery]:
    """Only the dead letters with these ids; every id must be there."""
    wanted = set(ids)
    chosen = [d for d in deliveries if d.message_id in wanted]
    missing = wanted - {d.message_id for d in chosen}
    if missing:
        raise not_found(f"no dead letter with id {', '.join(sorted(missing))}")
    return chosen


def record(d: Delivery) -> dict[str, Any]:
    """A dead letter as JSON: the shape `squall dlq list --json` prints."""
    body = d.body.decode("utf-8", "replace")
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = body
    return {"messageId": d.message_id, "dlq": d.queue, "queue": d.source_queue,
            "reason": d.dead_letter_reason, "attempts": d.receive_count,
            "lastError": d.last_error, "sentAt": d.sent_at, "trace": d.trace,
            "attributes": d.attributes, "body": parsed}


async def redrive(broker: QueueBroker, chosen: Sequence[Delivery], *,
                  rate: float = DEFAULT_REDRIVE_RATE,
                  progress: Callable[[int], None] | None = None,
                  sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                  clock: Callable[[], float] = time.monotonic) -> int:
    """Move `chosen` dead letters back to their queues, at most `rate` a second, in about
    ten durable batches a second; `progress(n)` after each batch. Returns how many moved
    (a message redriven or deleted meanwhile by someone else is skipped)."""
    if not rate > 0:
        raise OpsError(f"the redrive rate must be above 0 messages a second, got {rate!r}")
    moved = 0
    step = max(1, int(rate // 10))
    t0 = clock()
    for i in range(0, len(chosen), step):
        part = chosen[i:i + step]
        by_dlq: dict[str, list[str]] = {}
        for d in part:
            by_dlq.setdefault(d.queue, []).append(d.message_id)
        for dlq, mids in by_dlq.items():
            moved += await broker.redrive(dlq, message_ids=mids, limit=len(mids))
        if progress is not None:
            progress(len(part))
        ahead = (i + len(part)) / rate - (clock() - t0)
        if ahead > 0 and i + len(part) < len(chosen):
            await sleep(ahead)  # the rate bound
    return moved


async def queue_overview(broker: QueueBroker,
                         configs: dict[str, FunctionConfig]) -> list[dict[str, Any]]:
    """Every queue of the app with its consumer, depth and dead-letter depth."""
    rows = []
    for cfg in sorted((c for c in configs.values() if c.queue), key=lambda c: c.queue.queue):
        q = cfg.queue
        live, dead = await broker.stats(q.queue), await broker.stats(q.dead_letter_queue)
        rows.append({"queue": q.queue, "function": cfg.name, "visible": live.visible,
                     "inFlight": live.in_flight, "delayed": live.delayed,
                     "dlq": q.dead_letter_queue, "deadLetters": dead.total,
                     "maxReceive": q.max_receive, "batchSize": q.batch_size,
                     "visibilityTimeoutS": q.visibility_for(cfg.timeout_s)})
    return rows
