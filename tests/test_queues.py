"""Queues through squall.testing: at-least-once delivery, load levelling, partial batch
failures, backoff, dead-letter queues, AWS SQS shape; deterministic with a fake clock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from squall.backends.broker import MessageTooLarge
from squall.sources.messaging import UnknownQueue
from squall.testing import TestClient
from squall.testing.conformance import FakeClock

APP = str(Path(__file__).parent / "apps" / "queues.py")


@pytest.fixture
def client():
    import importlib.util

    spec = importlib.util.spec_from_file_location("queues_app", APP)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with TestClient(mod.app, clock=FakeClock()) as c:
        yield c


def test_http_202_then_drain_processes(client):
    r = client.post("/orders", json={"n": 1})
    assert r.status_code == 202
    mid = r.json()["messageId"]
    assert client.queue_stats("orders").visible == 1
    outcome = client.drain()
    assert outcome.succeeded == 1
    assert "order 1 attempt 1" in client.logs("handle_orders")
    assert client.queue_stats("orders").total == 0
    assert mid


def test_partial_failure_retries_only_failed_items_then_dead_letters(client):
    # Given a batch with one poison message among good ones
    for n in range(4):
        client.send("orders", {"n": n})
    poison = client.send("orders", {"poison": True})
    # When drained, Then the good ones succeed and only the poison one is retried
    out = client.drain()
    assert (out.succeeded, out.retried, out.dead_lettered) == (4, 1, 0)
    assert client.logs("handle_orders").count("attempt 1") == 4
    # its retry waits for the backoff (base 2 s, no jitter): nothing runs before that
    assert client.drain().succeeded == 0 and client.queue_stats("orders").delayed == 1
    client.clock.advance(2.01)
    assert client.drain().retried == 1  # attempt 2, then backoff 4 s
    client.clock.advance(4.01)
    out = client.drain()
    assert out.dead_lettered == 1  # attempt 3 = max_receive
    (dead,) = client.dead_letters("orders")
    assert dead.message_id == poison and dead.receive_count == 3
    assert dead.dead_letter_reason == "max_receive" and dead.source_queue == "orders"
    assert "partial batch failure" in dead.last_error
    assert dead.trace and dead.trace.startswith("00-")  # a W3C traceparent, kept to the DLQ
    assert json.loads(dead.body) == {"poison": True}
    assert client.queue_stats("orders").total == 0


def test_a_raising_handler_fails_the_whole_batch_with_its_error(client):
    client.send("explodes", {"a": 1})
    client.send("explodes", {"a": 2})
    assert client.drain().retried == 2
    client.clock.advance(1.01)
    assert client.drain().dead_lettered == 2
    dead = client.dead_letters("explodes")
    assert len(dead) == 2
    assert all(d.last_error == "ValueError: cannot handle 2 messages" for d in dead)


def test_aws_sqs_format_and_batch_item_failures(client):
    client.send("aws-orders", {"ok": 1}, attributes={"origin": "test"})
    client.send("aws-orders", {"bad": 1})
    out = client.drain()
    assert (out.succeeded, out.retried) == (1, 1)
    assert 'sqs {"ok": 1} 1' in client.logs("sqs_handler")


def test_sqs_event_shape_matches_aws_sample(conformance_dir):
    from squall.events.queue import sqs_event

    sample = json.loads((conformance_dir / "lambda-go-events/events/testdata/sqs-event.json")
                        .read_text())["Records"][0]
    ours = sqs_event({"queue": "q", "messages": [
        {"id": "m1", "body": "hi", "attributes": {"a": "b"}, "receive_count": 2,
         "sent_at": 1520621625.029}]})["Records"][0]
    assert set(ours) | {"md5OfMessageAttributes"} == set(sample)
    assert set(ours["attributes"]) == set(sample["attributes"])
    assert ours["attributes"]["ApproximateReceiveCount"] == "2"
    assert ours["attributes"]["SentTimestamp"] == "1520621625029"
    assert ours["messageAttributes"]["a"]["dataType"] == "String"
    assert set(ours["messageAttributes"]["a"]) == set(sample["messageAttributes"]["Attribute1"])
    for key in ours:
        assert type(ours[key]) is type(sample[key]), key


def test_max_age_dead_letters_without_running(client):
    client.send("ageing", {"fresh": False})
    client.clock.advance(61)
    client.send("ageing", {"fresh": True})
    out = client.drain()
    assert (out.succeeded, out.dead_lettered) == (1, 1)
    (dead,) = client.dead_letters("ageing")
    assert dead.dead_letter_reason == "max_age"
    assert "aged ok [{'fresh': True}]" in client.logs("ageing")


def test_deduplication_by_key(client):
    a = client.send("orders", {"n": 7}, dedup_key="order-7")
    b = client.send("orders", {"n": 7}, dedup_key="order-7")
    assert a == b and client.queue_stats("orders").visible == 1


def test_delay_seconds(client):
    client.send("orders", {"n": 8}, delay_s=30)
    assert client.drain().succeeded == 0
    client.clock.advance(30.01)
    assert client.drain().succeeded == 1


def test_bulk_send_from_a_function(client):
    r = client.invoke("fan_out", {"count": 25})
    assert r.ok and len(r.output) == 25
    assert client.drain().succeeded == 25  # 5 batches of 5


def test_size_limit_and_unknown_queue(client):
    with pytest.raises(MessageTooLarge, match="over the 1048576-byte limit"):
        client.send("orders", {"blob": "x" * (1024 * 1024)})
    with pytest.raises(UnknownQueue, match="no queue named 'nope'"):
        client.send("nope", {})
    r = client.post("/orders", json={"blob": "x" * (1024 * 1024)})
    assert r.status_code == 502 and r.json()["errorType"] == "MessageTooLarge"


def test_isolated_workers_send_through_the_supervisor():
    with TestClient(APP, isolated=True, clock=FakeClock()) as client:
        r = client.post("/orders", json={"n": 42})
        assert r.status_code == 202
        r2 = client.invoke("fan_out", {"count": 3})
        assert r2.ok, r2.error_message
        assert client.drain().succeeded == 4
        assert "order 42 attempt 1" in client.logs("handle_orders")


def test_a_queue_message_is_a_cloudevent(client):
    from squall.events.envelope import to_json
    from squall.events.queue import QueueMessage

    m = QueueMessage(id="m1", body='{"a": 1}', queue="orders", sent_at=1_750_000_000.0,
                     trace="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    ce = to_json(m.cloudevent)
    assert ce["specversion"] == "1.0" and ce["id"] == "m1"
    assert ce["source"] == "/squall/queues/orders" and ce["type"] == "squall.queue.message"
    assert ce["data"] == {"a": 1} and ce["traceparent"].startswith("00-aaa")
    assert ce["time"].startswith("2025-06-15T")
