"""The queue broker Protocol: what every messaging backend must provide.

Semantics (the same on every backend, checked by `squall.testing.conformance`):

* `send` returns only when the messages are durable (committed with fsync on SQLite,
  acknowledged by the JetStream server). A message with a `dedup_key` already seen on
  that queue within its window is not stored again; its first id is returned.
* `receive` hands out up to N visible messages, oldest first, and hides each for the
  visibility timeout. Every delivery has its own receipt; `ack`, `nack` and `extend`
  take the receipt, and a receipt from an earlier delivery is rejected (returns False).
* `nack(delay_s)` makes the message visible again after the delay (retry backoff).
* `dead_letter` moves a delivered message to another queue atomically, keeping its
  attempts, last error and trace id; `redrive` moves dead letters back.
* Waiting is by notification, never a tight poll: `receive(wait_s=…)` returns as soon as
  a message becomes visible, or after `wait_s` with nothing.

Timestamps are seconds since the epoch from the broker's clock (injectable for tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence


@dataclass(frozen=True, slots=True)
class OutMessage:
    """A message to send."""

    body: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    dedup_key: str | None = None
    delay_s: float = 0.0
    trace: str | None = None  # W3C traceparent


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery of a message: what a consumer works on."""

    message_id: str
    queue: str
    body: bytes
    attributes: dict[str, str]
    receipt: str
    receive_count: int
    sent_at: float  # when the message was first sent
    trace: str | None = None
    last_error: str | None = None
    dead_letter_reason: str | None = None
    source_queue: str | None = None  # for a dead letter: the queue it died on


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


@dataclass(frozen=True, slots=True)
class ArchivedEvent:
    """An event as the bus archived it (for replay)."""

    event_id: str
    time: float  # seconds since the epoch
    source: str
    detail_type: str
    body: str  # the whole event, JSON


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One record of an ordered stream."""

    stream: str
    shard: int
    seq: int
    partition_key: str
    data: bytes
    arrival: float
    trace: str | None = None  # the W3C traceparent (with lineage) of the producer's hop


class BrokerError(Exception):
    """A broker failure, translated from the driver's own error at the boundary."""


class MessageTooLarge(BrokerError):
    def __init__(self, queue: str, size: int, limit: int) -> None:
        super().__init__(
            f"message of {size} bytes is over the {limit}-byte limit of queue {queue!r}"
        )
        self.size = size
        self.limit = limit


class QueueBroker(Protocol):
    async def send(self, queue: str, messages: Sequence[OutMessage]) -> list[str]: ...

    async def receive(self, queue: str, max_messages: int = 1, *,
                      visibility_timeout_s: float = 30.0,
                      wait_s: float = 0.0) -> list[Delivery]: ...

    async def ack(self, queue: str, receipts: Sequence[str]) -> list[bool]: ...

    async def nack(self, queue: str, receipt: str, *, delay_s: float = 0.0,
                   error: str | None = None) -> bool: ...

    async def extend(self, queue: str, receipt: str, visibility_timeout_s: float) -> bool: ...

    async def dead_letter(self, queue: str, receipt: str, *, dlq: str,
                          reason: str, error: str | None = None) -> bool: ...

    async def peek(self, queue: str, limit: int = 100,
                   after_id: str | None = None) -> list[Delivery]: ...

    async def redrive(self, dlq: str, *, to: str | None = None,
                      message_ids: Sequence[str] | None = None, limit: int = 1000) -> int: ...

    async def delete(self, queue: str, message_ids: Sequence[str]) -> int: ...

    async def update_body(self, queue: str, message_id: str, body: bytes) -> bool: ...

    async def stats(self, queue: str) -> QueueStats: ...

    async def purge(self, queue: str) -> int: ...

    async def send_many(self, batches: Mapping[str, Sequence[OutMessage]]) -> dict[str, list[str]]:
        """Send to several queues in one atomic, durable write (fan-out)."""
        ...

    # -- the event bus's archive -----------------------------------------------------

    async def publish(self, events: Sequence[ArchivedEvent],
                      batches: Mapping[str, Sequence[OutMessage]]) -> dict[str, list[str]]:
        """Archive events and enqueue their deliveries, atomically. When every event's id
        was archived before (a duplicate publish), nothing is enqueued and {} returned."""
        ...

    async def archived(self, start: float, end: float, *, limit: int = 1000,
                       after: str | None = None) -> list[ArchivedEvent]:
        """Archived events with start <= time < end, oldest first, paged by event id."""
        ...

    # -- schedules -------------------------------------------------------------------

    async def fire_tick(self, schedule: str, tick: float, queue: str,
                        message: OutMessage) -> bool:
        """Enqueue a schedule's firing for `tick` unless a tick at or after it was already
        fired: exactly one firing per tick, across restarts and nodes."""
        ...

    async def last_tick(self, schedule: str) -> float | None: ...

    # -- idempotency records ---------------------------------------------------------

    async def idem_begin(self, key: str, payload_hash: str, lock_s: float) -> tuple[str, str | None]:
        """Claim `key`: ("new", None) to run the work (locked for `lock_s`), ("done", result)
        when it already ran, ("in_progress", None) while another run holds it, or
        ("mismatch", None) when the key was used with a different payload."""
        ...

    async def idem_complete(self, key: str, result: str, expires_s: float) -> None: ...

    async def idem_release(self, key: str) -> None: ...

    # -- leases (one holder across nodes: the scheduler's leader, a stream shard's reader)

    async def lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew lease `name` for `holder` until now + `ttl_s`. True when `holder`
        holds it now: it was free, expired, or already this holder's. False while another
        holder's lease is unexpired."""
        ...

    async def release(self, name: str, holder: str) -> None:
        """Give up a lease this holder holds (another holder's is left alone)."""
        ...

    # -- ordered streams -------------------------------------------------------------

    async def append(self, stream: str, records: Sequence[tuple[str, bytes]], *,
                     shards: int, trace: str | None = None) -> list[tuple[int, int]]:
        """Append (partition_key, data) records, durably; records with one key go to one
        shard, in order. Returns (shard, seq) for each. `trace`: the traceparent of the
        producer's hop, kept with every record (StreamEntry.trace)."""
        ...

    async def read(self, stream: str, shard: int, after_seq: int, limit: int, *,
                   wait_s: float = 0.0) -> list[StreamEntry]:
        """Records of a shard after `after_seq`, in order; waits up to `wait_s` for some."""
        ...

    async def latest_seq(self, stream: str, shard: int) -> int: ...

    async def get_checkpoint(self, stream: str, consumer: str, shard: int) -> int | None: ...

    async def set_checkpoint(self, stream: str, consumer: str, shard: int, seq: int) -> None: ...

    async def close(self) -> None: ...
