"""The dashboard's JSON API: the same answers as the CLI's read functions, and a clear
4xx JSON error for every bad request."""

from __future__ import annotations

import httpx
import pytest

API = "/_squall/api/dashboard/"


def get(shop, path: str) -> httpx.Response:
    return shop.http.get(API + path)


def post(shop, path: str, body: object = None, **headers: str) -> httpx.Response:
    return shop.http.post(API + path, json=body, headers={"x-squall-dashboard": "1", **headers})


def test_page_and_assets_are_served(shop):
    page = shop.http.get("/_squall/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'src="assets/app.js"' in page.text  # relative: works under any mount prefix
    assert shop.http.get("/_squall/assets/app.js").status_code == 200
    assert shop.http.get("/_squall/health").json() == {"status": "ok"}  # admin routes first


def test_figures_match_the_invocation_log(shop):
    rows = {f["name"]: f for f in get(shop, "functions?window=1h").json()["functions"]}
    assert rows["create_order"]["invocations"] >= 5
    assert rows["create_order"]["trigger"] == "POST /orders"
    assert rows["send_email"]["errors"] >= 1
    assert rows["nightly_report"]["invocations"] == 0
    assert rows["nightly_report"]["p99Ms"] is None
    assert sum(rows["create_order"]["series"]) == rows["create_order"]["invocations"]


def test_schedules_and_workflows_answer_as_the_cli_does(shop):
    (sched,) = get(shop, "schedules?count=2").json()["schedules"]
    assert sched["function"] == "nightly_report" and len(sched["next"]) == 2
    assert sched["next"][0].endswith(":00:00Z")
    ex = get(shop, "workflows").json()["executions"][0]
    doc = get(shop, f"workflows/{ex['id']}").json()
    assert [e["type"] for e in doc["history"]][0] == "WorkflowStarted"
    assert doc["status"] == "succeeded"


@pytest.mark.parametrize("path, status, code, words", [
    ("invocations?limit=0", 400, "bad_request", "limit must be from 1 to 1000"),
    ("invocations?limit=x", 400, "bad_request", "whole number"),
    ("invocations?function=nope", 404, "not_found", "no function 'nope'"),
    ("functions?window=2y", 400, "bad_request", "window must be one of"),
    ("queues?window=2y", 400, "bad_request", "window must be one of"),
    ("queues/nope/dead-letters", 404, "not_found", "no queue named 'nope'"),
    ("workflows/nope", 404, "not_found", "no workflow execution 'nope'"),
    ("traces/0123", 404, "not_found", "no trace '0123'"),
    ("costs?by=week", 400, "bad_request", "by must be hour or day"),
    ("bus?hours=0", 400, "bad_request", "hours must be from 1"),
    ("nowhere", 404, "not_found", "no dashboard page or API"),
])
def test_bad_reads_are_4xx_json(shop, path, status, code, words):
    r = get(shop, path)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code and words in r.json()["message"]


def test_bad_actions_are_4xx_json(shop):
    r = shop.http.post(API + "queues/emails/redrive", json={})  # no action header
    assert r.status_code == 403 and "x-squall-dashboard" in r.json()["message"]
    r = post(shop, "queues/emails/redrive", {"ids": ["not-there"]})
    assert r.status_code == 404 and "no dead letter with id not-there" in r.json()["message"]
    r = post(shop, "queues/emails/redrive", {"ids": "abc"})
    assert r.status_code == 400 and "ids must be a list" in r.json()["message"]
    r = shop.http.post(API + "bus/replay", content=b"{nope",
                       headers={"x-squall-dashboard": "1"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    r = post(shop, "bus/replay", {"from": 100, "to": 50})
    assert r.status_code == 400 and "must be after its start" in r.json()["message"]
    r = post(shop, "bus/replay", {"from": 1, "to": 2, "rule": "nope"})
    assert r.status_code == 404 and "no rule named 'nope'" in r.json()["message"]
    r = post(shop, "bus/replay", {"to": 2})
    assert r.status_code == 400 and '"from" and "to"' in r.json()["message"]


def test_costs_use_the_prices_squall_costs_uses(shop, monkeypatch):
    d = get(shop, "costs?by=hour").json()
    assert d["requests"] >= 5 and d["usd"] > 0
    assert sum(sum(b["functions"].values()) for b in d["chart"]) == pytest.approx(d["usd"])
    monkeypatch.setenv("SQUALL_PRICE_REQUESTS", "0")
    monkeypatch.setenv("SQUALL_PRICE_GB_S", "0")
    assert get(shop, "costs?by=day").json()["usd"] == 0
    assert all(f["costUsd"] == 0 for f in get(shop, "functions").json()["functions"])
    monkeypatch.setenv("SQUALL_PRICE_GB_S", "cheap")
    r = get(shop, "costs")
    assert r.status_code == 503 and "SQUALL_PRICE_GB_S='cheap' is not a number" in r.json()[
        "message"]


def test_queue_depth_over_time_comes_from_the_sampled_gauges(shop):
    import time

    from squall.backends import open_store

    # Given the server's own samples (one at start) and one stored ten minutes ago
    store = open_store(shop.sup.opts.store)
    try:
        store.record_gauges([("shop", "queue_visible", "emails", time.time() - 660, 4.0)])
    finally:
        store.close()
    # When the queues page reads its hour
    (q,) = [q for q in get(shop, "queues?window=1h").json()["queues"] if q["queue"] == "emails"]
    # Then the depth line has the sample in its bucket (2 minutes each) and the server's
    series = q["depthSeries"]
    assert len(series) == 30 and series[24] == 4.0, series
    assert series[29] is not None or series[28] is not None  # sampled by the server
