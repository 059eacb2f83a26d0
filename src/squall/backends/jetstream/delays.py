"""Send delays without a scheduler node: 2.9 has no delayed messages, so every broker
instance runs a mover on one shared durable consumer of the delayed subjects.

A message sent with `delay_s` is stored at once (durable, deduplicated like any other)
on `<prefix>.d.<queue>`, stamped with when it is due. A mover takes it, and if it is not
due yet, naks it with the remaining delay: the server keeps it pending and hands it out
again when it is due, to whichever node's mover is waiting then. A due message is
published to its queue under a Msg-Id derived from its id, and only then acked; a mover
that dies between the two leaves the message to be moved again, and the second copy is
dropped by the server as a duplicate within the window. With no broker instance running
nothing moves, but nothing is lost: the messages wait, stored, until one starts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from nats.aio.msg import Msg

from ..broker import BrokerError
from .connection import CONSUMER_NOT_FOUND, JetStreamError
from .messages import H_DUE, moved, nak_delay
from .names import DELAY_MOVER
from .receipts import Receipt

if TYPE_CHECKING:
    from .broker import NatsBroker

log = logging.getLogger("squall.broker.nats")

POLL_S = 5.0  # a long poll; it returns as soon as a message is due
BATCH = 64
MAX_PAUSE_S = 2.0
# A message a mover took but neither re-timed nor moved (its broker closed or died in
# between) goes back to the other movers after this long. It was 30 s: a broker closed
# just after its mover took a message held that message back for half a minute (a
# sibling's delivery test waited 10 s and failed, once, under load). A batch is handled
# in milliseconds, far inside it.
ACK_WAIT_S = 5.0


class DelayMover:
    def __init__(self, broker: NatsBroker) -> None:
        self.broker = broker
        self._ready = False
        self.stopped = False

    async def run(self) -> None:
        pause = 0.05
        while not self.stopped:
            try:
                await self._ensure_consumer()
                for msg in await self._take():
                    await self._handle(msg)
                pause = 0.05
            except BrokerError as exc:
                if self.stopped or self.broker.conn.closed:
                    return
                log.warning("moving delayed messages failed (%s); again in %.2f s", exc, pause)
                self._ready = False
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE_S)

    async def _ensure_consumer(self) -> None:
        if self._ready:
            return
        conn, names = self.broker.conn, self.broker.names
        try:
            await conn.api(f"CONSUMER.INFO.{names.messages}.{DELAY_MOVER}")
        except JetStreamError as exc:
            if exc.err_code != CONSUMER_NOT_FOUND:
                raise
            await conn.api(f"CONSUMER.DURABLE.CREATE.{names.messages}.{DELAY_MOVER}", {
                "stream_name": names.messages, "config": {
                    "durable_name": DELAY_MOVER, "filter_subject": f"{names.prefix}.d.>",
                    "ack_policy": "explicit", "ack_wait": int(ACK_WAIT_S * 1e9),
                    "max_deliver": -1,
                    "max_ack_pending": -1, "deliver_policy": "all",
                }})
        self._ready = True

    async def _take(self) -> list[Msg]:
        conn, stream = self.broker.conn, self.broker.names.messages
        got = await conn.pull(stream, DELAY_MOVER, BATCH)
        if not got:  # wait for one (a new delayed message, or one falling due), then the rest
            got = await conn.pull(stream, DELAY_MOVER, 1, wait_s=POLL_S)
            if got:
                got += await conn.pull(stream, DELAY_MOVER, BATCH - 1)
        return got

    async def _handle(self, msg: Msg) -> None:
        conn, headers = self.broker.conn, msg.headers or {}
        try:
            left = float(headers.get(H_DUE, 0.0)) - time.time()
        except ValueError:
            left = 0.0
        if left > 0.001:
            await conn.settle(msg.reply, nak_delay(left))
            return
        receipt = Receipt.of(msg.reply or "", 0.0)
        if receipt is None:
            return
        queue_token = msg.subject.rsplit(".", 1)[-1]
        seq = receipt.stream_seq
        copy = moved(headers, self.broker.message_id(headers, seq),
                     self.broker.move_id("mv", seq))
        await conn.publish(f"{self.broker.names.prefix}.q.{queue_token}", msg.data, copy)
        await conn.settle(msg.reply, b"+ACK", retry=True)  # lost: moved again, deduplicated


async def stop(mover: DelayMover, task: asyncio.Future[None]) -> int:
    """Stop the mover's task; how many cancellations it took. More than one when a
    cancellation was swallowed on the way (nats-py drops CancelledError in places, and
    3.11's wait_for can lose one that races a completed get): never wait on a single one."""
    mover.stopped = True
    tries = 0
    while not task.done():
        tries += 1
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)
    if not task.cancelled() and task.exception() is not None:
        log.debug("the delay mover ended with %r", task.exception())
    return tries
