"""Spans exported over OTLP/HTTP to a collector on loopback, with Squall's own ids."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.http",
                    reason="the otel extra is not installed")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest)

from squall.observe.live import Observability, ObserveSettings  # noqa: E402
from squall.observe.otlp import traces_url  # noqa: E402

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


class _Collector(BaseHTTPRequestHandler):
    received: list = []
    got = threading.Event()

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["content-length"]))
        _Collector.received.append((self.path, self.headers["content-type"], body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()
        _Collector.got.set()

    def log_message(self, *args):
        pass


def test_spans_reach_an_otlp_collector():
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rows: list = []
    try:
        obs = Observability("shop", rows.append, ObserveSettings(
            otlp_endpoint=f"http://127.0.0.1:{server.server_port}"))
        obs.tracer.record(f"00-{TRACE}-00f067aa0ba902b7-01", None, "POST /orders", "server",
                          "create_order", 1_750_000_000.0, 12.5, "ok", {"http.status": 201})
        obs.tracer.record(f"00-{TRACE}-b7ad6b7169203331-01", "00f067aa0ba902b7", "charge",
                          "internal", "charge", 1_750_000_000.001, 3.0, "error",
                          {"error": "KeyError: x"})
        assert obs.exporter.flush(5000)
        assert _Collector.got.wait(5)
        obs.exporter.close()
    finally:
        server.shutdown()
        server.server_close()
    assert len(rows) == 2  # the built-in store gets them too
    path, ctype, body = _Collector.received[0]
    assert path == "/v1/traces" and ctype == "application/x-protobuf"
    req = ExportTraceServiceRequest.FromString(body)
    rs = req.resource_spans[0]
    service = {a.key: a.value.string_value for a in rs.resource.attributes}["service.name"]
    assert service == "shop"
    spans = {s.name: s for ss in rs.scope_spans for s in ss.spans}
    root, child = spans["POST /orders"], spans["charge"]
    assert root.trace_id.hex() == TRACE and root.span_id.hex() == "00f067aa0ba902b7"
    assert child.parent_span_id.hex() == "00f067aa0ba902b7"
    assert root.end_time_unix_nano - root.start_time_unix_nano == 12_500_000
    assert child.status.code == 2  # STATUS_CODE_ERROR
    attrs = {a.key: a.value for a in root.attributes}
    assert attrs["http.status"].int_value == 201 and attrs["faas.name"].string_value == \
        "create_order"
    assert traces_url("http://c:4318/") == "http://c:4318/v1/traces"
