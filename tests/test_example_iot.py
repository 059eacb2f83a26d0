"""examples/iot: a simulator publishes readings to the real Mosquitto (127.0.0.1:1883);
the app validates and enriches them onto an ordered stream, aggregates 1-minute windows
with trends, flags outliers, archives to object storage under a lifecycle policy, and
serves a live page."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import uuid
from pathlib import Path

import pytest

from mqtt_fixtures import mqtt_url as reachable_mqtt_url
from squall.testing import TestClient
from squall.testing.conformance import FakeClock

APP = Path(__file__).resolve().parents[1] / "examples" / "iot"
START = 1_790_000_040.0  # a minute boundary (epoch seconds)


@pytest.fixture
def prefix(monkeypatch):
    prefix = f"squall-test/{uuid.uuid4().hex[:10]}"  # the broker is shared: our own topics
    monkeypatch.setenv("IOT_TOPIC_PREFIX", prefix)
    return prefix


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def iot(prefix):
    return load(APP / "app.py", "iot_example")  # reads IOT_TOPIC_PREFIX at import


@pytest.fixture
def client(iot):
    with TestClient(iot.app, clock=FakeClock()) as c:
        yield c


@pytest.fixture
def simulator():
    return load(APP / "iot_simulator.py", "iot_simulator")


def deliver(client, topic: str, payload: bytes) -> None:
    """What the MQTT source hands the function, without the broker."""
    client.invoke("ingest", {"topic": topic, "payload": payload.decode(), "qos": 1,
                             "payload_encoding": "utf-8", "retain": False,
                             "received_at": "2026-11-28T12:00:00Z"}, check=True)


def test_readings_over_mqtt_become_windows_anomalies_and_archives(client, iot, prefix,
                                                                 simulator):
    url = reachable_mqtt_url()
    # Given the app subscribed, and a simulator with 3 sensors x 24 readings 5 s apart
    # (2 minutes), the 20th reading of each sensor a +15 degree spike
    ingress = client.start_sources(mqtt_url=url)
    client.call(lambda: asyncio.wait_for(ingress.mqtt.connected.wait(), 10))
    messages = simulator.readings(24, prefix=prefix, start=START, spike_every=20)
    bad = [(f"{prefix}/s1/readings", b"{not json"),
           (f"{prefix}/s9/readings", json.dumps({"sensor": "s9", "temperature": 20,
                                                  "humidity": 40, "ts": START}).encode())]
    # When it publishes them over MQTT
    client.call(lambda: simulator.publish(url, messages + bad))
    client.call(lambda: ingress.mqtt.wait_received(len(messages) + len(bad)), 30)
    client.drain()
    # Then every good reading was accepted onto the stream, the bad ones kept with a reason
    assert len(client.invocations("ingest")) == 74
    live = client.get("/api/live").json()
    assert sorted(r["reason"] for r in live["rejected"]) == [
        "the payload is not JSON", "unknown sensor 's9'"]
    # two 1-minute windows per sensor, 12 readings each; averages near each baseline
    for sensor, base in simulator.SENSORS.items():
        ws = sorted(live["windows"][sensor], key=lambda w: w["start"])
        assert [w["start"] for w in ws] == [START, START + 60]
        assert [w["count"] for w in ws] == [12, 12]
        assert abs(ws[0]["average"] - base) < 1.0
        assert ws[0]["trend"] == "new" and ws[1]["trend"] in ("rising", "falling", "steady")
    # exactly the spikes are anomalies
    assert sorted((a["sensor"], a["ts"]) for a in live["anomalies"]) == [
        (s, START + 20 * 5) for s in ("s1", "s2", "s3")]
    assert {r["sensor"]: r["site"] for r in live["latest"]} == {
        "s1": "lab", "s2": "lab", "s3": "office"}
    # the archive holds every accepted reading once, as JSON lines
    archive = iot.archive
    lines = [json.loads(line) for info in archive.list_all("raw/")
             for line in archive.get(info.key).text().splitlines()]
    assert len(lines) == 72 and len({(r["sensor"], r["ts"]) for r in lines}) == 72
    assert lines[0]["site"] in ("lab", "office") and "received_at" in lines[0]


def test_the_archive_goes_cold_then_expires(client, iot):
    # Given an archived batch
    deliver(client, "squall-iot/s1/readings", json.dumps(
        {"sensor": "s1", "temperature": 21.0, "humidity": 40, "ts": START}).encode())
    client.drain()
    assert client.storage_usage()["archive"]["standard"]["objects"] == 1
    # When 8 days pass, it moves to the archive tier; after 91 it is gone
    client.clock.advance(8 * 86400)
    client.sweep()
    usage = client.storage_usage()["archive"]
    assert usage["archive"]["objects"] == 1 and usage["standard"]["objects"] == 0
    client.clock.advance(83 * 86400)
    client.sweep()
    assert sum(t["objects"] for t in client.storage_usage()["archive"].values()) == 0


@pytest.mark.parametrize("topic, payload, reason", [
    ("squall-iot/s1/readings", {"sensor": "s1", "temperature": 300, "humidity": 40, "ts": 1},
     "temperature must be a number from -40.0 to 85.0, got 300"),
    ("squall-iot/s1/readings", {"sensor": "s1", "temperature": 20, "humidity": "wet", "ts": 1},
     "humidity must be a number"),
    ("squall-iot/s2/readings", {"sensor": "s1", "temperature": 20, "humidity": 40, "ts": 1},
     "published on another sensor's topic"),
    ("squall-iot/s1/readings", [1, 2], "must be a JSON object"),
    ("squall-iot/s1/readings", {"sensor": "s1", "temperature": 20, "humidity": 40},
     "ts must be"),
])
def test_invalid_readings_are_kept_with_the_reason(client, topic, payload, reason):
    deliver(client, topic, json.dumps(payload).encode())
    client.drain()
    (got,) = client.get("/api/live").json()["rejected"]
    assert reason in got["reason"]
    assert client.invocations("aggregate") == []


def test_the_live_page_polls_the_json_route(client):
    page = client.get("/live")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'fetch("api/live")' in page.text and "setTimeout(poll, 2000)" in page.text
    assert set(client.get("/api/live").json()) == {"now", "latest", "windows", "anomalies",
                                                   "rejected"}
