"""Asynchronous invocation (Lambda's Event type): durable, retried with backoff, then to a
destination or the dead-letter queue; deterministic with a fake clock."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from squall.sources.messaging import UnknownFunctionForAsync
from squall.testing import TestClient
from squall.testing.conformance import FakeClock

APP = str(Path(__file__).parent / "apps" / "asyncinv.py")


@pytest.fixture
def client():
    spec = importlib.util.spec_from_file_location("asyncinv_app", APP)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with TestClient(mod.app, clock=FakeClock()) as c:
        yield c


def test_success_goes_to_the_on_success_destination(client):
    rid = client.invoke_async("flaky", {"x": 1})
    assert rid
    client.drain()
    assert "flaky attempt 1 for {'x': 1}" in client.logs("flaky")
    client.drain()  # the destination (an async invoke of audit) runs next
    assert "audit Success {'done': {'x': 1}}" in client.logs("audit")


def test_retries_with_backoff_then_success(client):
    client.invoke_async("flaky", {"fail_times": 1})
    out = client.drain()
    assert out.retried == 1
    assert client.drain().succeeded == 0  # the retry waits for its backoff
    client.clock.advance(2.0)  # full jitter under 1 s * 2^0; 2 s is past any draw
    client.drain()
    assert client.logs("flaky").count("flaky attempt") == 2


def test_retries_exhausted_go_to_the_on_failure_destination(client):
    client.invoke_async("flaky", {"always_fail": True})
    for _ in range(3):
        client.drain()
        client.clock.advance(300)
    client.drain()
    assert client.logs("flaky").count("flaky attempt") == 3  # 1 + 2 retries
    assert "failure record RetriesExhausted 3 RuntimeError" in client.logs("failures")


def test_without_a_destination_failures_are_dead_lettered(client):
    client.invoke_async("no_destination", {"k": "v"})
    client.drain()
    client.clock.advance(300)
    client.drain()
    (dead,) = client.dead_letters("_async.no_destination-dlq")
    assert dead.dead_letter_reason == "RetriesExhausted" and dead.receive_count == 2
    assert dead.last_error == "ValueError: never works"


def test_too_old_events_are_not_run(client):
    client.invoke_async("flaky", {"old": True})
    client.clock.advance(6 * 3600 + 1)
    client.drain()
    assert "flaky attempt" not in client.logs("flaky")
    client.drain()
    assert "failure record EventAgeExceeded 1 None" in client.logs("failures")


def test_unknown_function(client):
    with pytest.raises(UnknownFunctionForAsync, match="no function 'nope'"):
        client.invoke_async("nope", {})


def test_invoke_async_from_a_worker():
    with TestClient(APP, isolated=True, clock=FakeClock()) as client:
        r = client.invoke("starter", {})
        assert r.ok, r.error_message
        client.drain()
        client.drain()
        assert "flaky attempt 1 for {'from': 'starter'}" in client.logs("flaky")
        assert "audit Success" in client.logs("audit")


def test_work_in_progress_elsewhere_does_not_use_up_the_retries(client):
    # Given a function with 1 retry whose key is held by another run for 5 attempts
    client.invoke_async("held_elsewhere", {"held_times": 5, "key": "held-1"})
    for _ in range(8):
        client.drain()
        client.clock.advance(300)
    # Then it is retried past its 2 attempts, and runs once the key is free
    assert client.logs("held_elsewhere").count("held attempt") == 6
    assert client.dead_letters("_async.held_elsewhere-dlq") == []


def test_in_progress_retries_are_bounded_and_wait_for_the_claim():
    from squall.config import QueueTrigger
    from squall.sources.queue import IN_PROGRESS_EXTRA_RECEIVES, retry_plan

    t = QueueTrigger(queue="q", max_receive=3)
    assert retry_plan(t, 3, "RuntimeError", 0.5) is None  # an ordinary failure: done
    assert retry_plan(t, 3, "IdempotencyInProgress", 0.0) >= 1.0  # waits at least 1 s
    assert retry_plan(t, 3 + IN_PROGRESS_EXTRA_RECEIVES, "IdempotencyInProgress", 0.5) is None
