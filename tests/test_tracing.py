"""W3C trace context flows from an HTTP request through sync calls, queues, asynchronous
invocations and the bus: every step shares the caller's trace id, with a span of its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from squall.events.envelope import parse_traceparent
from squall.testing import TestClient
from squall.testing.conformance import FakeClock

APP = str(Path(__file__).parent / "apps" / "tracing.py")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.mark.parametrize("isolated", [False, True], ids=["in-process", "isolated"])
def test_one_trace_across_http_queue_async_and_bus(isolated):
    if isolated:
        ref = APP
    else:
        import importlib.util

        spec = importlib.util.spec_from_file_location("tracing_app", APP)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        ref = mod.app
    with TestClient(ref, isolated=isolated, clock=FakeClock()) as client:
        r = client.post("/start", json={}, headers={"traceparent": INCOMING})
        assert r.status_code == 200, r.text
        body = r.json()
        own = parse_traceparent(body["trace"])
        assert own.trace_id == TRACE_ID and own.parent_id != "00f067aa0ba902b7"
        assert parse_traceparent(body["inner"]).trace_id == TRACE_ID
        client.drain()
        logs = client.logs()
        spans = re.findall(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01", logs)
        assert len(spans) >= 4  # queue message + queue ctx + async + bus
        assert {t for t, _ in spans} == {TRACE_ID}
        assert len({s for _, s in spans}) == len(spans)  # every step its own span


def test_a_malformed_traceparent_starts_a_new_trace():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tracing_app2", APP)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with TestClient(mod.app) as client:
        r = client.post("/start", json={}, headers={"traceparent": "garbage"})
        assert r.status_code == 200
        assert parse_traceparent(r.json()["trace"]).trace_id != TRACE_ID
