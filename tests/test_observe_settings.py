"""Tracing settings: sampling carried by the W3C sampled flag, the environment's knobs and
their errors, and retention (squall.observe.live)."""

from __future__ import annotations

import time

import pytest

from squall.backends.base import InvocationRecord
from squall.backends.sqlite.store import SqliteStore
from squall.observe.live import ObserveSettings
from squall.observe.numbers import parse_duration_s
from squall.observe.traces import Tracer, enter_span, get_trace
from squall.testing.conformance import FakeClock

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_the_sampled_flag_decides_for_the_whole_flow():
    rows: list = []
    never = Tracer("shop", rows.append, sample=0.0)
    own, parent = never.enter(None)  # a new trace at the front door, not sampled
    assert own.endswith("-00") and parent is None
    child, _ = enter_span(own)  # the flag goes on to every hop
    never.record(child, own[36:52], "charge", "internal", "charge", 1.0, 1.0, "ok")
    assert rows == []
    always = Tracer("shop", rows.append)
    own, parent = always.enter(f"00-{TRACE}-00f067aa0ba902b7-01")
    assert own[3:35] == TRACE and parent == "00f067aa0ba902b7" and own.endswith("-01")
    always.record(own, parent, "POST /orders", "server", "create", 1.0, 2.0, "ok")
    always.record(f"00-{TRACE}-b7ad6b7169203331-00", None, "x", "internal", None, 1, 1, "ok")
    assert [r[4] for r in rows] == ["POST /orders"]  # the caller said: not sampled
    with pytest.raises(ValueError, match="fraction"):
        Tracer("shop", rows.append, sample=1.5)


def test_the_reservoir_records_the_first_traces_of_every_second():
    clock = FakeClock(1_750_000_000.0)
    tracer = Tracer("shop", [].append, sample=0.0, reservoir=2, clock=clock)
    flags = [tracer.enter(None)[0][-2:] for _ in range(4)]
    assert flags == ["01", "01", "00", "00"]
    clock.advance(1.0)  # a new second: a new reservoir
    assert tracer.enter(None)[0].endswith("-01")
    incoming = tracer.enter(f"00-{TRACE}-00f067aa0ba902b7-01")[0]
    assert incoming.endswith("-01")  # the caller decided


def test_a_lineage_and_a_bad_traceparent():
    own, parent = enter_span(f"00-{TRACE}-00f067aa0ba902b7-01;loop=charge:2")
    assert own.startswith(f"00-{TRACE}-") and own.endswith("-01;loop=charge:2")
    assert parent == "00f067aa0ba902b7"
    own, parent = enter_span("00-nothex-01")
    assert parent is None and len(own) == 55 and own[3:35] != TRACE


def test_settings_from_the_environment():
    s = ObserveSettings.from_env({"SQUALL_TRACING": "0", "SQUALL_TRACE_SAMPLE": "0.25",
                                  "SQUALL_LOG_RETENTION": "7d",
                                  "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert (s.tracing, s.metrics, s.sample, s.retention_s, s.otlp_endpoint) == (
        False, True, 0.25, 7 * 86400, "http://127.0.0.1:4318")
    assert (ObserveSettings.from_env({}).reservoir, ObserveSettings.from_env({}).sample) == (
        100, 0.05)  # AWS X-Ray's rule, with a larger reservoir
    for env, msg in (({"SQUALL_TRACE_SAMPLE": "most"}, "a number 0..1"),
                     ({"SQUALL_TRACE_RESERVOIR": "-1"}, ">= 0"),
                     ({"SQUALL_TRACE_SAMPLE": "2"}, "0..1"),
                     ({"SQUALL_LOG_RETENTION": "forever"}, "SQUALL_LOG_RETENTION")):
        with pytest.raises(ValueError, match=msg):
            ObserveSettings.from_env(env)
    assert parse_duration_s("90s") == 90 and parse_duration_s("1.5h") == 5400
    with pytest.raises(ValueError, match="positive"):
        parse_duration_s("0m")


def test_retention_drops_old_invocations_output_and_spans(tmp_path):
    store = SqliteStore(tmp_path / "squall.db")
    now = time.time()
    try:
        for rid, at in (("old", now - 10 * 86400), ("new", now)):
            store.record([InvocationRecord(rid, "shop", "f", "event", at, 1.0, 1, 128, 1, False,
                                           None, "ok", None, None, f"output of {rid}\n")])
            store.record_spans([(TRACE, rid.ljust(16, "0")[:16], None, "shop", rid, "internal",
                                 "f", at, 1.0, "ok", {"k": rid})])
        assert store.prune("shop", now - 7 * 86400) == 1
        assert [r.request_id for r in store.invocations("shop")] == ["new"]
        assert [line.line for line in store.logs("shop")] == ["output of new"]
        spans = get_trace(store, TRACE)
        assert [s.name for s in spans] == ["new"] and spans[0].attributes == {"k": "new"}
    finally:
        store.close()


def test_alert_rules_follow_a_hot_reload(tmp_path):
    import asyncio

    from squall.observe.live import Observability

    async def scenario():
        obs = Observability("shop", [].append, ObserveSettings(tracing=False))
        opened = []

        def open_store():
            opened.append(SqliteStore(tmp_path / "squall.db"))
            return opened[-1]

        obs.start(open_store, {"alerts": []})
        assert obs.alerts is None and opened == []  # nothing to evaluate: no connection
        rule = {"name": "errors", "condition": "error_rate", "threshold": 0.05,
                "window_s": 60.0, "for_s": 0.0, "notify": []}
        obs.reconfigure({"alerts": [rule]})  # a reload declared a rule
        assert [r.name for r in obs.alerts.rules] == ["errors"] and len(opened) == 1
        obs.reconfigure({"alerts": [{**rule, "name": "errors2", "threshold": 0.5}]})
        assert [r.threshold for r in obs.alerts.rules] == [0.5] and len(opened) == 1
        await obs.stop()
        assert obs.store is None

    asyncio.run(scenario())
