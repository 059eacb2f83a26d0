"""What the rest of Squall needs from storage, as narrow Protocols.

Only `backends/` imports a database or broker client. Capabilities are layered: this
first layer is the invocation log (metering and captured output per invocation); queues,
topics, streams, tables and the event store come as further Protocols.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import orjson


@dataclass(frozen=True, slots=True)
class InvocationRecord:
    """One row of the invocation log: what a REPORT line says, plus where it came from."""

    request_id: str
    app: str
    function: str
    trigger: str  # http | event
    started_at: float  # seconds since the epoch
    duration_ms: float
    billed_ms: int
    memory_mb: int
    max_memory_mb: int
    cold: bool
    init_ms: float | None
    status: str  # ok | error | timeout | memory | crash | throttled
    error_type: str | None
    error_message: str | None
    logs: str = ""


@dataclass(frozen=True, slots=True)
class LogLine:
    request_id: str
    function: str
    ts: float
    line: str


ROW_FIELDS = ("request_id", "app", "function", "trigger", "started_at", "duration_ms",
              "billed_ms", "memory_mb", "max_memory_mb", "cold", "init_ms", "status",
              "error_type", "error_message", "logs")


SPAN_FIELDS = ("trace_id", "span_id", "parent_id", "app", "name", "kind", "function", "start",
               "duration_ms", "status", "attributes")


def span_row(row: tuple | list) -> tuple:
    """A span row as stored: attributes (a dict on the request path) as JSON text (orjson:
    the log writer encodes every span, json.dumps cost it 2.8 us each)."""
    attrs = row[10]
    if not isinstance(attrs, str):
        attrs = orjson.dumps(attrs or {}, default=str).decode()
    return (*row[:10], attrs)


class Telemetry(Protocol):
    """Spans, alert states and windowed invocation reads (squall.observe aggregates)."""

    def record_spans(self, rows: list[tuple | list]) -> None:
        """Spans in SPAN_FIELDS order (attributes as JSON text)."""
        ...

    def spans(self, trace_id: str) -> list[tuple]: ...

    def trace_ids(self, app: str, *, since: float = 0.0, limit: int = 50) -> list[tuple]: ...

    def invocation_window(self, app: str, since: float, until: float,
                          function: str | None = None) -> list[tuple]: ...

    def record_alert(self, app: str, rule: str, state: str, at: float, value: float | None,
                     message: str) -> None: ...

    def alert_states(self, app: str, *, limit: int = 100) -> list[tuple]: ...

    def prune(self, app: str, before: float) -> int: ...

    def record_gauges(self, rows: list[tuple]) -> None:
        """Gauge samples: (app, name, subject, at, value) (squall.observe.gauges)."""
        ...

    def gauge_samples(self, app: str, name: str, since: float, until: float,
                      subject: str | None = None) -> list[tuple]:
        """(subject, at, value) of one gauge in [since, until), by subject then time."""
        ...

    def prune_gauges(self, app: str, before: float) -> int: ...


class InvocationLog(Protocol):
    def record(self, rows: list[InvocationRecord]) -> None: ...

    def record_rows(self, rows: list[tuple | list]) -> None:
        """The fast path: rows as plain sequences in ROW_FIELDS order."""
        ...

    def invocations(
        self, app: str, function: str | None = None, *, limit: int = 50,
        request_id: str | None = None,
    ) -> list[InvocationRecord]: ...

    def logs(
        self, app: str, function: str | None = None, *, request_id: str | None = None,
        limit: int = 200,
    ) -> list[LogLine]: ...

    def close(self) -> None: ...


class StoreError(Exception):
    """A storage failure, translated at the boundary from the driver's own error."""
