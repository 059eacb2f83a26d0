"""The runtime through its public entry point (an isolated TestClient): zygote-forked
workers, cold vs warm accounting, timeouts, memory limits, crash recovery, concurrency,
provisioned and reaped workers, nested invoke, output capture."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from squall.testing import TestClient

APP = str(Path(__file__).parent / "apps" / "basic.py")


@pytest.fixture(scope="module")
def client():
    with TestClient(APP, isolated=True) as c:
        yield c


def pool(client, name):
    return client.runtime.pools[name]


def test_user_code_runs_in_forked_workers_not_in_the_supervisor(client):
    r = client.invoke("whoami", {})
    assert r.ok, r.error_message
    out = r.output
    assert out["pid"] != os.getpid()
    assert out["imported_in"] != os.getpid()  # the module was imported in the zygote
    assert out["imported_in"] != out["pid"]  # ... and the worker is a fork of it
    assert out["imported_in"] == client.runtime.zygote.proc.pid


def test_cold_then_warm_accounting(client):
    first = client.invoke("echo", {"n": 1})
    second = client.invoke("echo", {"n": 2})
    assert first.ok and second.ok
    assert first.cold is True and first.output["cold"] is True
    assert first.init_ms is not None and 0 < first.init_ms < 1000
    assert "Init Duration:" in first.report_line()
    assert second.cold is False and second.init_ms is None
    assert "Init Duration" not in second.report_line()
    assert second.output["pid"] == first.output["pid"]  # the warm worker was reused
    for r in (first, second):
        assert r.billed_ms >= 1 and r.billed_ms >= r.duration_ms
        assert r.billed_ms == max(1, -(-r.duration_ms // 1))
        assert r.memory_mb == 128
        assert 1 <= r.max_memory_mb < 128
        assert r.started_at == pytest.approx(time.time(), abs=60)
    line = second.report_line()
    assert line.startswith(f"REPORT RequestId: {second.request_id}\tDuration: ")
    assert "Billed Duration: " in line and "Memory Size: 128 MB" in line
    assert "Max Memory Used: " in line


def test_context_settings_and_environment(client):
    r = client.invoke("configured", {})
    out = r.output
    assert out["request_id"] == out["aws_request_id"] == r.request_id
    assert out["function_name"] == "configured"
    assert out["memory_limit_in_mb"] == "512"  # a string, as in AWS's Python runtime
    assert 0 < out["remaining_ms"] <= 7000
    assert out["env"] == {"GREETING": "hi", "AWS_LAMBDA_FUNCTION_NAME": "configured",
                          "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512"}
    assert out["arn"].endswith(":function:configured")
    assert out["log_group_name"] == "/aws/lambda/configured"
    assert r.memory_mb == 512


def test_timeout_kills_the_worker_and_says_so(client):
    t0 = time.monotonic()
    r = client.invoke("sleepy", {"s": 10})
    elapsed = time.monotonic() - t0
    assert not r.ok and r.status == "timeout"
    assert r.error_message.endswith("Task timed out after 0.50 seconds")
    assert 0.45 < elapsed < 3.0
    assert 480 <= r.duration_ms < 2000
    assert "going to sleep" in r.logs  # output written before the kill is kept
    # the pool recovers: a short sleep now succeeds on a fresh worker
    ok = client.invoke("sleepy", {"s": 0.01})
    assert ok.ok and ok.output == "woke"


def test_handler_exception_is_a_function_error_and_the_worker_survives(client):
    r = client.invoke("fails", {})
    assert not r.ok and r.status == "error"
    assert r.error_type == "KeyError" and "missing thing" in r.error_message
    assert any("in fails" in frame for frame in r.stack_trace)
    payload = r.error_payload()
    assert payload["errorType"] == "KeyError" and payload["requestId"] == r.request_id
    again = client.invoke("fails", {})
    assert again.cold is False  # same warm worker


@pytest.mark.parametrize("function, how", [
    ("exits", "exit status 7"),
    ("segfaults", "signal: segmentation fault"),
    ("sys_exit", "exit status 4"),
])
def test_crashes_are_reported_and_the_pool_recovers(client, function, how):
    r = client.invoke(function, {})
    assert not r.ok
    assert how in r.error_message, r.error_message
    assert r.request_id in r.error_message
    assert r.error_type in ("Runtime.ExitError",)
    # the next call gets a fresh worker and fails the same way, not hangs
    again = client.invoke(function, {})
    assert not again.ok and how in again.error_message
    assert client.invoke("echo", {}).ok


def test_memory_limit_fast_allocation(client):
    r = client.invoke("hog_fast", {"mb": 300})
    assert not r.ok and r.status == "memory"
    assert r.error_type == "Runtime.OutOfMemory"
    assert "memory limit of 128 MB" in r.error_message
    assert r.max_memory_mb >= 128
    small = client.invoke("hog_fast", {"mb": 10})
    assert small.ok and small.output == 10 * 1024 * 1024


def test_memory_limit_growing_allocation_is_stopped_while_running(client):
    t0 = time.monotonic()
    r = client.invoke("hog_slow", {})
    assert not r.ok and r.status == "memory", (r.status, r.error_message)
    assert time.monotonic() - t0 < 10  # stopped long before 400 x 4 MB
    assert r.max_memory_mb >= 128


def test_nested_invoke_from_a_function(client):
    r = client.invoke("caller", {})
    assert r.ok, r.error_message
    assert r.output["inner"]["event"] == {"from": "caller"}
    assert r.output["inner"]["pid"] != r.output["outer_pid"]
    failing = client.invoke("caller_of_failure", {})
    assert failing.ok and "KeyError" in failing.output["caught"]


def test_async_handler(client):
    r = client.invoke("async_fn", {"n": 21})
    assert r.ok and r.output == {"async": True, "n": 42}


def test_unserialisable_result_is_a_marshal_error(client):
    r = client.invoke("not_json", {})
    assert not r.ok and r.error_type == "Runtime.MarshalError"


def test_output_capture_per_invocation(client):
    r = client.invoke("chatty", {})
    assert r.ok
    for text in ("to stdout", "to stderr", "a warning from logging", "raw fd write"):
        assert text in r.logs
    assert f"[WARNING]" in r.logs and r.request_id in r.logs  # Lambda-style log line
    second = client.invoke("chatty", {})
    assert second.logs.count("to stdout") == 1  # each invocation gets only its own output


def test_concurrency_limit_throttles_after_the_wait_bound(client):
    results = []

    def call():
        results.append(client.invoke("single", {"s": 0.6}))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    statuses = sorted(r.status for r in results)
    assert statuses == ["ok", "throttled", "throttled"], statuses
    throttled = [r for r in results if r.status == "throttled"]
    assert all(r.error_type == "TooManyRequestsException" for r in throttled)
    assert all("concurrency limit (1)" in r.error_message for r in throttled)
    assert len(pool(client, "single").workers) <= 1


def test_concurrency_limit_queues_within_the_wait_bound(client):
    results = []

    def call():
        results.append(client.invoke("single_patient", {"s": 0.2}))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert [r.status for r in results] == ["ok"] * 3
    assert len({r.output for r in results}) == 1  # one worker served them in turn


def test_provisioned_workers_are_warm_before_the_first_call(client):
    p = pool(client, "provisioned")
    assert len(p.workers) == 2
    client.call(lambda: _until(lambda: all(w.ready for w in p.workers)))
    r = client.invoke("provisioned", {})
    assert r.ok and r.cold is False and r.init_ms is None
    pids = {w.pid for w in p.workers}
    assert r.output in pids


def test_idle_workers_are_reaped_after_keep_warm(client):
    r = client.invoke("short_lived", {})
    assert r.ok
    p = pool(client, "short_lived")
    assert len(p.workers) == 1
    client.call(lambda: _until(lambda: not p.workers, timeout=5))
    again = client.invoke("short_lived", {})
    assert again.cold is True and again.output != r.output


def test_many_concurrent_calls_each_get_their_own_answer(client):
    async def burst():
        import asyncio
        import json

        rt = client.runtime
        results = await asyncio.gather(*[
            rt.invoke("echo", "event", json.dumps({"i": i})) for i in range(300)
        ])
        return [r.output["event"]["i"] for r in results], [r.ok for r in results]

    got, oks = client.call(burst)
    assert got == list(range(300)) and all(oks)
    # a fast function is pipelined onto few workers rather than one fork per request
    assert len(pool(client, "echo").workers) <= 64


def test_unknown_function(client):
    from squall.runtime.runtime import UnknownFunction

    with pytest.raises(UnknownFunction, match="has no function 'nope'"):
        client.invoke("nope", {})


async def _until(predicate, timeout=5.0):
    import asyncio

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def test_a_dead_zygote_is_replaced_on_the_next_cold_start(client):
    import signal

    old = client.runtime.zygote.proc.pid
    # Given the zygote dies (and with it, by PDEATHSIG, every worker it forked)
    os.kill(old, signal.SIGKILL)
    client.call(lambda: _until(lambda: not pool(client, "echo").workers))
    # When a call needs a new worker, Then a new zygote is started and the call succeeds
    r = client.invoke("echo", {"after": "restart"})
    assert r.ok, r.error_message
    assert r.cold is True and r.output["event"] == {"after": "restart"}
    assert client.runtime.zygote.proc.pid != old
