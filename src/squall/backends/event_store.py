"""The event store Protocol, in capability layers (eventsourcing's recorder layers):

1. streams: `append` with an expected version, `read_stream` (to a version or a time);
2. global order: every event gets a `position`, 1, 2, 3, ... with no gaps, so a reader
   that has seen position N has seen everything before it; `read_all(after)`;
3. tracking: named checkpoints, and projection rows written in the same transaction as
   their checkpoint (a read model never applies an event twice);
plus snapshots. Events are immutable: there is no update or delete.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Protocol, Sequence

ANY = None  # expected_version: append whatever the stream's version
NO_STREAM = 0  # expected_version: the stream must not exist yet


class EventStoreError(Exception):
    """The store failed (I/O, corruption)."""


class ConcurrencyError(EventStoreError):
    """An append expected another version of the stream; nothing was written."""

    def __init__(self, stream: str, expected: int, actual: int,
                 message: str | None = None) -> None:
        super().__init__(message or (
            f"stream {stream!r} is at version {actual}, the append expected {expected}: "
            "another writer appended first; nothing was written. Load the stream again, "
            "re-check the command and retry."))
        self.stream, self.expected, self.actual = stream, expected, actual


@dataclass(frozen=True, slots=True)
class NewEvent:
    type: str
    data: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    schema_version: int = 1


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    position: int  # global, gap-free
    stream: str
    version: int  # within the stream, 1-based
    type: str
    data: Any
    metadata: dict[str, Any]
    schema_version: int
    recorded_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "stream": self.stream, "version": self.version,
                "type": self.type, "data": self.data, "metadata": self.metadata,
                "schema_version": self.schema_version, "recorded_at": self.recorded_at}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RecordedEvent:
        return cls(d["position"], d["stream"], d["version"], d["type"], d["data"],
                   d.get("metadata") or {}, d.get("schema_version", 1), d["recorded_at"])


# A frozen dataclass's __init__ sets each field through object.__setattr__ (about 1.2 us
# for RecordedEvent's eight); the stores build one per event appended or read, so their
# hot paths set the slots directly instead (half the cost, the same frozen object).
_new = object.__new__
(_set_position, _set_stream, _set_version, _set_type, _set_data, _set_metadata,
 _set_schema_version, _set_recorded_at) = (
    RecordedEvent.__dict__[f.name].__set__ for f in fields(RecordedEvent))


def recorded_event(position: int, stream: str, version: int, type: str, data: Any,
                   metadata: dict[str, Any], schema_version: int, recorded_at: float
                   ) -> RecordedEvent:
    """`RecordedEvent(...)` for the stores' per-event loops; arguments in field order."""
    e = _new(RecordedEvent)
    _set_position(e, position)
    _set_stream(e, stream)
    _set_version(e, version)
    _set_type(e, type)
    _set_data(e, data)
    _set_metadata(e, metadata)
    _set_schema_version(e, schema_version)
    _set_recorded_at(e, recorded_at)
    return e


@dataclass(frozen=True, slots=True)
class Snapshot:
    stream: str
    version: int
    state: Any
    recorded_at: float


class EventStore(Protocol):
    def append(self, stream: str, events: Sequence[NewEvent],
               expected_version: int | None = ANY) -> list[RecordedEvent]: ...

    def append_many(self, batch: Sequence[tuple[str, Sequence[NewEvent], int | None]]
                    ) -> list[RecordedEvent]:
        """Several streams in one transaction: all or nothing."""
        ...

    def read_stream(self, stream: str, *, after_version: int = 0,
                    to_version: int | None = None, until: float | None = None
                    ) -> list[RecordedEvent]: ...

    def stream_version(self, stream: str) -> int: ...

    def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]: ...

    def head(self) -> int:
        """The last position (0 if empty)."""
        ...

    def save_snapshot(self, stream: str, version: int, state: Any) -> None: ...

    def load_snapshot(self, stream: str, *, max_version: int | None = None,
                      until: float | None = None) -> Snapshot | None: ...

    def get_checkpoint(self, name: str) -> int: ...

    def set_checkpoint(self, name: str, position: int) -> None: ...

    # projection read models (rows per projection version) and their checkpoints
    def row_get(self, table: str, key: str) -> Any: ...

    def row_query(self, table: str, prefix: str = "", limit: int = 1000
                  ) -> list[tuple[str, Any]]: ...

    def apply(self, table: str, puts: dict[str, Any], deletes: Sequence[str],
              checkpoint: str, position: int) -> None:
        """Write rows and move the checkpoint, atomically."""
        ...

    def drop_rows(self, table: str) -> None: ...

    def get_meta(self, key: str) -> Any: ...

    def set_meta(self, key: str, value: Any) -> None: ...

    def close(self) -> None: ...
