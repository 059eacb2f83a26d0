"""Tracing: one trace per request, across every asynchronous hop, in a built-in trace store.

Squall already carries a W3C `traceparent` with every event (squall.events.trace); this
module turns the steps that carry it into spans:

    gateway   "POST /orders"          kind server    (squall.gateway.asgi)
    invoke    "create_order"          kind internal  (squall.runtime.runtime: every invocation)
    hop       "publish shop.orders"   kind producer  (a worker's app.send/publish/notify/
                                                      invoke/invoke_async/put_records,
                                                      seen by the supervisor's service
                                                      call; a stream's records keep it)
    workflow  "process_video"         kind internal  (squall.workflows.engine; its steps'
                                                      invocations are its children)
    resume    "resume process_video"  kind internal  (an execution going on after a timer,
                                                      a signal, a restart or a takeover:
                                                      a child of its first span, in the
                                                      same trace; squall.resume says why)

A span's id is the parent id of the `traceparent` handed to the next step, so the
receiving side needs nothing but the event it got. The supervisor code doing work on
behalf of a span finds it in `current_span` (a context variable set per service call).

Spans are rows (SPAN_FIELDS) added to the metering Recorder, which writes them with the
invocation log in batches off the request path: no store write per request. With
OTEL_EXPORTER_OTLP_ENDPOINT set (and the `otel` extra installed) they are also exported
over OTLP/HTTP (squall.observe.otlp).

Read API (the CLI and the dashboard): `list_traces(store, app)`, `get_trace(store, id)`.
"""

from __future__ import annotations

import json
import random
import re
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable

from ..events.trace import child_traceparent

# the traceparent of the span on whose behalf supervisor code runs (a service call)
current_span: ContextVar[str | None] = ContextVar("squall_current_span", default=None)

SpanSink = Callable[[tuple], None]

HOP_OPS = {"invoke": "call", "invoke_async": "invoke_async", "send": "send",
           "publish": "publish", "notify": "notify", "put_records": "put_records"}


def own_span(trace: str | None) -> str:
    """The traceparent of a new span under `trace` (None or malformed: a new trace)."""
    try:
        return child_traceparent(trace)
    except ValueError:
        return child_traceparent(None)


_SAMPLED = frozenset("13579bdf")  # the last hex digit of the flags, sampled bit set
_V00 = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
_randbytes = random.randbytes  # ids must be unique, not secret (os.urandom is a syscall)


def _hex(nbytes: int) -> str:
    value = _randbytes(nbytes).hex()
    return value if value.strip("0") else _hex(nbytes)


def enter_span(trace: str | None) -> tuple[str, str | None]:
    """A new span under `trace` (an incoming traceparent or None): (its traceparent, the
    parent span id if `trace` was valid). Once per hop on the request path, so the common
    shapes (none, or a version-00 value with flags 00/01) skip the general parser."""
    if trace is None:
        return f"00-{_hex(16)}-{_hex(8)}-01", None
    head, sep, lineage = trace.partition(";")  # a loop-detection lineage rides along
    if (len(head) == 55 and _V00.fullmatch(head) and head[3:35] != _ZERO_TRACE
            and head[36:52] != _ZERO_SPAN):
        return f"00-{head[3:35]}-{_hex(8)}-{head[53:]}{sep}{lineage}", head[36:52]
    own = own_span(trace)  # another version, other flags, or not valid at all
    return own, head[36:52] if own[3:35] == head[3:35] else None


def parent_span_id(trace: str | None) -> str | None:
    """The span id a traceparent names, if it is a valid one."""
    if not trace or len(trace) < 55:
        return None
    try:
        child_traceparent(trace)
    except ValueError:
        return None
    return trace[36:52]


@dataclass(frozen=True, slots=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    app: str
    name: str
    kind: str  # server | internal | producer | consumer | client
    function: str | None
    start: float  # seconds since the epoch
    duration_ms: float
    status: str  # ok | error | timeout | throttled | running ...
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> float:
        return self.start + self.duration_ms / 1000.0

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}

    @classmethod
    def from_row(cls, row: tuple | list) -> Span:
        *head, attrs = row
        if isinstance(attrs, str):
            attrs = json.loads(attrs) if attrs else {}
        return cls(*head, attributes=attrs or {})


class Tracer:
    """Makes span rows and hands them to `sink` (Recorder.add_span) and the exporter."""

    def __init__(self, app: str, sink: SpanSink, *, exporter: Any = None,
                 clock: Callable[[], float] = time.time, sample: float = 1.0,
                 reservoir: int = 0) -> None:
        """Which new traces (requests without a traceparent) are recorded: the first
        `reservoir` each second, then a share `sample` of the rest (AWS X-Ray's rule).
        The W3C sampled flag carries the decision down the whole flow; a request that
        comes with a traceparent keeps its caller's decision."""
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"the trace sample rate is a fraction 0..1, got {sample}")
        if reservoir < 0:
            raise ValueError(f"the trace reservoir is a count per second >= 0, got {reservoir}")
        self.reservoir = reservoir
        self._second = 0
        self._taken = 0
        self.app = app
        self.sink = sink
        self.exporter = exporter  # squall.observe.otlp.OtlpExporter or None
        self.clock = clock
        self.sample = sample

    def record(self, traceparent: str, parent_id: str | None, name: str, kind: str,
               function: str | None, start: float, duration_ms: float, status: str,
               attributes: dict[str, Any] | None = None) -> None:
        if traceparent[54] not in _SAMPLED:
            return  # the trace's root decided not to record it
        # attributes stay a dict here: the store (or the log writer) encodes them off the
        # request path
        row = (traceparent[3:35], traceparent[36:52], parent_id, self.app, name, kind,
               function, start, duration_ms, status, attributes or {})
        self.sink(row)
        if self.exporter is not None:
            self.exporter.add(row)

    # -- the steps that make spans ----------------------------------------------------

    def enter(self, trace: str | None) -> tuple[str, str | None]:
        """enter_span at the front door, where a new trace is sampled (or not)."""
        own, parent = enter_span(trace)
        if trace is None and self.sample < 1.0:
            second = int(self.clock())
            if second != self._second:
                self._second, self._taken = second, 0
            if self._taken < self.reservoir:
                self._taken += 1
            elif random.random() >= self.sample:
                own = own[:53] + "00"  # not sampled: no span of this trace is recorded
        return own, parent

    def gateway(self, own: str, parent: str | None, request: Any, function: str,
                start: float, result: Any) -> None:
        """The front door's span of one HTTP request (until the function answered)."""
        if own[54] not in _SAMPLED:
            return
        self.record(own, parent, request.route or f"{request.method} {request.path}",
                    "server", function, start, (self.clock() - start) * 1000.0, result.status,
                    {"http.status": result.value.status} if result.ok else None)

    def invocation(self, traceparent: str, parent_id: str | None, result: Any,
                   kind: str) -> None:
        """One invocation (an InvocationResult), under the span that caused it."""
        if traceparent[54] not in _SAMPLED:
            return
        attrs: dict[str, Any] = {"request_id": result.request_id, "trigger": kind,
                                 "cold": result.cold}
        if result.cold and result.init_ms is not None:
            attrs["init_ms"] = result.init_ms
        if result.error_type:
            attrs["error"] = f"{result.error_type}: {result.error_message}"
        self.record(traceparent, parent_id, result.function, "internal", result.function,
                    result.started_at, result.duration_ms, result.status, attrs)

    def hops(self, op: str, payload: Any, caller: str | None) -> None:
        """The spans of a worker's service call that sends work on (queue, bus, topic,
        invoke): one per outgoing traceparent, under the calling invocation's span."""
        verb = HOP_OPS.get(op)
        if verb is None:
            return
        parent = current_span.get()
        parent_id = parent[36:52] if parent else None
        now = self.clock()
        for trace, target in _outgoing(op, payload):
            if trace and parent_span_id(trace):
                self.record(trace, parent_id, f"{verb} {target}", "producer", caller, now,
                            0.0, "ok", {"op": op, "target": target})


def _outgoing(op: str, payload: Any) -> list[tuple[str | None, str]]:
    """(traceparent, target) pairs in a service call's payload (see runtime.worker)."""
    try:
        if op in ("invoke", "invoke_async", "put_records"):
            return [(payload[2] if len(payload) > 2 else None, payload[0])]
        if op == "send":
            return [(m.get("trace"), payload[0]) for m in payload[1]]
        doc = json.loads(payload)
        if op == "publish":
            return [(doc.get("traceparent"),
                     f"{doc.get('source', '?')} {doc.get('detail-type', '')}".strip())]
        return [(doc.get("traceparent"), doc.get("topic", "?"))]
    except (TypeError, ValueError, IndexError, AttributeError, KeyError):
        return []  # a malformed call is the service's to refuse, not the tracer's


RESUME_ATTR = "squall.resume"  # why an execution went on, on its resume span:
RESUME_REASONS = ("restart", "timer", "takeover", "signal")  # (a restart's recover(), a
# durable timer fired, another node took it over, a signal came)


def resume_span(stored: str | None) -> tuple[str | None, str | None]:
    """(a resume span's traceparent, its parent span id) under an execution's stored
    traceparent; (None, None) if none is stored or it is not valid (an execution
    started before traces were kept, or without one): the resume then starts a trace."""
    parent = parent_span_id(stored) if isinstance(stored, str) else None
    return (own_span(stored), parent) if parent is not None else (None, None)


class WorkflowSpans:
    """The spans of each workflow execution, in ONE trace however long it runs (as X-Ray
    shows one trace per Step Functions execution): the execution's span, begun when it
    starts (under the caller's traceparent) and closed when it finishes, and under it a
    `resume <name>` span each time it goes on after a wait or in another process
    (attribute squall.resume: timer, signal, restart, takeover), open until the next one
    or the end. The steps' and replays' invocations are children of the latest.

    The execution span's traceparent (with its loop lineage) and its caller's span id
    are kept in the execution's first history event (`plan`), so a node that drives it
    after a restart or a takeover goes on in the same trace (`restore`)."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self._open: dict[str, tuple[str, str | None, str, float]] = {}
        self._resumed: dict[str, tuple[str, str, float]] = {}  # id -> (own, reason, start)

    def plan(self, trace: str | None) -> dict[str, Any]:
        """The span of an execution about to start, as its first history event keeps it:
        {"trace": its traceparent, "caller_span": its parent span id}. `trace`: the
        caller's traceparent (app.invoke_async), else the span of the invocation whose
        service call starts it (app.start_workflow)."""
        trace = trace or current_span.get()
        return {"trace": own_span(trace), "caller_span": parent_span_id(trace)}

    def begin(self, execution_id: str, name: str, trace: str | None, *,
              planned: dict[str, Any] | None = None, start: float | None = None) -> str:
        """Open the execution's span (`planned` by `plan`, else planned here)."""
        planned = planned or self.plan(trace)
        own, parent = planned["trace"], planned.get("caller_span")
        start = self.tracer.clock() if start is None else start
        self._open[execution_id] = (own, parent, name, start)
        self.tracer.record(own, parent, name, "internal", name, start, 0.0, "running",
                           {"execution": execution_id, "workflow": name})
        return own

    def restore(self, execution_id: str, name: str, stored: dict[str, Any],
                started_at: float, reason: str) -> str:
        """An execution this process did not start (a restart, a takeover): its span
        again from `stored` (its first history event's data), and a resume span under
        it. One stored without a trace (started before traces were kept) gets a new one."""
        own = stored.get("trace")
        if resume_span(own)[0] is None:
            planned = {"trace": own_span(None), "caller_span": None}
        else:
            caller = stored.get("caller_span")
            planned = {"trace": own, "caller_span": caller if isinstance(caller, str) else None}
        self.begin(execution_id, name, None, planned=planned, start=started_at)
        return self.resume(execution_id, reason) or planned["trace"]

    def resume(self, execution_id: str, reason: str) -> str | None:
        """The execution goes on (RESUME_REASONS): close its last resume span, open a new
        one under its span; its traceparent (None: no span is open here)."""
        if reason not in RESUME_REASONS:
            raise ValueError(f"unknown resume reason {reason!r}; one of {RESUME_REASONS}")
        entry = self._open.get(execution_id)
        if entry is None:
            return None
        exec_own, _, name, _ = entry
        now = self.tracer.clock()
        self._close_resume(execution_id, entry, now, "ok")
        own = own_span(exec_own)
        self._resumed[execution_id] = (own, reason, now)
        self.tracer.record(own, exec_own[36:52], f"resume {name}", "internal", name, now,
                           0.0, "running", {"execution": execution_id, "workflow": name,
                                            RESUME_ATTR: reason})
        return own

    def _close_resume(self, execution_id: str, entry: tuple[str, str | None, str, float],
                      now: float, status: str) -> None:
        last = self._resumed.pop(execution_id, None)
        if last is None:
            return
        own, reason, start = last
        exec_own, _, name, _ = entry
        self.tracer.record(own, exec_own[36:52], f"resume {name}", "internal", name, start,
                           max(0.0, (now - start) * 1000.0), status,
                           {"execution": execution_id, "workflow": name, RESUME_ATTR: reason})

    def trace(self, execution_id: str) -> str | None:
        """The span the execution's invocations go under: its latest resume span, else
        its own."""
        last = self._resumed.get(execution_id)
        if last is not None:
            return last[0]
        entry = self._open.get(execution_id)
        return entry[0] if entry else None

    def forget(self, execution_id: str) -> None:
        """Another node drives it now (a lost lease): its spans are that node's to close."""
        self._open.pop(execution_id, None)
        self._resumed.pop(execution_id, None)

    def end(self, execution_id: str, status: str) -> None:
        entry = self._open.pop(execution_id, None)
        if entry is None:
            return
        own, parent, name, start = entry
        now = self.tracer.clock()
        status = "ok" if status == "succeeded" else status
        self._close_resume(execution_id, entry, now, status)
        duration = max(0.0, (now - start) * 1000.0)
        self.tracer.record(own, parent, name, "internal", name, start, duration, status,
                           {"execution": execution_id, "workflow": name})


# -- read API --------------------------------------------------------------------------


def get_trace(store: Any, trace_id: str) -> list[Span]:
    """Every span of one trace, by start time."""
    return [Span.from_row(r) for r in store.spans(trace_id)]


def list_traces(store: Any, app: str, *, since: float = 0.0,
                limit: int = 50) -> list[dict[str, Any]]:
    """The newest traces of `app`: id, root span name, start, duration, span and error
    counts, newest first."""
    out = []
    for trace_id, start, end, count, errors in store.trace_ids(app, since=since, limit=limit):
        spans = store.spans(trace_id)
        root = next((s for s in spans if not s[2] or s[2] not in {x[1] for x in spans}),
                    spans[0] if spans else None)
        out.append({"trace_id": trace_id, "root": root[4] if root else "?",
                    "function": root[6] if root else None, "start": start,
                    "duration_ms": round((end - start) * 1000.0, 3), "spans": count,
                    "errors": int(errors or 0)})
    return out


def tree(spans: list[Span]) -> list[tuple[int, Span]]:
    """Spans in waterfall order: each under its parent, with its depth (orphans at 0)."""
    known = {s.span_id for s in spans}
    children: dict[str | None, list[Span]] = {}
    for s in spans:
        children.setdefault(s.parent_id if s.parent_id in known else None, []).append(s)
    out: list[tuple[int, Span]] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda x: x.start):
            out.append((depth, s))
            walk(s.span_id, depth + 1)

    walk(None, 0)
    return out
