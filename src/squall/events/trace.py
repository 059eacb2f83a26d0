"""W3C Trace Context `traceparent` (the CloudEvents distributed-tracing extension):
parse, make a new one, and derive a child span for work a step starts."""

from __future__ import annotations

import re
import secrets
from typing import NamedTuple

from .errors import InvalidEvent

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.S)
_KNOWN_FLAGS = 0x03  # sampled (level 1) and random trace id (level 2); others are zeroed


class TraceParent(NamedTuple):
    """A parsed `traceparent`: version, trace id, parent (span) id, and the flags byte."""

    version: str
    trace_id: str
    parent_id: str
    flags: int

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 0x01)


def parse_traceparent(value: str) -> TraceParent:
    """Parse and validate a W3C `traceparent` (version 00, or a later one's first fields)."""
    if not isinstance(value, str):
        raise InvalidEvent(f"traceparent must be a string, got {type(value).__name__}")
    m = _TRACEPARENT.fullmatch(value.strip(" \t"))
    if m is None:
        raise InvalidEvent(
            f"traceparent {value!r} is not a W3C Trace Context value: expected "
            f"00-<32 lower-case hex trace id>-<16 lower-case hex parent id>-<2 hex flags>"
        )
    version, trace_id, parent_id, flags, rest = m.groups()
    if version == "ff":
        raise InvalidEvent(f"traceparent {value!r} has version ff, which W3C forbids")
    if version == "00" and rest is not None:
        raise InvalidEvent(f"traceparent {value!r} has fields after the flags; version 00 has four")
    if trace_id == "0" * 32:
        raise InvalidEvent(f"traceparent {value!r} has an all-zero trace id")
    if parent_id == "0" * 16:
        raise InvalidEvent(f"traceparent {value!r} has an all-zero parent id")
    return TraceParent(version, trace_id, parent_id, int(flags, 16))


def _random_hex(nbytes: int) -> str:
    while True:
        value = secrets.token_hex(nbytes)
        if value.strip("0"):
            return value


def new_traceparent(sampled: bool = True) -> str:
    """A `traceparent` that starts a new trace."""
    return f"00-{_random_hex(16)}-{_random_hex(8)}-{'01' if sampled else '00'}"


def child_traceparent(value: str | None) -> str:
    """The `traceparent` for a step under `value`: same trace, new parent id.

    None starts a new trace. A later version is answered in version 00 (the only one
    this module writes), keeping the trace id and the flags it knows.
    """
    if value is None:
        return new_traceparent()
    # a loop-detection lineage after ';' (squall.events.lineage) goes on to the child
    head, sep, lineage = value.partition(";")
    parent = parse_traceparent(head)
    return (f"00-{parent.trace_id}-{_random_hex(8)}-{parent.flags & _KNOWN_FLAGS:02x}"
            f"{sep}{lineage}")
