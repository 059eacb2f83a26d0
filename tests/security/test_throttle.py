"""Throttling: token buckets per route, per API key (usage plans) and app-wide.

The bucket arithmetic is checked exactly on an injected clock; the real server is then
hit with a bounded burst over the limit: 429s with Retry-After, no 5xx, and every
request let through succeeds.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from squall import App
from squall.security import Throttle
from squall.security.throttle import Throttled, Throttles
from squall.testing import TestClient


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_admits_burst_then_exactly_the_rate():
    # Given rate 5/s and burst 5, When 1 request arrives every 10 ms for 10 s,
    # Then exactly 5 (burst) + 5 * 10 (refill) are admitted
    clock = FakeClock()
    t = Throttles(clock=clock)
    allowed = refused = 0
    for _ in range(1000):
        try:
            t.check("route:x", 5.0, 5)
            allowed += 1
        except Throttled as exc:
            refused += 1
            assert 0 < exc.retry_after_s <= 0.2 and exc.retry_after == 1
        clock.now += 0.01
    assert allowed in (54, 55)  # 5 + 50, give or take the refill landing on the last tick
    assert refused == 1000 - allowed
    snap = t.counters.snapshot()["route:x"]
    assert snap == {"allowed": allowed, "throttled": refused}


def test_retry_after_says_when_a_token_is_back():
    clock = FakeClock()
    t = Throttles(clock=clock)
    t.check("k", 0.1, 1)  # one request per 10 s
    with pytest.raises(Throttled) as info:
        t.check("k", 0.1, 1)
    assert info.value.retry_after == 10
    clock.now += 10
    t.check("k", 0.1, 1)


def test_daily_quota_resets_at_utc_midnight():
    wall = FakeClock()
    wall.now = 86400 * 100 + 86000.0  # 400 s before midnight UTC
    t = Throttles(clock=FakeClock(), wall=wall)
    for _ in range(3):
        t.quota("k1", 3)
    with pytest.raises(Throttled) as info:
        t.quota("k1", 3)
    assert info.value.retry_after == 400
    wall.now += 400
    t.quota("k1", 3)


def test_key_usage_plan_and_app_wide_limit_in_process():
    app = App("plans")
    app.gateway(throttle=Throttle(rate=0.01, burst=3))

    @app.http("GET", "/k", auth="api_key")
    def k(request):
        return {"key": request.authorizer["keyName"]}

    @app.http("GET", "/open")
    def open_(request):
        return "ok"

    from squall.security.keys import UsagePlan

    with TestClient(app) as client:
        # app-wide burst of 3 across all routes
        codes = [client.get("/open").status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        assert client.security.counters.snapshot()["app"] == {"allowed": 3, "throttled": 2}
    app2 = App("plans2")

    @app2.http("GET", "/k", auth="api_key")
    def k2(request):
        return {"key": request.authorizer["keyName"]}

    with TestClient(app2) as client:
        key, _ = client.security.keys.create("metered", UsagePlan(rate=0.001, burst=2,
                                                                   quota_per_day=100))
        quota_key, _ = client.security.keys.create("quota", UsagePlan(quota_per_day=2))
        got = [client.get("/k", headers={"x-api-key": key}) for _ in range(3)]
        assert [r.status_code for r in got] == [200, 200, 429]
        assert got[2].headers["retry-after"] and got[2].json()["code"] == "throttled"
        q = [client.get("/k", headers={"x-api-key": quota_key}) for _ in range(3)]
        assert [r.status_code for r in q] == [200, 200, 429]
        assert q[2].json()["code"] == "quota_exceeded"
        snap = client.security.counters.snapshot()
        assert snap[f"key:{_id(key)}"] == {"allowed": 2, "throttled": 1}
        assert snap[f"quota:{_id(quota_key)}"] == {"allowed": 2, "throttled": 1}


def _id(key: str) -> str:
    return key.split("_")[1]


def test_burst_over_the_limit_on_a_real_server(secure, http):
    # Given /limited at 5 requests/s with a burst of 5,
    # When 40 requests arrive at once (8 threads),
    # Then about burst + rate * elapsed succeed, the rest are 429 with Retry-After, no 5xx
    def call(_):
        r = http.get("/limited")
        return r.status_code, r.headers.get("retry-after"), r.json()

    time.sleep(1.0)  # a full bucket to start from (other tests may have used /limited)
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(40)))
    elapsed = time.monotonic() - t0
    ok = [r for r in results if r[0] == 200]
    limited = [r for r in results if r[0] == 429]
    assert len(ok) + len(limited) == 40, {r[0] for r in results}
    assert all(body == {"ok": True} for _, _, body in ok)
    assert all(ra is not None and int(ra) >= 1 and body["code"] == "throttled"
               for _, ra, body in limited)
    assert 5 <= len(ok) <= 5 + 5 * elapsed + 1, (len(ok), elapsed)
    # And the refusals are counted on /metrics
    metrics = http.get("/metrics").text
    throttled = [line for line in metrics.splitlines() if line.startswith(
        "squall_gateway_requests_total{") and 'outcome="throttled"' in line]
    assert throttled and sum(float(line.rsplit(" ", 1)[1]) for line in throttled) >= len(
        limited), metrics[-2000:]
    # And after the advertised Retry-After the route admits again, at the rate
    time.sleep(1.0)  # the refill under test is wall time on a real server
    assert http.get("/limited").status_code == 200


def test_a_function_slower_than_the_gateway_waits_gets_504():
    # Given a gateway request timeout shorter than the function's own timeout
    from squall.security import Limits

    app = App("slow")
    app.gateway(limits=Limits(request_timeout_s=0.2))
    release = __import__("threading").Event()

    @app.http("GET", "/slow", timeout_s=5)
    def slow(request):
        release.wait(5)
        return "late"

    with TestClient(app) as client:
        r = client.get("/slow")
        release.set()
    # Then the client gets 504 with a JSON body, not a hang
    assert r.status_code == 504 and r.json()["code"] == "timeout"


def test_throttle_counts_are_a_prometheus_collector():
    from prometheus_client import CollectorRegistry, generate_latest

    t = Throttles(clock=FakeClock())
    t.check("route:f", 1.0, 1)
    with pytest.raises(Throttled):
        t.check("route:f", 1.0, 1)
    registry = CollectorRegistry()
    registry.register(t.counters)
    text = generate_latest(registry).decode()
    assert 'squall_gateway_requests_total{outcome="allowed",scope="route:f"} 1.0' in text
    assert 'squall_gateway_requests_total{outcome="throttled",scope="route:f"} 1.0' in text
