"""Messaging for one running app: its broker, its queue consumers, and the `send`
service that `app.send` reaches from inside functions.

`drain()` is the deterministic path for tests: it processes every message that is
visible now (and those that become visible as a result), without waiting on timers.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any, Callable

from ..backends.broker import MessageTooLarge, OutMessage, QueueBroker
from ..config import DEFAULT_MAX_MESSAGE_BYTES, FunctionConfig
from .events import EventConsumer
from .queue import BatchOutcome, Invoke, QueueConsumer


class UnknownQueue(LookupError):
    pass


class UnknownFunctionForAsync(LookupError):
    pass


class Messaging:
    def __init__(self, broker: QueueBroker, invoke: Invoke, *,
                 clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random) -> None:
        self.broker = broker
        self.invoke = invoke
        self.clock = clock
        self.rand = rand
        self.consumers: dict[str, QueueConsumer] = {}
        self.configs: dict[str, FunctionConfig] = {}
        self.running = False

    def configure(self, configs: dict[str, FunctionConfig]) -> None:
        """(Re)build consumers from the app's function configs (not started)."""
        self.configs = dict(configs)
        self.consumers = {}
        for cfg in configs.values():
            if cfg.queue is not None:
                self.consumers[cfg.queue.queue] = QueueConsumer(
                    self.broker, self.invoke, cfg, clock=self.clock, rand=self.rand)
            elif cfg.kind == "function":
                trigger = cfg.async_trigger()
                self.consumers[trigger.queue] = EventConsumer(
                    self.broker, self.invoke, cfg, trigger, self.deliver, clock=self.clock,
                    rand=self.rand)

    def known_queues(self) -> dict[str, int]:
        """User queue name -> message size limit, for every queue and dead-letter queue."""
        out: dict[str, int] = {}
        for q, c in self.consumers.items():
            if q.startswith("_"):
                continue
            out[q] = c.trigger.max_message_bytes
            out[c.trigger.dead_letter_queue] = c.trigger.max_message_bytes
        return out

    async def invoke_async(self, function: str, body: str) -> str:
        """Queue an asynchronous invocation; returns its request id once durable."""
        cfg = self.configs.get(function)
        if cfg is None or cfg.kind != "function":
            known = ", ".join(sorted(n for n, c in self.configs.items() if c.kind == "function"))
            raise UnknownFunctionForAsync(
                f"no function {function!r} to invoke asynchronously; candidates: "
                f"{known or 'none'}")
        data = body.encode()
        if len(data) > DEFAULT_MAX_MESSAGE_BYTES:
            raise MessageTooLarge(f"_async.{function}", len(data), DEFAULT_MAX_MESSAGE_BYTES)
        (mid,) = await self.broker.send(f"_async.{function}", [OutMessage(body=data)])
        return mid

    async def deliver(self, destination: str, record: dict[str, Any]) -> None:
        """Send a destination record: `queue:NAME`, `function:NAME` (async), ..."""
        kind, _, target = destination.partition(":")
        body = json.dumps(record)
        if kind == "queue":
            await self.send(target, [{"body": body}])
        elif kind == "function":
            await self.invoke_async(target, body)
        else:
            raise UnknownQueue(f"destination {destination!r} is not available yet")

    async def start(self) -> None:
        self.running = True
        for c in self.consumers.values():
            c.start()

    async def stop(self) -> None:
        self.running = False
        await asyncio.gather(*(c.stop() for c in self.consumers.values()))

    async def reconfigure(self, configs: dict[str, FunctionConfig]) -> None:
        was_running = self.running
        await self.stop()
        self.configure(configs)
        if was_running:
            await self.start()

    async def send(self, queue: str, messages: list[dict[str, Any]]) -> list[str]:
        limits = self.known_queues()
        if queue not in limits:
            known = ", ".join(sorted(q for q in self.consumers)) or "none"
            raise UnknownQueue(f"no queue named {queue!r} in this app; its queues are: {known}")
        limit = limits.get(queue, DEFAULT_MAX_MESSAGE_BYTES)
        out = []
        for m in messages:
            body = m["body"].encode() if isinstance(m["body"], str) else m["body"]
            if len(body) > limit:
                raise MessageTooLarge(queue, len(body), limit)
            out.append(OutMessage(body=body, attributes=dict(m.get("attributes") or {}),
                                  dedup_key=m.get("dedup_key"), delay_s=m.get("delay_s") or 0.0,
                                  trace=m.get("trace")))
        return await self.broker.send(queue, out)

    async def drain(self, max_rounds: int = 1000) -> BatchOutcome:
        """Process everything visible now, round after round, until the queues are quiet."""
        total = BatchOutcome()
        for _ in range(max_rounds):
            work = False
            for c in self.consumers.values():
                batch = await c.next_batch(0, window=False)
                if not batch:
                    continue
                work = True
                o = await c.process(batch)
                total = BatchOutcome(total.succeeded + o.succeeded, total.retried + o.retried,
                                     total.dead_lettered + o.dead_lettered)
            if not work:
                return total
        raise RuntimeError(f"queues still busy after {max_rounds} drain rounds")
