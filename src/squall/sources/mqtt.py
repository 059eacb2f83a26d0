"""The MQTT event source: subscribe for every `@app.on_mqtt` function, make each message
durable, then acknowledge it.

    MQTT broker --PUBLISH(QoS 1)--> MqttSource
        1. route by subscription identifier (one per distinct topic filter)
        2. one durable write on Squall's broker: the event on `_async.<fn>` of every
           function subscribed with that filter
        3. PUBACK (manual acknowledgement, squall.backends.mqtt)
        -> the functions run from their async queues (retries, DLQ)

If Squall stops between 2 and 3, the MQTT broker delivers the message again on
reconnect (persistent session): at least once, never lost once acknowledged. QoS 0
messages are best effort by definition. On any connection error the source reconnects
with exponential backoff and full jitter (0.5 s doubling to 30 s), resetting after a
successful connection. In distributed mode every node subscribes to
`$share/squall/<filter>`, so the MQTT broker hands each message to one node.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import time
from datetime import datetime, timezone
from typing import Any, Callable

from ..backends import mqtt as client
from ..backends.broker import OutMessage
from ..config import DEFAULT_MAX_MESSAGE_BYTES, RetryPolicy
from ..events.envelope import new_traceparent
from ..observe import logs

SHARE_GROUP = "squall"
BACKOFF = RetryPolicy(base_s=0.5, factor=2.0, max_s=30.0)


def mqtt_event(msg: Any, topic_filter: str, received_at: float) -> dict[str, Any]:
    try:
        payload, encoding = msg.payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(msg.payload).decode(), "base64"
    return {"topic": msg.topic, "payload": payload, "payload_encoding": encoding,
            "qos": msg.qos, "retain": msg.retain, "filter": topic_filter,
            "received_at": datetime.fromtimestamp(received_at, timezone.utc)
            .strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"}


class MqttSource:
    def __init__(self, broker: Any, configs: dict[str, Any], *, url: str, client_id: str,
                 shared: bool = False, clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random, connect: Any = None) -> None:
        self.broker = broker
        self.url = url
        self.client_id = client_id
        self.shared = shared
        self.clock = clock
        self.rand = rand
        self._connect = connect or client.connect
        self.filters: list[tuple[str, int, tuple[str, ...]]] = []  # (filter, qos, functions)
        self.configure(configs)
        self.task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.received = 0  # messages made durable and acknowledged (tests await it)
        self._progress = asyncio.Condition()

    def configure(self, configs: dict[str, Any]) -> None:
        by_filter: dict[str, tuple[int, list[str]]] = {}
        for cfg in configs.values():
            if cfg.mqtt is None:
                continue
            qos, names = by_filter.get(cfg.mqtt.topic, (0, []))
            by_filter[cfg.mqtt.topic] = (max(qos, cfg.mqtt.qos), names + [cfg.name])
        self.filters = [(f, q, tuple(n)) for f, (q, n) in sorted(by_filter.items())]

    def start(self) -> None:
        if self.filters and self.task is None:
            self.task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass
            self.task = None
        self.connected.clear()

    async def wait_received(self, count: int, timeout: float = 10.0) -> None:
        """Tests: until `count` messages in all have been made durable and acknowledged."""
        async def reached() -> None:
            async with self._progress:
                await self._progress.wait_for(lambda: self.received >= count)

        await asyncio.wait_for(reached(), timeout)

    async def _run(self) -> None:
        attempt = 0
        where = client.redact(self.url)
        while True:
            try:
                async with self._connect(self.url, client_id=self.client_id) as conn:
                    for sub_id, (topic_filter, qos, _) in enumerate(self.filters, start=1):
                        wire = f"$share/{SHARE_GROUP}/{topic_filter}" if self.shared \
                            else topic_filter
                        await conn.subscribe(wire, qos, sub_id)
                    attempt = 0
                    self.connected.set()
                    logs.event("mqtt subscribed", url=where, client_id=self.client_id,
                               filters=[f for f, _, _ in self.filters], shared=self.shared)
                    async for msg in conn.messages():
                        await self._handle(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the MQTT broker or Squall's broker: retry
                self.connected.clear()
                attempt += 1
                delay = BACKOFF.delay(attempt, self.rand())
                logs.event("mqtt connection lost; reconnecting", logging.WARNING, url=where,
                           error=f"{type(exc).__name__}: {exc}", attempt=attempt,
                           retry_in_s=round(delay, 3))
                await asyncio.sleep(delay)

    async def _handle(self, msg: Any) -> None:
        """Durable first, then the PUBACK. A failure here drops the connection unacked:
        the MQTT broker redelivers after the reconnect."""
        if msg.subscription_ids:
            routes = [self.filters[i - 1] for i in msg.subscription_ids
                      if 0 < i <= len(self.filters)]
        else:  # a broker without subscription identifiers: match locally
            from ..triggers import topic_matches

            routes = [r for r in self.filters if topic_matches(r[0], msg.topic)]
        now = self.clock()
        batches: dict[str, list[OutMessage]] = {}
        for topic_filter, _, functions in routes:
            body = json.dumps(mqtt_event(msg, topic_filter, now), separators=(",", ":"))
            if len(body) > DEFAULT_MAX_MESSAGE_BYTES:  # never retried into a loop: say so
                logs.event("mqtt message dropped: over the event size limit", logging.ERROR,
                           topic=msg.topic, functions=list(functions), bytes=len(body),
                           limit_bytes=DEFAULT_MAX_MESSAGE_BYTES)
                continue
            for fn in functions:
                batches.setdefault(f"_async.{fn}", []).append(OutMessage(
                    body=body.encode(), attributes={"mqtt_topic": msg.topic},
                    trace=new_traceparent()))
        if batches:
            await self.broker.send_many(batches)
        msg.ack()
        async with self._progress:
            self.received += 1
            self._progress.notify_all()


__all__ = ["MqttSource", "SHARE_GROUP", "mqtt_event"]
