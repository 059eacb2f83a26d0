"""The event bus: EventBridge rules and patterns, several targets per rule, input
transformation, archive and replay."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from squall import App, ConfigError
from squall.testing import TestClient
from squall.testing.conformance import FakeClock

APP = str(Path(__file__).parent / "apps" / "busapp.py")


@pytest.fixture
def client():
    spec = importlib.util.spec_from_file_location("busapp_app", APP)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with TestClient(mod.app, clock=FakeClock()) as c:
        yield c


def test_a_matching_event_reaches_every_matching_rule(client):
    r = client.post("/orders", json={"id": 7, "total": 250, "country": "DE"})
    assert r.status_code == 201
    client.drain()
    assert "charge 7 OrderCreated None" in client.logs("charge")
    assert "big order {'id': 7, 'total': 250, 'country': 'DE'}" in client.logs("big_order")
    assert "german {'order': 7, 'where': 'in DE', 'rule': 'german-orders'}" in client.logs("german")
    assert "audit OrderCreated 7" in client.logs("audit")
    assert f"count {r.json()['event']}" in client.logs("count")


def test_non_matching_rules_see_nothing(client):
    client.publish("shop.orders", "OrderCreated", {"id": 8, "total": 5, "country": "FR"})
    client.publish("billing", "Invoice", {"id": 9})
    client.drain()
    assert "charge 8" in client.logs("charge")
    assert client.logs("big_order") == "" and client.logs("german") == ""
    assert "9" not in client.logs("charge") and "audit Invoice" not in client.logs("audit")


def test_event_shape_matches_eventbridge(client, conformance_dir):
    sample = json.loads((conformance_dir / "powertools-events/tests/events/eventBridgeEvent.json")
                        .read_text())
    from squall.events.bus import make_event

    ours = make_event("src", "Type", {"a": 1}, resources=["arn:x"])
    assert set(ours) == set(sample) - {"replay-name"}  # only replayed events carry it
    for k in ours:
        assert type(ours[k]) is type(sample[k]), k


def test_archive_and_replay_a_time_range(client):
    client.publish("shop.orders", "OrderCreated", {"id": 1, "total": 1, "country": "FR"})
    t_mid = client.clock()
    client.clock.advance(60)
    client.publish("shop.orders", "OrderCreated", {"id": 2, "total": 1, "country": "FR"})
    client.drain()
    assert client.logs("charge").count("charge") == 2
    # replay only the second minute, only into the charge rule
    n = client.replay(t_mid + 30, t_mid + 120, rule="charge-rule")
    assert n == 1
    client.drain()
    assert "charge 2 OrderCreated replay" in client.logs("charge")
    assert client.logs("charge").count("charge 1") == 1


def test_invalid_declarations_fail_at_import():
    app = App("badbus")
    with pytest.raises(ConfigError, match="function 'h': invalid event pattern"):
        app.on_event(pattern={"source": "not-a-list"}, name="h")(lambda e, c: None)
    assert "h" not in app.functions  # nothing half-registered
    with pytest.raises(ConfigError, match="rule 'r': target 'lambda:x'"):
        app.rule("r", {"source": ["a"]}, targets=["lambda:x"])
    with pytest.raises(ConfigError, match="is not a JSON path"):
        app.on_event(source=["a"], input_path="detail.x", name="g")(lambda e, c: None)
    with pytest.raises(ConfigError, match="needs a pattern"):
        app.on_event(name="k")(lambda e, c: None)


def test_publish_from_a_worker_and_bus_destination():
    with TestClient(APP, isolated=True, clock=FakeClock()) as client:
        r = client.post("/orders", json={"id": 11, "total": 500, "country": "DK"})
        assert r.status_code == 201, r.text
        client.drain()
        assert "charge 11" in client.logs("charge")
        assert "german {'order': 11" in client.logs("german")
