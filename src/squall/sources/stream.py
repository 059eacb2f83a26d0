"""The stream consumer: one ordered reader per shard, with its own checkpoint.

A shard's records are delivered in order, in batches. A batch that fails is retried in
order, with backoff; with `bisect_on_error` it is split in halves first, so that the one
bad record is found while the good ones around it are delivered. A record that still
fails after `max_retries` goes to the dead-letter queue (with its stream, shard, sequence,
partition key and error) and the shard moves on past it. A handler may report partial
failure (native `BatchResult(failed=[sequence])`, or Kinesis' `batchItemFailures`): the
records before the first failed one are checkpointed and the rest is retried.

With several nodes on one broker, each shard is read by the node holding its lease
(`stream:<stream>:<consumer>:<shard>`), so records of one key stay in order across the
cluster; a node that dies stops renewing and another node takes its shards over, going
on from the last checkpoint (at least once: an unfinished batch is delivered again).

Records keep the traceparent of the `put_records` hop that appended them: a batch runs
under its first record's (as a queue batch does), so the consumer's invocation is in the
producer's trace, and dead letters keep it too. An invocation stopped as a recursive loop
(squall.events.lineage) is not retried: the record whose chain it was goes to the
dead-letter queue at once (attribute reason=recursive_loop; reason=max_retries for the
others) and the rest of the batch goes on under its own traces.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Callable

from ..backends.broker import BrokerError, OutMessage, QueueBroker, StreamEntry
from ..config import FunctionConfig
from ..events.lineage import RECURSIVE_LOOP
from ..observe import logs
from ..runtime.aio import cancel
from .leases import LeaseKeeper
from .queue import BatchOutcome, Invoke

LONG_POLL_S = 20.0
STOPPED = -1  # `_invoke`: the batch's chain (its first record's trace) is a recursive loop


def stream_payload(stream: str, entries: list[StreamEntry]) -> str:
    return json.dumps({"stream": stream, "records": [
        {"sequence": f"{e.shard}:{e.seq}", "shard": e.shard, "partition_key": e.partition_key,
         "data": e.data.decode("utf-8", "replace"), "arrival": e.arrival} for e in entries]})


class StreamConsumer:
    def __init__(self, broker: QueueBroker, invoke: Invoke, cfg: FunctionConfig, *,
                 clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random,
                 leases: LeaseKeeper | None = None) -> None:
        assert cfg.stream is not None
        self.leases = leases
        self.broker = broker
        self.invoke = invoke
        self.cfg = cfg
        self.trigger = cfg.stream
        self.clock = clock
        self.rand = rand
        self.live = False  # live consumers wait out backoff; drain() retries at once
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def stream(self) -> str:
        return self.trigger.stream

    async def checkpoint(self, shard: int) -> int:
        cp = await self.broker.get_checkpoint(self.stream, self.cfg.name, shard)
        if cp is None:
            cp = 0 if self.trigger.starting_position == "trim_horizon" else \
                await self.broker.latest_seq(self.stream, shard)
            await self.broker.set_checkpoint(self.stream, self.cfg.name, shard, cp)
        return cp

    # -- running ---------------------------------------------------------------------

    def start(self) -> None:
        self.live = True
        self._tasks = [asyncio.ensure_future(self._run(shard))
                       for shard in range(self.trigger.shards)]

    async def stop(self) -> None:
        await cancel(*self._tasks)
        self._tasks = []

    def lease_name(self, shard: int) -> str:
        return f"stream:{self.stream}:{self.cfg.name}:{shard}"

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
                cp = await self.checkpoint(shard)
                entries = await self._next(shard, cp, wait_s)
                if entries and (self.leases is None or self.leases.holds(lease)):
                    await self.process(shard, entries)
            except asyncio.CancelledError:
                raise
            except BrokerError as exc:
                logs.event("stream read failed", logging.ERROR, stream=self.stream,
                           shard=shard, error=str(exc))
                await asyncio.sleep(1.0)

    async def _next(self, shard: int, cp: int, wait_s: float) -> list[StreamEntry]:
        t = self.trigger
        got = await self.broker.read(self.stream, shard, cp, t.batch_size, wait_s=wait_s)
        if self.live and got and t.batch_window_s > 0 and len(got) < t.batch_size:
            deadline = time.monotonic() + t.batch_window_s
            while len(got) < t.batch_size and (remaining := deadline - time.monotonic()) > 0:
                got += await self.broker.read(self.stream, shard, got[-1].seq,
                                              t.batch_size - len(got), wait_s=remaining)
        return got

    async def drain_once(self) -> BatchOutcome:
        """One pass over every shard without waiting (for deterministic tests)."""
        total = BatchOutcome()
        for shard in range(self.trigger.shards):
            entries = await self._next(shard, await self.checkpoint(shard), 0)
            if entries:
                o = await self.process(shard, entries)
                total = BatchOutcome(total.succeeded + o.succeeded, total.retried + o.retried,
                                     total.dead_lettered + o.dead_lettered)
        return total

    # -- one batch, in order ---------------------------------------------------------

    async def process(self, shard: int, entries: list[StreamEntry]) -> BatchOutcome:
        t = self.trigger
        ok = retried = dead = 0
        pending: list[list[StreamEntry]] = [entries]
        attempts = 0
        while pending:
            batch = pending[0]
            failed_at, error = await self._invoke(batch)
            if failed_at == STOPPED:  # retrying a stopped loop would only loop again
                await self._dead_letter(batch[:1], error, reason="recursive_loop")
                await self._advance(shard, batch[0].seq)
                dead += 1
                if len(batch) > 1:
                    pending[0] = batch[1:]
                else:
                    pending.pop(0)
                attempts = 0
                continue
            if failed_at is None:
                await self._advance(shard, batch[-1].seq)
                ok += len(batch)
                pending.pop(0)
                attempts = 0
                continue
            if failed_at > 0:  # partial failure: keep what succeeded before it
                await self._advance(shard, batch[failed_at - 1].seq)
                ok += failed_at
                batch = pending[0] = batch[failed_at:]
            attempts += 1
            retried += 1
            if t.bisect_on_error and len(batch) > 1:
                half = len(batch) // 2
                pending[0:1] = [batch[:half], batch[half:]]
                continue
            if attempts > t.max_retries:
                await self._dead_letter(batch, error)
                await self._advance(shard, batch[-1].seq)
                dead += len(batch)
                pending.pop(0)
                attempts = 0
                continue
            if self.live:
                await asyncio.sleep(t.retry.delay(attempts, self.rand()))
        return BatchOutcome(ok, retried, dead)

    async def _invoke(self, batch: list[StreamEntry]) -> tuple[int | None, str]:
        """Index of the first failed record (None: all succeeded; STOPPED: a recursive
        loop) and the error."""
        try:
            # under the producer's hop span (the batch's first record's, as queues do)
            result = await self.invoke(self.cfg.name, "event", stream_payload(self.stream, batch),
                                       trace=batch[0].trace)
        except Exception as exc:
            return 0, f"{type(exc).__name__}: {exc}"
        if not result.ok:
            return (STOPPED if result.error_type == RECURSIVE_LOOP else 0,
                    f"{result.error_type}: {result.error_message}")
        failed = set(json.loads(result.value)["failed"])
        for i, e in enumerate(batch):
            if f"{e.shard}:{e.seq}" in failed:
                return i, "reported failed by the handler (partial batch failure)"
        return None, ""

    async def _advance(self, shard: int, seq: int) -> None:
        await self.broker.set_checkpoint(self.stream, self.cfg.name, shard, seq)

    async def _dead_letter(self, batch: list[StreamEntry], error: str, *,
                           reason: str = "max_retries") -> None:
        msgs = [OutMessage(body=e.data, attributes={
            "stream": e.stream, "shard": str(e.shard), "sequence": f"{e.shard}:{e.seq}",
            "partition_key": e.partition_key, "consumer": self.cfg.name, "error": error,
            "reason": reason}, trace=e.trace) for e in batch]
        await self.broker.send(self.trigger.dead_letter_queue, msgs)
        logs.event("stream records dead-lettered", logging.WARNING, stream=self.stream,
                   consumer=self.cfg.name, count=len(batch), error=error, reason=reason,
                   first=f"{batch[0].shard}:{batch[0].seq}")
