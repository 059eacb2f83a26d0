"""Receipts that identify one delivery, on a server that does not check.

nats-server 2.9 applies an ack, nak or in-progress signal to whatever delivery of that
stream sequence is pending, whichever delivery's reply subject it came on (measured:
an ack on the first delivery's subject acked the redelivery; a nak-with-delay on it
re-timed the redelivery; nats-server #4786). So a receipt carries its delivery's reply
subject and a deadline, and the `DeliveryLedger` of the broker instance that received
the delivery keeps its state:

* live: handed out, not settled, its (possibly extended) visibility deadline not passed;
* settled: acked, nacked or dead-lettered once; every later use is rejected;
* expired: past the deadline, when the server may already have redelivered it to
  someone else; rejected.

A receipt this instance did not hand out (another process's, or one from before a
restart) is judged by the deadline it carries: rejected once that has passed. Before
it, the server's own rule applies. That is the one gap left: a receipt settled on node A
and replayed on node B before its deadline is accepted (Squall settles a delivery on the
node that received it). The deadline is taken conservatively, from before the request
that set the server's timer, less a small margin, so a receipt turns stale on the client
before the server can redeliver the message.

Pure state (no I/O): the broker asks, then talks to the server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

RECEIPT_VERSION = "r1"


def stale_margin(visibility_s: float) -> float:
    """How long before the server's deadline a receipt is given up: room for the ack's
    trip to the server (a tenth of the timeout, at most 0.1 s)."""
    return min(0.1, visibility_s * 0.1)


@dataclass(frozen=True, slots=True)
class Receipt:
    """One delivery: the server's ack subject for it and when its visibility ends."""

    reply: str  # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>...
    deadline: float  # wall-clock seconds
    stream: str
    consumer: str
    delivered: int  # the server's delivery count
    stream_seq: int

    @classmethod
    def of(cls, reply: str, deadline: float) -> Receipt | None:
        """The receipt for a delivery on ack subject `reply`; None if it is not one."""
        t = reply.split(".")
        if len(t) < 9 or t[0] != "$JS" or t[1] != "ACK":
            return None
        # v1 subjects have 9 tokens; servers from 2.10 may add a domain and an account
        # hash after "ACK" (12 tokens or more)
        head = 2 if len(t) == 9 else 4
        stream, consumer, delivered, sseq, cseq = t[head:head + 5]
        if not (delivered.isdigit() and sseq.isdigit() and cseq.isdigit()):
            return None
        return cls(reply, deadline, stream, consumer, int(delivered), int(sseq))

    def encode(self) -> str:
        return f"{RECEIPT_VERSION}:{self.deadline:.3f}:{self.reply}"

    @classmethod
    def parse(cls, text: str) -> Receipt | None:
        """The receipt `text` encodes, or None for anything else."""
        version, _, rest = text.partition(":")
        deadline, _, reply = rest.partition(":")
        if version != RECEIPT_VERSION or not reply:
            return None
        try:
            when = float(deadline)
        except ValueError:
            return None
        return cls.of(reply, when)


@dataclass(slots=True)
class _Entry:
    deadline: float  # monotonic
    settled: bool = False
    has_error: bool = False  # a last-error record exists for the message


class DeliveryLedger:
    """The deliveries this broker instance handed out, until their deadlines pass."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._mono = monotonic
        self._wall = wall
        self._entries: dict[str, _Entry] = {}
        self._sweep_at = 1024

    def issue(self, receipt: Receipt, deadline_mono: float, *, has_error: bool = False) -> None:
        self._entries[receipt.reply] = _Entry(deadline_mono, has_error=has_error)
        if len(self._entries) >= self._sweep_at:
            self.sweep()

    def usable(self, receipt: Receipt) -> bool:
        """Whether `receipt` still identifies the current, unsettled delivery."""
        entry = self._entries.get(receipt.reply)
        if entry is not None:
            return not entry.settled and self._mono() < entry.deadline
        return self._wall() < receipt.deadline  # not ours: the deadline it carries

    def claim(self, receipt: Receipt) -> bool:
        """Settle `receipt` now if it is usable (before telling the server, so two
        concurrent settlements of one receipt cannot both succeed). False if not."""
        if not self.usable(receipt):
            return False
        entry = self._entries.get(receipt.reply)
        if entry is None:  # a foreign receipt: remember it settled until its deadline
            entry = self._entries[receipt.reply] = _Entry(
                self._mono() + max(0.0, receipt.deadline - self._wall()))
        entry.settled = True
        return True

    def unclaim(self, receipt: Receipt) -> None:
        """The server did not take the settlement: the delivery is live again."""
        entry = self._entries.get(receipt.reply)
        if entry is not None:
            entry.settled = False

    def extend(self, receipt: Receipt, deadline_mono: float) -> None:
        entry = self._entries.get(receipt.reply)
        if entry is None:
            entry = self._entries[receipt.reply] = _Entry(deadline_mono)
        entry.deadline = max(entry.deadline, deadline_mono)

    def has_error(self, receipt: Receipt) -> bool:
        entry = self._entries.get(receipt.reply)
        return entry is not None and entry.has_error

    def sweep(self) -> None:
        """Forget deliveries past their deadline: their receipts carry an earlier one,
        so they stay rejected."""
        now = self._mono()
        self._entries = {k: e for k, e in self._entries.items() if e.deadline > now}
        self._sweep_at = max(1024, 2 * len(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
