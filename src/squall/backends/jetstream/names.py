"""Names on the NATS server: every stream, subject, consumer and KV bucket of one broker
lives under its prefix (default "SQUALL"), so brokers (and tests) sharing a server keep
apart and can delete what they created.

    {P}_MSGS      work-queue stream: queue messages on {P}.q.<queue>, messages waiting
                  for their send delay on {P}.d.<queue>; durable pull consumer Q_<queue>
                  per queue, DELAYS for the delay mover
    {P}_ARCHIVE   the bus archive: events on {P}.a.<hour of the event's time>
    {P}_STREAMS   ordered streams: records on {P}.s.<stream>.<shard>
    KV {P}_STATE  schedule ticks, leases, stream checkpoints
    KV {P}_IDEM   idempotency records
    KV {P}_ERRORS the last error of a nacked message, until it is settled

A user's name (queue, stream, schedule, lease) becomes one subject token: letters,
digits, `_` and `-` stay, any other byte is written `=XX`; a long name keeps a readable
head and ends with a hash of the whole.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..broker import BrokerError

_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,32}")
MAX_TOKEN = 80
ARCHIVE_BUCKET_S = 3600  # events are filed by the hour of their time
DELAY_MOVER = "DELAYS"


def token(name: str) -> str:
    """`name` as one subject token (also fit for consumer names and KV keys)."""
    out = "".join(ch if ch in _PLAIN else "".join(f"={b:02X}" for b in ch.encode())
                  for ch in name) or "="
    if len(out) > MAX_TOKEN:
        out = out[:MAX_TOKEN - 17] + "=" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return out


def digest(text: str) -> str:
    """A fixed-length key for free text (idempotency keys, dedup keys)."""
    return hashlib.sha256(text.encode()).hexdigest()[:40]


@dataclass(frozen=True, slots=True)
class Names:
    prefix: str = "SQUALL"

    def __post_init__(self) -> None:
        if not _PREFIX.fullmatch(self.prefix):
            raise BrokerError(f"bad NATS broker prefix {self.prefix!r}: use 1-32 letters, "
                              "digits, '_' or '-'")

    # -- streams and buckets -----------------------------------------------------------

    @property
    def messages(self) -> str:
        return f"{self.prefix}_MSGS"

    @property
    def archive(self) -> str:
        return f"{self.prefix}_ARCHIVE"

    @property
    def streams(self) -> str:
        return f"{self.prefix}_STREAMS"

    @property
    def state(self) -> str:
        return f"{self.prefix}_STATE"

    @property
    def idempotency(self) -> str:
        return f"{self.prefix}_IDEM"

    @property
    def errors(self) -> str:
        return f"{self.prefix}_ERRORS"

    def owns(self, stream: str) -> bool:
        """Whether a stream on the server is one of this prefix's (streams or KV)."""
        return (stream.startswith(f"{self.prefix}_")
                or stream.startswith(f"KV_{self.prefix}_"))

    # -- subjects and consumers --------------------------------------------------------

    def queue_subject(self, queue: str) -> str:
        return f"{self.prefix}.q.{token(queue)}"

    def delayed_subject(self, queue: str) -> str:
        return f"{self.prefix}.d.{token(queue)}"

    def any_subject(self, queue: str) -> str:
        """A queue's visible and delayed messages both."""
        return f"{self.prefix}.*.{token(queue)}"

    def queue_consumer(self, queue: str) -> str:
        return f"Q_{token(queue)}"

    def archive_subject(self, bucket: int) -> str:
        return f"{self.prefix}.a.{bucket}"

    def stream_subject(self, stream: str, shard: int) -> str:
        return f"{self.prefix}.s.{token(stream)}.{shard}"
