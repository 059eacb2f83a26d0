"""The lines a `squall server` echoes for the apps it hosts (failed invocations and
their output, as `squall run` does) carry the request id and the trace id, so a line on
the server's console leads to `squall logs` and `squall trace`."""

from __future__ import annotations

import io
import json

import pytest
from platform_fixtures import RunningPlatform, venv_cache, write_app

from squall.observe import logs

FAILING = """
from squall import App

app = App("noisy")

@app.http("GET", "/fail")
def fail(request):
    print("about to fail")
    raise RuntimeError("it went wrong")
"""

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def plat(tmp_path, tmp_path_factory):
    with RunningPlatform(tmp_path / "data", venv_cache(tmp_path_factory)) as p:
        yield p


def test_echoed_lines_of_a_hosted_app_carry_trace_and_request_ids(plat, tmp_path):
    # Given an app on the platform whose function prints, then fails
    r = plat.deploy("noisy", write_app(tmp_path / "noisy", FAILING))
    assert r.status_code == 201, r.text
    captured = io.StringIO()
    logs.setup("info", stream=captured)
    try:
        # When a request with a W3C traceparent reaches it
        with plat.client() as c:
            resp = c.get("/noisy/fail", headers={
                "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
        assert resp.status_code == 502, resp.text
        rid = resp.headers["x-request-id"]
        # (the echo happens when the result is recorded, before the answer is sent)
        lines = [json.loads(x) for x in captured.getvalue().splitlines() if x.startswith("{")]
    finally:
        logs.setup("warning")
    # Then the server's structured lines for it name the request and the trace
    mine = [x for x in lines if x.get("request_id") == rid]
    output = [x for x in mine if x["msg"] == "function output"]
    summary = [x for x in mine if x["msg"] == "invocation"]
    assert any(x["line"] == "about to fail" for x in output), lines
    assert len(summary) == 1 and summary[0]["status"] == "error", lines
    assert summary[0]["app"] == "noisy" and summary[0]["function"] == "fail"
    for x in output + summary:
        assert x["trace_id"] == TRACE_ID, x
