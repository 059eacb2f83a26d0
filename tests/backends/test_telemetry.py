"""Spans, alert states, windowed invocation reads and retention: the same behaviour on the
embedded store and on PostgreSQL (squall.backends.*.telemetry)."""

from __future__ import annotations

import pytest
from pg_fixtures import postgres_url, unique_schema

from squall.backends.base import InvocationRecord
from squall.backends.sqlite.store import SqliteStore

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
T0 = 1_750_000_000.0


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "squall.db")
        yield s
        s.close()
        return
    from squall.backends.postgres.store import PgStore

    url = postgres_url()
    with unique_schema(url) as schema:
        s = PgStore(url, schema=schema)
        yield s
        s.close()


def span(span_id: str, parent: str | None, name: str, start: float, status: str = "ok",
         trace: str = TRACE, app: str = "shop", **attrs) -> tuple:
    return (trace, span_id, parent, app, name, "internal", name, start, 5.0, status, attrs)


def test_spans_round_trip_and_a_span_recorded_again_replaces_itself(store):
    store.record_spans([span("a" * 16, None, "POST /orders", T0, **{"http.status": 201}),
                        span("b" * 16, "a" * 16, "charge", T0 + 0.001, "error"),
                        span("c" * 16, None, "other", T0 + 5, trace="1" * 32)])
    store.record_spans([span("b" * 16, "a" * 16, "charge", T0 + 0.001, "ok", attempt=2)])
    rows = store.spans(TRACE)
    assert [(r[1], r[4], r[9]) for r in rows] == [("a" * 16, "POST /orders", "ok"),
                                                  ("b" * 16, "charge", "ok")]
    assert rows[1][2] == "a" * 16 and '"attempt":2' in rows[1][10]
    traces = store.trace_ids("shop", since=T0 - 1, limit=10)
    assert [t[0] for t in traces] == ["1" * 32, TRACE]  # newest first
    trace = traces[1]
    assert trace[1] == pytest.approx(T0) and trace[3] == 2 and trace[4] == 0
    assert [t[0] for t in store.trace_ids("shop", since=T0 + 1)] == ["1" * 32]
    assert store.trace_ids("elsewhere") == []


def test_invocation_window_alert_states_and_retention(store):
    store.record([InvocationRecord(f"r{i}", "shop", "f" if i % 2 else "g", "http", T0 + i,
                                   float(i), i, 128, 10, i == 0, 3.0 if i == 0 else None,
                                   "ok" if i < 3 else "error", None, None, f"line {i}\n")
                  for i in range(5)])
    rows = store.invocation_window("shop", T0 + 1, T0 + 4)
    assert [(r[0], r[1], r[7]) for r in rows] == [("f", T0 + 1, "ok"), ("g", T0 + 2, "ok"),
                                                  ("f", T0 + 3, "error")]
    assert [r[0] for r in store.invocation_window("shop", T0, T0 + 10, "g")] == ["g"] * 3
    store.record_alert("shop", "errors", "firing", T0 + 10, 0.4, "[FIRING] shop/errors")
    store.record_alert("shop", "errors", "resolved", T0 + 20, 0.0, "[resolved] shop/errors")
    assert [(r[0], r[1], r[2]) for r in store.alert_states("shop")] == [
        ("errors", "resolved", T0 + 20), ("errors", "firing", T0 + 10)]
    store.record_spans([span("a" * 16, None, "old", T0), span("b" * 16, None, "new", T0 + 4)])
    assert store.prune("shop", T0 + 2) == 2
    assert [r.request_id for r in store.invocations("shop")] == ["r2", "r3", "r4"]
    assert {line.line for line in store.logs("shop")} == {"line 2", "line 3", "line 4"}
    assert [r[4] for r in store.spans(TRACE)] == ["new"]


def test_gauge_samples_round_trip_by_subject_and_are_pruned(store):
    # Given queue depths sampled a minute apart, for two queues and two apps
    store.record_gauges([("shop", "queue_visible", q, T0 + 60 * i, float(i * n))
                         for i in range(4) for q, n in (("emails", 1), ("orders", 2))])
    store.record_gauges([("other", "queue_visible", "emails", T0, 9.0),
                         ("shop", "dlq_messages", "emails-dlq", T0, 1.0)])
    # Then a window reads one gauge of one app, by subject then time
    rows = store.gauge_samples("shop", "queue_visible", T0 + 60, T0 + 180)
    assert [(r[0], r[1] - T0, r[2]) for r in rows] == [
        ("emails", 60, 1.0), ("emails", 120, 2.0), ("orders", 60, 2.0), ("orders", 120, 4.0)]
    assert [r[2] for r in store.gauge_samples("shop", "queue_visible", T0, T0 + 1e6,
                                              "orders")] == [0.0, 2.0, 4.0, 6.0]
    # And retention drops what is older, for that app only
    assert store.prune_gauges("shop", T0 + 120) == 5
    assert len(store.gauge_samples("shop", "queue_visible", 0, T0 + 1e6)) == 4
    assert len(store.gauge_samples("other", "queue_visible", 0, T0 + 1e6)) == 1
