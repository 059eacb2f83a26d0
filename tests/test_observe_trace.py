"""One HTTP request -> bus -> queue function and workflow: ONE trace with every hop, in the
built-in trace store, printed by `squall trace`; and the Prometheus endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from servers import RunningServer, wait_until
from squall.backends import open_store, store_url_for_data_dir
from squall.cli.main import cli
from squall.observe.traces import get_trace, list_traces, tree

APP = str(Path(__file__).parent / "apps" / "observed.py")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("observed"))
    with RunningServer(APP, data_dir) as server:
        yield server, data_dir


def _spans(data_dir: str) -> list:
    store = open_store(store_url_for_data_dir(data_dir))
    try:
        return get_trace(store, TRACE_ID)
    finally:
        store.close()


def test_one_request_is_one_trace_with_every_hop(served):
    server, data_dir = served
    # Given a request that carries a W3C traceparent
    r = httpx.post(server.url + "/orders", json={"id": 7}, headers={"traceparent": INCOMING})
    assert r.status_code == 201, r.text

    # When the bus, the queue and the workflow have done their work
    def complete() -> bool:
        names = {s.name for s in _spans(data_dir)}
        return {"send_email", "fulfil", "ship"} <= names and any(
            s.name == "fulfil" and s.status == "ok" for s in _spans(data_dir))

    wait_until(complete, 20, "the whole flow in the trace store")
    spans = _spans(data_dir)

    # Then every hop is a span of the one trace, each under the span that caused it
    assert {s.trace_id for s in spans} == {TRACE_ID}
    by_id = {s.span_id: s for s in spans}
    assert len(by_id) == len(spans)

    def one(name: str, kind: str | None = None):
        found = [s for s in spans if s.name == name and (kind is None or s.kind == kind)]
        assert len(found) == 1, (name, [(s.name, s.kind) for s in spans])
        return found[0]

    def parent(span):
        return by_id[span.parent_id]

    gateway = one("POST /orders", "server")
    assert gateway.parent_id == "00f067aa0ba902b7"  # the caller's span
    http_fn = one("create_order", "internal")
    assert parent(http_fn) is gateway
    publish = one("publish shop.orders OrderCreated", "producer")
    assert parent(publish) is http_fn
    route = one("route_order", "internal")
    assert parent(route) is publish
    send = one("send emails", "producer")
    assert parent(send) is route
    email = one("send_email", "internal")
    assert parent(email) is send
    workflow = [s for s in spans if s.name == "fulfil" and s.attributes.get("execution")]
    assert len(workflow) == 1 and parent(workflow[0]) is route
    steps = {s.name: s for s in spans if s.parent_id == workflow[0].span_id}
    assert {"pack", "ship"} <= set(steps)  # the steps (and the workflow's own replays)
    assert workflow[0].status == "ok" and workflow[0].duration_ms > 0
    assert [d for d, s in tree(spans) if s is gateway] == [0]  # the waterfall's root

    # And `squall trace` prints that waterfall, `squall traces` lists it
    result = CliRunner().invoke(cli, ["trace", TRACE_ID, "--data-dir", data_dir],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in ("POST /orders", "publish shop.orders", "send emails", "send_email",
                 "fulfil", "pack", "ship"):
        assert name in result.output
    listed = CliRunner().invoke(cli, ["traces", "observed", "--data-dir", data_dir, "--json"])
    assert listed.exit_code == 0, listed.output
    assert TRACE_ID in {t["trace_id"] for t in json.loads(listed.output)}
    store = open_store(store_url_for_data_dir(data_dir))
    try:
        summary = next(t for t in list_traces(store, "observed") if t["trace_id"] == TRACE_ID)
    finally:
        store.close()
    assert summary["root"] == "POST /orders" and summary["spans"] == len(spans)


def test_squall_trace_refuses_a_bad_or_unknown_id(served):
    _, data_dir = served
    bad = CliRunner().invoke(cli, ["trace", "nothex", "--data-dir", data_dir])
    assert bad.exit_code == 2 and "not a trace id" in bad.output
    unknown = CliRunner().invoke(cli, ["trace", "f" * 32, "--data-dir", data_dir])
    assert unknown.exit_code == 2 and "no trace" in unknown.output


def test_prometheus_endpoint(served):
    server, _ = served
    httpx.post(server.url + "/orders", json={"id": 8})
    wait_until(lambda: 'squall_invocations_total{function="send_email"' in
               httpx.get(server.url + "/metrics").text, 20, "send_email counted")
    text = httpx.get(server.url + "/metrics").text
    for family in ("squall_invocations_total", "squall_duration_seconds_bucket",
                   "squall_cold_starts_total", "squall_concurrent_executions",
                   "squall_queue_messages", "squall_dlq_messages",
                   "squall_queue_oldest_message_age_seconds", "squall_workflow_executions",
                   "squall_cost_usd_total"):
        assert family in text, family
    assert 'squall_workflow_executions{status="succeeded",workflow="fulfil"}' in text
    r = httpx.post(server.url + "/metrics")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"


def test_structured_logs_and_their_filters(served):
    server, data_dir = served
    httpx.post(server.url + "/orders", json={"id": 9})

    def logged(*args: str) -> list[dict]:
        r = CliRunner().invoke(cli, ["logs", "observed", *args, "--data-dir", data_dir,
                                     "--json", "--limit", "100"])
        assert r.exit_code == 0, r.output
        return [json.loads(line) for line in r.output.splitlines()]

    wait_until(lambda: any('"order": 9' in line for row in logged("send_email")
                           for line in row["logs"]), 20, "the email for order 9 logged")
    # squall.logger writes one JSON line with the invocation's context
    rows = logged("send_email", "--level", "warning")
    lines = [json.loads(line) for row in rows for line in row["logs"]]
    assert lines and all(line["level"] == "warning" for line in lines)  # prints filtered out
    mine = next(line for line in lines if line["order"] == 9)
    row = next(r for r in rows if any('"order": 9' in line for line in r["logs"]))
    assert mine["app"] == "observed" and mine["function"] == "send_email"
    assert mine["request_id"] == row["request_id"] and mine["retry_in_s"] == 5
    assert len(mine["trace_id"]) == 32 and isinstance(mine["cold"], bool)
    # --grep keeps matching lines (and their invocations); --since drops old invocations
    grepped = logged("--grep", r"email for order 9\b")
    assert [line for r in grepped for line in r["logs"]] == ["email for order 9"]
    assert logged("--since", "1s", "--grep", "never printed") == []
    bad = CliRunner().invoke(cli, ["logs", "observed", "--level", "loud", "--data-dir", data_dir])
    assert bad.exit_code == 2 and "--level" in bad.output
    bad = CliRunner().invoke(cli, ["logs", "observed", "--grep", "(", "--data-dir", data_dir])
    assert bad.exit_code == 2 and "regular expression" in bad.output


def test_logs_follow_prints_new_invocations_as_they_are_stored(served):
    import os
    import selectors
    import signal
    import subprocess
    import sys

    server, data_dir = served
    proc = subprocess.Popen(
        [sys.executable, "-c", "from squall.cli.main import main; main()", "logs", "observed",
         "send_email", "-f", "--json", "--limit", "1", "--grep", "order 4242",
         "--data-dir", data_dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # (whether the follower's first read sees it or a later one, it prints it once)
        httpx.post(server.url + "/orders", json={"id": 4242})
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=20), "no line from squall logs -f within 20 s"
        row = json.loads(proc.stdout.readline())
        assert row["function"] == "send_email" and row["logs"] == ["email for order 4242"]
    finally:
        os.kill(proc.pid, signal.SIGINT)  # Ctrl-C: it stops cleanly, exit code 0
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


STREAM_TRACE_ID = "5ce0e9a56015fec5aadfa328ae398115"


def test_a_stream_hop_keeps_the_trace(served):
    server, data_dir = served
    # Given a request, with a traceparent, whose function appends to a stream
    r = httpx.post(server.url + "/clicks", json={"user": "ada"},
                   headers={"traceparent": f"00-{STREAM_TRACE_ID}-b7ad6b7169203331-01"})
    assert r.status_code == 202, r.text

    # When the stream consumer has read the record
    def spans() -> list:
        store = open_store(store_url_for_data_dir(data_dir))
        try:
            return get_trace(store, STREAM_TRACE_ID)
        finally:
            store.close()

    wait_until(lambda: any(s.name == "count_clicks" for s in spans()), 20,
               "the stream consumer's invocation in the trace store")
    got = spans()

    # Then request, function, stream hop and consumer are ONE trace, each under its cause
    by_id = {s.span_id: s for s in got}
    gateway = next(s for s in got if s.name == "POST /clicks" and s.kind == "server")
    producer = next(s for s in got if s.name == "record_click" and s.kind == "internal")
    hop = next(s for s in got if s.name == "put_records clicks" and s.kind == "producer")
    consumer = next(s for s in got if s.name == "count_clicks" and s.kind == "internal")
    assert {s.trace_id for s in got} == {STREAM_TRACE_ID}
    assert by_id[producer.parent_id] is gateway
    assert by_id[hop.parent_id] is producer and hop.attributes["target"] == "clicks"
    assert by_id[consumer.parent_id] is hop
    assert consumer.status == "ok" and consumer.attributes["trigger"] == "event"
