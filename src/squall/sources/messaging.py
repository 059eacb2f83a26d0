"""Messaging for one running app: its broker, its queue consumers, and the `send`
service that `app.send` reaches from inside functions.

`drain()` is the deterministic path for tests: it processes every message that is
visible now (and those that become visible as a result), without waiting on timers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from datetime import timezone
from typing import Any, Callable

from ..backends.broker import ArchivedEvent, MessageTooLarge, OutMessage, QueueBroker
from ..config import DEFAULT_MAX_MESSAGE_BYTES, FunctionConfig, RuleConfig, Subscription
from ..events import bus
from ..events.envelope import new_traceparent
from ..events import topic as topic_events
from ..events.patterns import compile_pattern
from ..observe import logs
from .events import EventConsumer, handoff, handoff_record
from .leases import DEFAULT_TTL_S, LeaseKeeper, new_node_id
from .scheduler import Scheduler
from .stream import StreamConsumer
from .queue import BatchOutcome, Invoke, QueueConsumer


class UnknownQueue(LookupError):
    pass


class UnknownFunctionForAsync(LookupError):
    pass


class Messaging:
    def __init__(self, broker: QueueBroker, invoke: Invoke, *,
                 clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random,
                 node_id: str | None = None, lease_ttl_s: float = DEFAULT_TTL_S) -> None:
        self.broker = broker
        self.node_id = node_id or new_node_id()
        self.leases = LeaseKeeper(broker, self.node_id, ttl_s=lease_ttl_s)
        self.invoke = invoke
        self.clock = clock
        self.rand = rand
        self.consumers: dict[str, QueueConsumer] = {}
        self.streams: dict[str, StreamConsumer] = {}
        self.configs: dict[str, FunctionConfig] = {}
        self.rules: list[tuple[RuleConfig, Any]] = []
        self.subscriptions: list[tuple[Subscription, Any]] = []
        self.topics: set[str] = set()
        self.scheduler = Scheduler(broker, {}, clock=clock)
        self.running = False
        # the app's orchestration once attached (squall.workflows.wiring.attach_messaging):
        # async invocations of workflows and state machines hand over to executions
        self.durable: Any = None

    def configure(self, configs: dict[str, FunctionConfig],
                  rules: list[RuleConfig] | None = None,
                  subscriptions: list[Subscription] | None = None) -> None:
        """(Re)build consumers and rules from the app's declarations (not started)."""
        self.configs = dict(configs)
        self.subscriptions = [
            (s, compile_pattern(s.filter_policy) if s.filter_policy is not None else None)
            for s in subscriptions or []]
        self.topics = {s.topic for s in subscriptions or []}
        self.rules = [(r, compile_pattern(r.pattern)) for r in rules or []]
        self.scheduler = Scheduler(self.broker, self.configs, clock=self.clock,
                                   leases=self.leases)
        self.consumers = {}
        self.streams = {}
        for cfg in configs.values():
            if cfg.queue is not None:
                self.consumers[cfg.queue.queue] = QueueConsumer(
                    self.broker, self.invoke, cfg, clock=self.clock, rand=self.rand)
            elif cfg.kind == "stream":
                self.streams[cfg.name] = StreamConsumer(self.broker, self.invoke, cfg,
                                                        clock=self.clock, rand=self.rand,
                                                        leases=self.leases)
            elif cfg.kind == "function":
                trigger = cfg.async_trigger()
                self.consumers[trigger.queue] = EventConsumer(
                    self.broker, self.invoke, cfg, trigger, self.deliver,
                    durable=lambda: self.durable, clock=self.clock, rand=self.rand)

    def known_queues(self) -> dict[str, int]:
        """User queue name -> message size limit, for every queue and dead-letter queue."""
        out: dict[str, int] = {}
        for q, c in self.consumers.items():
            if q.startswith("_"):
                continue
            out[q] = c.trigger.max_message_bytes
            out[c.trigger.dead_letter_queue] = c.trigger.max_message_bytes
        return out

    async def invoke_async(self, function: str, body: str, trace: str | None = None, *,
                           dedup_key: str | None = None) -> str:
        """Queue an asynchronous invocation; returns its request id once durable. One of
        a workflow starts its execution at once (the id is the execution's). A
        `dedup_key` seen in the dedup window makes it a no-op (a destination resent)."""
        cfg = self.configs.get(function)
        if cfg is None or cfg.kind != "function":
            known = ", ".join(sorted(n for n, c in self.configs.items() if c.kind == "function"))
            raise UnknownFunctionForAsync(
                f"no function {function!r} to invoke asynchronously; candidates: "
                f"{known or 'none'}")
        data = body.encode()
        if len(data) > DEFAULT_MAX_MESSAGE_BYTES:
            raise MessageTooLarge(f"_async.{function}", len(data), DEFAULT_MAX_MESSAGE_BYTES)
        if self.durable is not None:  # the same key, the same execution: started once
            eid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"squall:{function}:{dedup_key}")
                      if dedup_key else uuid.uuid4())
            started = await self.durable.start_async(function, body, eid, trace,
                                                     handoff(cfg, eid, data, 1))
            if started is not None:
                return started
        (mid,) = await self.broker.send(f"_async.{function}", [OutMessage(
            body=data, trace=trace or new_traceparent(), dedup_key=dedup_key)])
        return mid

    # -- streams ---------------------------------------------------------------------

    async def put_records(self, stream: str, items: list[list[str]],
                          trace: str | None = None) -> list[str]:
        """Append (partition_key, JSON text) records; returns "shard:seq" for each. `trace`:
        the producer's hop span (app.put_records in a function), else a new trace."""
        shards = {c.trigger.shards for c in self.streams.values() if c.stream == stream}
        if not shards:
            known = ", ".join(sorted({c.stream for c in self.streams.values()})) or "none"
            raise UnknownQueue(f"no stream named {stream!r} in this app; its streams are: "
                               f"{known}")
        placed = await self.broker.append(stream, [(k, d.encode()) for k, d in items],
                                          shards=shards.pop(),
                                          trace=trace or new_traceparent())
        return [f"{shard}:{seq}" for shard, seq in placed]

    # -- the event bus -------------------------------------------------------------

    def _route(self, event: dict[str, Any], only_rule: str | None,
               batches: dict[str, list[OutMessage]], trace: str | None = None) -> int:
        """Add the deliveries of `event` to every matching rule's targets; count matches."""
        matched = 0
        for rule, pattern in self.rules:
            if only_rule is not None and rule.name != only_rule:
                continue
            if not pattern.matches(event):
                continue
            matched += 1
            payload = bus.transform(event, rule.name, input_path=rule.input_path,
                                    transformer=rule.input_transformer)
            body = json.dumps(payload).encode()
            for target in rule.targets:
                kind, _, name = target.partition(":")
                queue = f"_async.{name}" if kind == "function" else name
                batches.setdefault(queue, []).append(
                    OutMessage(body=body, attributes={"rule": rule.name,
                                                      "event_id": event["id"]},
                               trace=trace))
        return matched

    async def publish(self, entry_json: str) -> str:
        """PutEvents for one entry: archive it and deliver it to every matching rule's
        targets in one durable write. Returns the event id. An entry may carry its own
        `id` (and `time`); an id archived before is not delivered again."""
        entry = json.loads(entry_json)
        event = bus.make_event(entry["source"], entry["detail-type"], entry.get("detail"),
                               resources=entry.get("resources"), event_id=entry.get("id"))
        if entry.get("time"):
            event["time"] = entry["time"]
        for k, v in (entry.get("extensions") or {}).items():
            event.setdefault(k, v)
        body = json.dumps(event)
        if len(body.encode()) > DEFAULT_MAX_MESSAGE_BYTES:
            raise MessageTooLarge("bus", len(body.encode()), DEFAULT_MAX_MESSAGE_BYTES)
        batches: dict[str, list[OutMessage]] = {}
        self._route(event, None, batches, entry.get("traceparent") or new_traceparent())
        archived = ArchivedEvent(entry.get("archive_key") or event["id"], self.clock(),
                                 event["source"], event["detail-type"], body)
        await self.broker.publish([archived], batches)
        return event["id"]

    async def ingest_cloudevents(self, events: list[Any]) -> list[str]:
        """CloudEvents onto the bus: source -> source, type -> detail-type, data -> detail;
        the CloudEvent's id is kept and (source, id) deduplicates."""
        ids = []
        for ce in events:
            data = ce.data
            if isinstance(data, bytes):
                import base64

                data = {"data_base64": base64.b64encode(data).decode()}
            ext = {k: v for k, v in ce.extensions.items()}
            entry = {"source": ce.source, "detail-type": ce.type, "detail": data,
                     "id": ce.id, "archive_key": f"ce:{ce.source}#{ce.id}",
                     "extensions": {"subject": ce.subject, **ext} if ce.subject else ext}
            if ce.time is not None:
                entry["time"] = ce.time.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            ids.append(await self.publish(json.dumps(entry, default=str)))
        return ids

    async def replay(self, start: float, end: float, *, rule: str | None = None,
                     name: str = "replay", limit: int = 100_000) -> int:
        """Deliver archived events from [start, end) again, in order, to the matching rules'
        targets (only `rule`'s if given). Replayed events carry `replay-name`."""
        if rule is not None and rule not in {r.name for r, _ in self.rules}:
            known = ", ".join(r.name for r, _ in self.rules) or "none"
            raise UnknownQueue(f"no rule named {rule!r}; the rules are: {known}")
        done, after = 0, None
        while done < limit:
            page = await self.broker.archived(start, end, limit=min(500, limit - done),
                                              after=after)
            if not page:
                break
            batches: dict[str, list[OutMessage]] = {}
            for item in page:
                event = json.loads(item.body)
                event["replay-name"] = name
                self._route(event, rule, batches)
            if batches:
                await self.broker.send_many(batches)
            done += len(page)
            after = page[-1].event_id
        return done

    # -- topics ----------------------------------------------------------------------

    async def notify(self, message_json: str) -> str:
        """SNS Publish: deliver to every subscription of the topic whose filter policy
        matches, in one durable write. Returns the message id."""
        req = json.loads(message_json)
        topic, message = req["topic"], req["message"]
        trace = req.get("traceparent") or new_traceparent()
        subject, attributes = req.get("subject"), req.get("attributes") or {}
        subs = [(s, f) for s, f in self.subscriptions if s.topic == topic]
        if not subs and topic not in self.topics:
            known = ", ".join(sorted(self.topics)) or "none"
            raise UnknownQueue(f"no topic named {topic!r} in this app; its topics are: {known}")
        message_id = str(uuid.uuid4())
        note = topic_events.notification(topic, message_id, message, subject, attributes,
                                         when=self.clock())
        batches: dict[str, list[OutMessage]] = {}
        for sub, policy in subs:
            if policy is not None:
                probe = topic_events.filter_input(message, attributes, sub.filter_scope)
                if probe is None or not policy.matches(probe):
                    continue
            kind, _, name = sub.target.partition(":")
            if kind == "function":
                cfg = self.configs.get(name)
                if cfg is not None and cfg.format == "aws-sns":
                    event: Any = topic_events.lambda_event(note, name)
                else:
                    event = topic_events.native_event(topic, message_id, message, subject,
                                                      attributes, note["Timestamp"])
                batches.setdefault(f"_async.{name}", []).append(
                    OutMessage(body=json.dumps(event).encode(), attributes={"topic": topic},
                               trace=trace))
            else:
                body = note["Message"] if sub.raw else json.dumps(note)
                batches.setdefault(name, []).append(
                    OutMessage(body=body.encode(), attributes={"topic": topic}, trace=trace))
        if batches:
            await self.broker.send_many(batches)
        return message_id

    async def idempotency(self, op: str, args: list[Any]) -> Any:
        """The idempotency records behind @app.idempotent (begin, complete, release)."""
        if op == "begin":
            return list(await self.broker.idem_begin(*args))
        if op == "complete":
            return await self.broker.idem_complete(*args)
        if op == "release":
            return await self.broker.idem_release(*args)
        raise ValueError(f"unknown idempotency operation {op!r}")

    async def deliver(self, destination: str, record: dict[str, Any]) -> None:
        """Send a destination record: `queue:NAME`, `function:NAME` (async), ... Queue and
        function destinations deduplicate by request id and outcome: a record sent again
        within the dedup window (a redelivery, a restart mid-delivery) is dropped."""
        kind, _, target = destination.partition(":")
        body = json.dumps(record)
        context = record.get("requestContext", {})
        key = (f"destination:{context['requestId']}:{context.get('condition') == 'Success'}"
               if context.get("requestId") else None)
        if kind == "queue":
            await self.send(target, [{"body": body, "dedup_key": key}])
        elif kind == "function":
            await self.invoke_async(target, body, dedup_key=key)
        elif kind == "topic":
            await self.notify(json.dumps({"topic": target, "message": record}))
        elif kind == "bus":
            condition = record.get("requestContext", {}).get("condition")
            outcome = "Success" if condition == "Success" else "Failure"
            await self.publish(json.dumps({
                "source": "squall.lambda",
                "detail-type": f"Lambda Function Invocation Result - {outcome}",
                "detail": record,  # (an event id archived before is not delivered again)
                **({"id": str(uuid.uuid5(uuid.NAMESPACE_URL, key))} if key else {})}))
        else:
            raise UnknownQueue(f"destination {destination!r} is not available yet")

    async def deliver_handoff(self, data: dict[str, Any], outcome: dict[str, Any]) -> None:
        """A handed-over execution ended (squall.workflows.handoff): its outcome to the
        destination its async invocation had."""
        destination, record = handoff_record(data, outcome)
        if destination:
            await self.deliver(destination, record)
        if "errorType" in outcome:
            logs.event("async invocation failed", logging.WARNING, function=data["function"],
                       request_id=data["request_id"], condition="RetriesExhausted",
                       attempts=data.get("invoke_count"), destination=destination,
                       error=f"{outcome['errorType']}: {outcome.get('errorMessage')}")

    async def start(self) -> None:
        self.running = True
        for c in self.consumers.values():
            c.start()
        for sc in self.streams.values():
            sc.start()
        self.scheduler.start()

    async def stop(self) -> None:
        self.running = False
        await self.scheduler.stop()
        await asyncio.gather(*(c.stop() for c in self.consumers.values()),
                             *(sc.stop() for sc in self.streams.values()))
        await self.leases.release_all()

    async def reconfigure(self, configs: dict[str, FunctionConfig],
                          rules: list[RuleConfig] | None = None,
                          subscriptions: list[Subscription] | None = None) -> None:
        was_running = self.running
        await self.stop()
        self.configure(configs, rules, subscriptions)
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
                                  trace=m.get("trace") or new_traceparent()))
        return await self.broker.send(queue, out)

    async def drain(self, max_rounds: int = 1000) -> BatchOutcome:
        """Process everything visible now, round after round, until the queues are quiet."""
        total = BatchOutcome()
        await self.scheduler.fire_due()
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
            for sc in self.streams.values():
                o = await sc.drain_once()
                if o.succeeded or o.retried or o.dead_lettered:
                    work = True
                    total = BatchOutcome(total.succeeded + o.succeeded,
                                         total.retried + o.retried,
                                         total.dead_lettered + o.dead_lettered)
            if not work:
                return total
        raise RuntimeError(f"queues still busy after {max_rounds} drain rounds")
