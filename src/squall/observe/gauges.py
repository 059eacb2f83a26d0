"""The app's gauges: read now (for /metrics) and kept over time (for the dashboard).

`read_gauges` looks at the broker and the workflow store once and answers plain samples:

    queue_visible / queue_in_flight / queue_delayed   subject: the queue
    queue_oldest_age_s                                 subject: the queue (visible head)
    queue_retried                                      subject: the queue
    dlq_messages                                       subject: the dead-letter queue
    stream_iterator_age_s                              subject: "stream/function/shard"
    workflow_executions                                subject: "workflow/status"

`set_prometheus` moves the /metrics gauges to them (squall.observe.live on each scrape).
`GaugeSampler` writes them to the store every SQUALL_GAUGE_INTERVAL_S (60) on one node of
a cluster (a lease, as alert evaluation has), and drops samples older than
SQUALL_GAUGE_RETENTION (7d) every hour: at one sample a minute a queue (with its DLQ)
costs 6 rows a minute, about 60,000 a week. `squall.observe.metrics.gauge_series` reads them back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Awaitable, Callable, NamedTuple

from . import logs
from .numbers import parse_duration_s

OLDEST_PEEK = 1
RETRIED_PEEK = 100  # messages looked at for the retried gauge (bounded per read)
WORKFLOW_SCAN = 10_000  # executions counted at most per read
DEFAULT_INTERVAL_S = 60.0
DEFAULT_RETENTION_S = 7 * 86400.0
PRUNE_EVERY_S = 3600.0
SAMPLER_LEASE = "gauges"  # one node of a cluster samples (queue stats are cluster-wide)
QUEUE_STATES = ("visible", "in_flight", "delayed")
NAMES = (*(f"queue_{s}" for s in QUEUE_STATES), "queue_oldest_age_s", "queue_retried",
         "dlq_messages", "stream_iterator_age_s", "workflow_executions")


class GaugeSample(NamedTuple):
    name: str  # one of NAMES
    labels: tuple[str, ...]  # the Prometheus labels (squall.observe.metrics.Metrics)
    value: float

    @property
    def subject(self) -> str:
        """What the sample is about, as stored: the labels joined by "/"."""
        return "/".join(self.labels)


async def read_gauges(messaging: Any, orchestration: Any, now: float) -> list[GaugeSample]:
    """Queue depths and ages, DLQ sizes, stream iterator ages and workflow counts, now."""
    out: list[GaugeSample] = []
    if messaging is not None:
        broker = messaging.broker
        for queue, consumer in list(messaging.consumers.items()):
            # "_…": a function's own queue (async invocations, rules)
            s = await broker.stats(queue)
            out += [GaugeSample(f"queue_{state}", (queue,), float(getattr(s, state)))
                    for state in QUEUE_STATES]
            head = await broker.peek(queue, OLDEST_PEEK) if s.visible else []
            out.append(GaugeSample("queue_oldest_age_s", (queue,),
                                   max(0.0, now - head[0].sent_at) if head else 0.0))
            sample = await broker.peek(queue, RETRIED_PEEK) if s.total else []
            out.append(GaugeSample("queue_retried", (queue,),
                                   float(sum(1 for d in sample if d.receive_count > 0))))
            dlq = getattr(consumer.trigger, "dead_letter_queue", None)
            if dlq:
                out.append(GaugeSample("dlq_messages", (dlq,),
                                       float((await broker.stats(dlq)).total)))
        for consumer in list(messaging.streams.values()):
            for shard in range(consumer.trigger.shards):
                cp = await broker.get_checkpoint(consumer.stream, consumer.cfg.name, shard)
                nxt = await broker.read(consumer.stream, shard, cp or 0, 1)
                out.append(GaugeSample(
                    "stream_iterator_age_s", (consumer.stream, consumer.cfg.name, str(shard)),
                    max(0.0, now - nxt[0].arrival) if nxt else 0.0))
    if orchestration is not None:
        counts: dict[tuple[str, str], int] = {}
        for ex in orchestration.workflow_store.list(limit=WORKFLOW_SCAN):
            counts[(ex.name, ex.status)] = counts.get((ex.name, ex.status), 0) + 1
        out += [GaugeSample("workflow_executions", key, float(n))
                for key, n in sorted(counts.items())]
    return out


def set_prometheus(metrics: Any, samples: list[GaugeSample]) -> None:
    """Move the /metrics gauges (squall.observe.metrics.Metrics) to `samples`."""
    for s in samples:
        if s.name.startswith("queue_") and s.name[6:] in QUEUE_STATES:
            metrics.queue.labels(s.labels[0], s.name[6:]).set(s.value)
            continue
        gauge = {"queue_oldest_age_s": metrics.oldest, "queue_retried": metrics.retried,
                 "dlq_messages": metrics.dlq, "stream_iterator_age_s": metrics.stream_age,
                 "workflow_executions": metrics.workflows}[s.name]
        gauge.labels(*s.labels).set(s.value)


class SamplerSettings(NamedTuple):
    interval_s: float = DEFAULT_INTERVAL_S
    retention_s: float = DEFAULT_RETENTION_S

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> SamplerSettings:
        """SQUALL_GAUGE_INTERVAL_S (seconds, >= 1; 0 turns sampling off) and
        SQUALL_GAUGE_RETENTION (a duration such as 7d; at least one interval)."""
        env = dict(os.environ) if env is None else env
        raw = env.get("SQUALL_GAUGE_INTERVAL_S", str(DEFAULT_INTERVAL_S))
        try:
            interval = float(raw)
        except ValueError:
            raise ValueError(f"SQUALL_GAUGE_INTERVAL_S must be a number of seconds, "
                             f"got {raw!r}") from None
        if interval != 0 and not 1 <= interval <= 86400:
            raise ValueError(f"SQUALL_GAUGE_INTERVAL_S must be 1..86400 (or 0: off), "
                             f"got {raw}")
        try:
            retention = parse_duration_s(env.get("SQUALL_GAUGE_RETENTION", "7d"))
        except ValueError as exc:
            raise ValueError(f"SQUALL_GAUGE_RETENTION: {exc}") from None
        if retention < interval:
            raise ValueError(f"SQUALL_GAUGE_RETENTION ({retention:g} s) must be at least "
                             f"one sampling interval ({interval:g} s)")
        return cls(interval, retention)


class GaugeSampler:
    """Writes the app's gauges to the store, one row per sample, at the clock's time."""

    def __init__(self, app: str, read: Callable[[float], Awaitable[list[GaugeSample]]],
                 store: Any, settings: SamplerSettings | None = None, *,
                 clock: Callable[[], float] = time.time,
                 leader: Callable[[], Awaitable[bool]] | None = None) -> None:
        self.app = app
        self.read = read
        self.store = store
        self.settings = settings or SamplerSettings()
        self.clock = clock
        self.leader = leader  # None: always this node
        self._pruned_at: float | None = None

    async def sample(self) -> int:
        """One round: read, write, and prune when due. Returns the rows written (0 on a
        node that is not the sampling one)."""
        if self.leader is not None and not await self.leader():
            return 0
        now = self.clock()
        samples = await self.read(now)
        rows = [(self.app, s.name, s.subject, now, s.value) for s in samples]
        run = asyncio.get_running_loop().run_in_executor
        await run(None, self.store.record_gauges, rows)
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY_S:
            await run(None, self.store.prune_gauges, self.app,
                      now - self.settings.retention_s)
            self._pruned_at = now
        return len(rows)

    async def run(self) -> None:
        while True:
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a store or broker hiccup: try again next round
                logs.event("gauge sampling failed", logging.WARNING, app=self.app,
                           error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.settings.interval_s)
