"""State through the real runtime: forked workers reach tables, the cache and buckets
with CALL frames; errors come back as their own classes; the service knows which
function calls (where least privilege will be enforced)."""

from __future__ import annotations

from pathlib import Path

import pytest

from squall.testing import TestClient

APP = str(Path(__file__).parent / "apps" / "state_app.py")


@pytest.fixture(scope="module")
def client():
    with TestClient(APP, isolated=True) as c:
        yield c


def test_workers_use_state_and_see_state_errors_as_themselves(client):
    calls = []
    service = client.state
    original = service.authorize
    service.authorize = lambda caller, kind, resource, action: calls.append(
        (caller, kind, resource, action))
    try:
        assert client.invoke("place", {"id": "w1"}, check=True).output == {"version": 1}
        dup = client.invoke("place", {"id": "w1"}, check=True).output
        # ConditionFailed was raised in the supervisor and caught in the worker by class
        assert "expected version 0, found version 2" in dup["duplicate"]
        out = client.invoke("store", {"key": "in/w.txt", "text": "worker"}, check=True).output
        assert out["head"] == "wo" and out["size"] == 6
        r = client.invoke("bad_key", {"key": "/abs"})
        assert r.error_type == "InvalidKey" and "absolute path" in r.error_message
        assert client.invoke("visits", {"user": "z"}).output == 1
    finally:
        service.authorize = original
    # every call passed the one entry point with the caller's name, as the pool knows it
    assert ("place", "table", "orders", "write") in calls
    assert ("store", "bucket", "uploads", "read") in calls
    assert ("visits", "cache", "sessions", "write") in calls
    assert {c[0] for c in calls} == {"place", "store", "bad_key", "visits"}


def test_change_streams_and_object_events_run_in_workers(client):
    client.invoke("place", {"id": "w2"}, check=True)
    client.invoke("store", {"key": "in/x.txt", "text": "x"}, check=True)
    client.drain()
    assert "change insert w2" in client.logs("audit")
    assert "ddb INSERT w2" in client.logs("ddb")
    assert "object created in/x.txt 1 Put" in client.logs("on_text")
    assert "s3 ObjectCreated:Put in/x.txt" in client.logs("s3")
