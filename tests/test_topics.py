"""Topics: fan-out to every matching subscription (functions and queues), SNS filter
policies on attributes and on the body, SNS message shapes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from squall import App, ConfigError
from squall.events import topic as topic_events
from squall.sources.messaging import UnknownQueue
from squall.testing import TestClient
from squall.testing.conformance import FakeClock

APP = str(Path(__file__).parent / "apps" / "topics.py")


@pytest.fixture
def client():
    spec = importlib.util.spec_from_file_location("topics_app", APP)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with TestClient(mod.app, clock=FakeClock()) as c:
        yield c


def test_fan_out_honours_filter_policies(client):
    client.notify("orders", {"id": 1, "country": "DE"}, subject="new",
                  attributes={"kind": "retail", "total": 150})
    client.notify("orders", {"id": 2, "country": "FR"}, attributes={"kind": "retail", "total": 50})
    client.notify("orders", {"id": 3, "country": "DK"}, attributes={"kind": "test", "total": 500})
    client.drain()
    assert client.logs("big_retail").strip().splitlines() == ["big retail 1 retail new"]
    assert client.logs("every_order").count("every") == 3
    assert "arn:aws:sns:local:000000000000:orders" in client.logs("every_order")
    assert sorted(client.logs("body_filtered").split()) == ["DE", "DK", "body", "body"]
    copies = client.logs("copies")
    assert copies.count("copy Notification") == 2 and '"id": 3' not in copies
    assert client.logs("raw_copies").count("raw {") == 3


def test_notify_from_a_function_and_unknown_topics(client):
    r = client.invoke("notifier", {"id": 9, "total": 120, "country": "NL"})
    assert r.ok, r.error_message
    client.drain()
    assert "big retail 9" in client.logs("big_retail")
    with pytest.raises(UnknownQueue, match="no topic named 'nope'"):
        client.notify("nope", {})


def test_sns_shapes_match_aws_samples(conformance_dir):
    sample = json.loads((conformance_dir / "lambda-go-events/events/testdata/sns-event.json")
                        .read_text())["Records"][0]
    note = topic_events.notification("t", "m1", {"a": 1}, "subj", {"k": "v", "n": 3}, when=0.0)
    ours = topic_events.lambda_event(note, "sub")["Records"][0]
    assert set(ours) == set(sample)
    assert set(ours["Sns"]) == set(sample["Sns"])
    assert ours["Sns"]["MessageAttributes"]["n"] == {"Type": "Number", "Value": "3"}
    assert set(ours["Sns"]["MessageAttributes"]["k"]) == {"Type", "Value"}


def test_bad_subscriptions_fail_at_import():
    app = App("badtopics")
    with pytest.raises(ConfigError, match="invalid filter policy"):
        app.subscribe("t", filter_policy={"kind": "not-a-list"}, name="f")(lambda e, c: None)
    with pytest.raises(ConfigError, match="filter_scope"):
        app.subscribe_queue("t", "q", filter_scope="Body")
    app.subscribe_queue("t", "q")
    with pytest.raises(ConfigError, match="already subscribed"):
        app.subscribe_queue("t", "q")


def _sns_rejected_policies(conformance_dir):
    """Policies AWS SNS rejected, read from the recorded error messages (localstack's
    AWS-validated snapshot quotes the policy it refused)."""
    import re

    data = json.loads((conformance_dir / "localstack/tests/aws/services/sns/"
                       "test_sns_filter_policy.snapshot.json").read_text())
    out = []

    def walk(node):
        if isinstance(node, dict):
            err = node.get("Error")
            if isinstance(err, dict) and "Message" in err:
                m = re.search(r'\(String\)"(.*)"; line', err["Message"], re.S)
                if m:
                    try:
                        out.append((json.loads(m.group(1).replace('\\"', '"')),
                                    err["Message"].split("Reason: ")[-1].split("\n")[0]))
                    except ValueError:
                        pass
            for v in node.values():
                walk(v)

    walk(data)
    return out


def test_every_policy_sns_rejected_is_rejected(conformance_dir):
    cases = _sns_rejected_policies(conformance_dir)
    assert len(cases) >= 30
    for policy, aws_reason in cases:
        with pytest.raises(topic_events.InvalidFilterPolicy):
            topic_events.validate_filter_policy(policy, "MessageAttributes")
        del aws_reason


def test_sns_policy_limits():
    ok = {"a": ["1"], "b": ["2"], "c": ["3"], "d": ["4"], "e": ["5"]}
    topic_events.validate_filter_policy(ok, "MessageAttributes")
    with pytest.raises(topic_events.InvalidFilterPolicy, match="more than 5 keys"):
        topic_events.validate_filter_policy({**ok, "f": ["6"]}, "MessageAttributes")
    with pytest.raises(topic_events.InvalidFilterPolicy, match="too complex"):
        topic_events.validate_filter_policy(
            {"a": [str(i) for i in range(13)], "b": [str(i) for i in range(12)]},
            "MessageAttributes")
    with pytest.raises(topic_events.InvalidFilterPolicy, match="does not support nested"):
        topic_events.validate_filter_policy({"a": {"b": ["c"]}}, "MessageAttributes")
    topic_events.validate_filter_policy({"a": {"b": ["c"]}}, "MessageBody")
