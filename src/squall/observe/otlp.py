"""Export Squall's spans over OTLP/HTTP (OpenTelemetry SDK, the `otel` extra).

Squall makes its own span rows (squall.observe.traces); here each row becomes an SDK
`ReadableSpan` with the same trace and span ids and goes through a BatchSpanProcessor,
so the export runs on the SDK's thread, in batches, off the request path. The endpoint
is OTEL_EXPORTER_OTLP_ENDPOINT (the SDK's own variable; `/v1/traces` is appended, as the
specification says for the base endpoint).
"""

from __future__ import annotations

import json
from typing import Any

try:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("OTLP export needs the OpenTelemetry SDK: pip install 'squall[otel]' "
                      f"(or unset OTEL_EXPORTER_OTLP_ENDPOINT): {exc}") from exc

_KINDS = {"server": SpanKind.SERVER, "client": SpanKind.CLIENT, "producer": SpanKind.PRODUCER,
          "consumer": SpanKind.CONSUMER, "internal": SpanKind.INTERNAL}


def traces_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


class OtlpExporter:
    def __init__(self, app: str, endpoint: str, *, schedule_delay_ms: int = 1000) -> None:
        self.resource = Resource.create({"service.name": app, "service.namespace": "squall"})
        self.processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint)),
                                            schedule_delay_millis=schedule_delay_ms)

    def add(self, row: tuple) -> None:
        self.processor.on_end(to_readable(row, self.resource))

    def flush(self, timeout_ms: int = 5000) -> bool:
        return self.processor.force_flush(timeout_ms)

    def close(self) -> None:
        self.processor.shutdown()


def to_readable(row: tuple, resource: Any = None) -> ReadableSpan:
    (trace_id, span_id, parent_id, app, name, kind, function, start, duration_ms, status,
     attributes) = row
    flags = TraceFlags(TraceFlags.SAMPLED)
    ctx = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=False, trace_flags=flags)
    parent = (SpanContext(int(trace_id, 16), int(parent_id, 16), is_remote=True,
                          trace_flags=flags) if parent_id else None)
    if isinstance(attributes, str):
        attributes = json.loads(attributes) if attributes else {}
    attrs = {k: v if isinstance(v, (str, bool, int, float)) else json.dumps(v)
             for k, v in (attributes or {}).items()}
    attrs["squall.app"] = app
    attrs["squall.status"] = status
    if function:
        attrs["faas.name"] = function
    start_ns = int(start * 1e9)
    return ReadableSpan(
        name=name, context=ctx, parent=parent, resource=resource, attributes=attrs,
        kind=_KINDS.get(kind, SpanKind.INTERNAL),
        status=Status(StatusCode.OK if status in ("ok", "running") else StatusCode.ERROR,
                      None if status in ("ok", "running") else status),
        start_time=start_ns, end_time=start_ns + int(duration_ms * 1e6))
