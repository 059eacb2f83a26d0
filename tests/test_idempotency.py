"""@app.idempotent: once per key across retries, stored results, in-progress claims,
key reuse with other arguments."""

from __future__ import annotations

import pytest

from squall import App
from squall.idempotency import IdempotencyInProgress, IdempotencyKeyMismatch
from squall.testing import TestClient
from squall.testing.conformance import FakeClock

app = App("idem")
RUNS: list[str] = []


@app.idempotent(key=lambda order_id, amount: order_id, expires_s=600)
def charge(order_id, amount):
    RUNS.append(order_id)
    return {"charged": amount, "order": order_id}


@app.idempotent
def by_payload(x):
    RUNS.append(f"payload-{x}")
    return x * 2


@app.idempotent(key="order_id")
def failing(order_id):
    RUNS.append(f"fail-{order_id}")
    raise RuntimeError("card declined")


@app.function()
def pay(event, ctx):
    return charge(event["order"], event["amount"])


@app.queue("payments", max_receive=5)
def payments(batch, ctx):
    for m in batch:
        charge(m.data["order"], m.data["amount"])


@app.function()
def retry_failing(event, ctx):
    try:
        failing(event["order"])
    except RuntimeError:
        return "failed"


@pytest.fixture
def client():
    RUNS.clear()
    with TestClient(app, clock=FakeClock()) as c:
        yield c


def test_second_call_returns_the_stored_result_without_running(client):
    a = client.invoke("pay", {"order": "o1", "amount": 10})
    b = client.invoke("pay", {"order": "o1", "amount": 10})
    assert a.output == b.output == {"charged": 10, "order": "o1"}
    assert RUNS == ["o1"]


def test_redelivered_messages_run_the_body_once(client):
    for _ in range(3):
        client.send("payments", {"order": "o2", "amount": 5})
    client.drain()
    assert RUNS == ["o2"]


def test_reusing_a_key_with_other_arguments_is_an_error(client):
    client.invoke("pay", {"order": "o3", "amount": 10})
    r = client.invoke("pay", {"order": "o3", "amount": 99})
    assert not r.ok and r.error_type == "IdempotencyKeyMismatch"


def test_a_failed_run_releases_the_key(client):
    assert client.invoke("retry_failing", {"order": "o4"}).output == "failed"
    assert client.invoke("retry_failing", {"order": "o4"}).output == "failed"
    assert RUNS == ["fail-o4", "fail-o4"]


def test_records_expire(client):
    client.invoke("pay", {"order": "o5", "amount": 1})
    client.clock.advance(601)
    client.invoke("pay", {"order": "o5", "amount": 1})
    assert RUNS == ["o5", "o5"]


def test_in_progress_claims_block_a_concurrent_repeat(client):
    # Given a run that claimed the key and is still working (or died holding the claim)
    full_key, payload_hash, _ = charge.key_for("o6", 1)
    assert app._invoker.idempotency("begin", [full_key, payload_hash, 60])[0] == "new"
    # When a repeat arrives, Then it is told to retry later, and the body does not run
    with pytest.raises(IdempotencyInProgress, match="'o6' is being processed"):
        charge("o6", 1)
    assert RUNS == []
    # and once the claim's lock expires, a retry takes over
    client.clock.advance(61)
    assert charge("o6", 1) == {"charged": 1, "order": "o6"}
    assert RUNS == ["o6"]


def test_default_key_is_the_payload(client):
    assert by_payload(3) == 6 and by_payload(3) == 6 and by_payload(4) == 8
    assert RUNS == ["payload-3", "payload-4"]


def test_a_claim_never_outlasts_the_invocation_that_took_it(tmp_path):
    # Given an idempotent step with a long lock, inside a function that times out in 1 s
    # (the real runtime: the worker is killed at its deadline, still holding the claim)
    import time

    from squall.testing import FunctionFailed

    app_file = tmp_path / "hang.py"
    app_file.write_text(
        "import os, time\n"
        "from squall import App\n"
        "app = App('hang')\n"
        "@app.idempotent(key='k', lock_s=3600)\n"
        "def step(k, marker):\n"
        "    if not os.path.exists(marker):  # the first run hangs past its timeout\n"
        "        open(marker, 'w').close()\n"
        "        time.sleep(60)\n"
        "    return 'done'\n"
        "@app.function(timeout_s=1)\n"
        "def run(event, ctx):\n"
        "    return step('order-1', event['marker'])\n")
    marker = str(tmp_path / "ran-once")
    with TestClient(str(app_file), isolated=True) as c:
        with pytest.raises(FunctionFailed, match="timed out"):
            c.invoke("run", {"marker": marker}, check=True)
        # When the retry comes right after the timeout
        t0 = time.monotonic()
        # Then it takes the key over within the kill margin, not an hour later
        while (r := c.invoke("run", {"marker": marker})).error_type == "IdempotencyInProgress":
            assert time.monotonic() - t0 < 3, "the dead run's claim outlived its timeout"
            time.sleep(0.1)
        assert r.ok and r.output == "done"
