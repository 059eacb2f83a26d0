"""Change streams and object events: feed consumers (the "database changes" and "object
storage" event sources).

A feed is the ordered outbox a state store writes in the same transaction as the change
it reports (see squall.backends.state). Each function triggered by a feed
(`@app.on_change`, `@app.on_object`) has its own consumer with its own checkpoint per
shard, and reads like a stream consumer: in order per shard (so per key), at least once,
a failing batch retried in place (bisected to find the bad record), then dead-lettered to
the function's DLQ ("<function>-dlq") so the shard moves on. The retry/bisect/DLQ walk
is StreamConsumer.process, shared as is; this module only says where records come from,
how they are filtered, and what the function receives.

A record keeps the traceparent of the invocation whose write appended it (loop lineage
included; none for a write from outside any function): a batch runs under its first
record's, as stream batches do, so a function that writes to the table or bucket that
triggers it counts one pass per round and its 17th is stopped as a recursive loop, that
record dead-lettered at once with reason=recursive_loop (squall.events.lineage).

Consumers wake when the state service commits to their feed, and, with a shared store
(PostgreSQL), when any node does: the store's listener calls the service's FeedSignal.
A slow fallback re-read (FALLBACK_READ_S) is only a safety net. With several nodes, each
shard is read by the node holding its lease.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Any, Callable

from ..backends.base import StoreError
from ..backends.broker import BrokerError, OutMessage
from ..config import FunctionConfig, StreamTrigger
from ..events.lineage import RECURSIVE_LOOP
from ..observe import logs
from ..state.formats import sequence
from .queue import BatchOutcome
from .stream import LONG_POLL_S, STOPPED, StreamConsumer

FALLBACK_READ_S = 5.0  # a write no notification reported is seen at most this late


class FeedConsumer(StreamConsumer):
    def __init__(self, service: Any, broker: Any, invoke: Any, cfg: FunctionConfig,
                 shards: int, *, clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random, leases: Any = None) -> None:
        t = cfg.feed
        assert t is not None
        self.service = service
        self.store = service.store
        self.broker = broker
        self.invoke = invoke
        self.cfg = cfg
        self.feed_trigger = t
        self.feed = t.feed
        # the stream consumer's knobs, for the shared retry/bisect/DLQ walk
        self.trigger = StreamTrigger(stream=t.feed, batch_size=t.batch_size, shards=shards,
                                     max_retries=t.max_retries,
                                     bisect_on_error=t.bisect_on_error, retry=t.retry,
                                     dlq=t.dlq or f"{cfg.name}-dlq",
                                     starting_position=t.starting_position)
        self.clock = clock
        self.rand = rand
        self.leases = leases
        self.live = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def stream(self) -> str:
        return self.feed

    def lease_name(self, shard: int) -> str:
        return f"feed:{self.feed}:{self.cfg.name}:{shard}"

    async def checkpoint(self, shard: int) -> int:
        cp = await self.service.run(self.store.feed_checkpoint, self.feed, self.cfg.name, shard)
        if cp is None:
            cp = 0 if self.trigger.starting_position == "trim_horizon" else \
                await self.service.run(self.store.latest_feed_seq, self.feed, shard)
            await self.service.run(self.store.set_feed_checkpoint, self.feed, self.cfg.name,
                                   shard, cp)
        return cp

    async def _run(self, shard: int) -> None:
        lease = self.lease_name(shard)
        wait_s = LONG_POLL_S
        while True:
            try:
                if self.leases is not None:
                    if not self.leases.holds(lease) and not await self.leases.acquire(lease):
                        await self.leases.wait_turn()
                        continue
                    wait_s = min(LONG_POLL_S, self.leases.interval)
                entries = await self._next(shard, await self.checkpoint(shard), wait_s)
                if entries and (self.leases is None or self.leases.holds(lease)):
                    await self.process(shard, entries)
            except asyncio.CancelledError:
                raise
            except (StoreError, BrokerError) as exc:
                logs.event("feed read failed", logging.ERROR, feed=self.feed,
                           function=self.cfg.name, shard=shard, error=str(exc))
                await asyncio.sleep(1.0)

    async def _next(self, shard: int, cp: int, wait_s: float) -> list[Any]:
        deadline = time.monotonic() + wait_s
        while True:
            generation = self.service.signal.generation[self.feed]
            got = await self.service.run(self.store.read_feed, self.feed, shard, cp,
                                         self.trigger.batch_size)
            remaining = deadline - time.monotonic()
            if got or remaining <= 0:
                return got
            await self.service.signal.wait(self.feed, generation,
                                           min(remaining, FALLBACK_READ_S))

    async def drain_once(self) -> BatchOutcome:
        """Every shard to its end, without waiting (for deterministic tests)."""
        total = BatchOutcome()
        for shard in range(self.trigger.shards):
            while entries := await self._next(shard, await self.checkpoint(shard), 0):
                o = await self.process(shard, entries)
                total = BatchOutcome(total.succeeded + o.succeeded, total.retried + o.retried,
                                     total.dead_lettered + o.dead_lettered)
        return total

    def _wanted(self, record: Any) -> bool:
        t = self.feed_trigger
        return (record.event in t.events and record.key.startswith(t.prefix)
                and record.key.endswith(t.suffix))

    async def process(self, shard: int, entries: list[Any]) -> BatchOutcome:
        wanted = [e for e in entries if self._wanted(e)]
        outcome = await super().process(shard, wanted) if wanted else BatchOutcome()
        await self._advance(shard, entries[-1].seq)  # past the records filtered out
        return outcome

    def payload(self, batch: list[Any]) -> str:
        t = self.feed_trigger
        return json.dumps({"source": t.source, "resource": t.resource,
                           "function": self.cfg.name, "records": [
                               {"sequence": sequence(r.shard, r.seq), "shard": r.shard,
                                "seq": r.seq, "key": r.key, "event": r.event, "at": r.at,
                                "body": json.loads(r.body)} for r in batch]})

    async def _invoke(self, batch: list[Any]) -> tuple[int | None, str]:
        try:
            # in the writer's event chain (the batch's first record's, as streams do)
            result = await self.invoke(self.cfg.name, "event", self.payload(batch),
                                       trace=batch[0].trace)
        except Exception as exc:
            return 0, f"{type(exc).__name__}: {exc}"
        if not result.ok:
            return (STOPPED if result.error_type == RECURSIVE_LOOP else 0,
                    f"{result.error_type}: {result.error_message}")
        failed = set(json.loads(result.value)["failed"])
        for i, r in enumerate(batch):
            if sequence(r.shard, r.seq) in failed:
                return i, "reported failed by the handler (partial batch failure)"
        return None, ""

    async def _advance(self, shard: int, seq: int) -> None:
        await self.service.run(self.store.set_feed_checkpoint, self.feed, self.cfg.name,
                               shard, seq)

    async def _dead_letter(self, batch: list[Any], error: str, *,
                           reason: str = "max_retries") -> None:
        msgs = [OutMessage(body=self.payload([r]).encode(), attributes={
            "feed": self.feed, "shard": str(r.shard), "sequence": sequence(r.shard, r.seq),
            "key": r.key, "event": r.event, "consumer": self.cfg.name, "error": error,
            "reason": reason}, trace=r.trace) for r in batch]
        await self.broker.send(self.trigger.dead_letter_queue, msgs)
        logs.event("feed records dead-lettered", logging.WARNING, feed=self.feed,
                   function=self.cfg.name, count=len(batch), error=error, reason=reason,
                   dlq=self.trigger.dead_letter_queue)


class Feeds:
    """Every feed consumer of one app."""

    def __init__(self, service: Any, invoke: Any, broker: Any, *,
                 clock: Callable[[], float] = time.time, rand: Any = None,
                 leases: Any = None) -> None:
        self.service = service
        self.invoke = invoke
        self.broker = broker
        self.clock = clock
        self.rand = rand or random.random
        self.leases = leases
        self.consumers: dict[str, FeedConsumer] = {}

    def configure(self, configs: dict[str, FunctionConfig]) -> None:
        decls = self.service.decls
        self.consumers = {}
        for cfg in configs.values():
            t = cfg.feed
            if cfg.kind not in ("change", "object") or t is None:
                continue
            declared = decls.tables if t.source == "table" else decls.buckets
            spec = declared.get(t.resource)
            if spec is None:
                logs.event("feed trigger on an undeclared resource", logging.ERROR,
                           function=cfg.name, resource=t.feed)
                continue
            self.consumers[cfg.name] = FeedConsumer(
                self.service, self.broker, self.invoke, cfg, spec.shards, clock=self.clock,
                rand=self.rand, leases=self.leases)

    def dead_letter_queues(self) -> list[str]:
        return [c.trigger.dead_letter_queue for c in self.consumers.values()]

    async def start(self, live: bool = True) -> None:
        for c in self.consumers.values():
            for shard in range(c.trigger.shards):  # "latest" starts here, not later
                await c.checkpoint(shard)
            if live:
                c.start()

    async def stop(self) -> None:
        for c in self.consumers.values():
            await c.stop()
            c.live = False

    async def drain(self, max_rounds: int = 1000) -> BatchOutcome:
        total = BatchOutcome()
        for _ in range(max_rounds):
            work = False
            for c in self.consumers.values():
                o = await c.drain_once()
                if o.succeeded or o.retried or o.dead_lettered:
                    work = True
                    total = BatchOutcome(total.succeeded + o.succeeded,
                                         total.retried + o.retried,
                                         total.dead_lettered + o.dead_lettered)
            if not work:
                return total
        raise RuntimeError(f"feeds still busy after {max_rounds} drain rounds")
