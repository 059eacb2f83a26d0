"""The MQTT source against the real Mosquitto on 127.0.0.1:1883: messages become durable
events before they are acknowledged, unacknowledged ones come back after a reconnect,
and a shared subscription hands each message to one node."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from contextlib import asynccontextmanager

import aiomqtt
import pytest

from mqtt_fixtures import mqtt_url as reachable_mqtt_url
from mqtt_fixtures import publish
from squall import App, ConfigError
from squall.backends import mqtt as mqtt_client
from squall.sources.mqtt import BACKOFF, MqttSource
from squall.testing import TestClient
from squall.triggers import topic_matches


@pytest.fixture(scope="module")
def mqtt_url() -> str:
    return reachable_mqtt_url()


def make_app(prefix: str) -> App:
    app = App("iot")

    @app.on_mqtt(f"{prefix}/+/temperature", qos=1)
    def reading(event, ctx):
        print("reading", event["topic"], event["payload"], event["payload_encoding"])
        return event

    return app


async def connected(*sources: MqttSource) -> None:
    await asyncio.wait_for(asyncio.gather(*(s.connected.wait() for s in sources)), 10)


@pytest.fixture
def prefix() -> str:
    return f"squall-test/{uuid.uuid4().hex[:10]}"


def test_messages_become_durable_events_in_order(mqtt_url, prefix):
    with TestClient(make_app(prefix)) as client:
        ingress = client.start_sources(mqtt_url=mqtt_url)
        client.call(lambda: connected(ingress.mqtt))
        client.call(lambda: publish(mqtt_url, [
            (f"{prefix}/kitchen/temperature", b"21.5"),
            (f"{prefix}/attic/temperature", b"\xff\x00\x01"),
            (f"{prefix}/kitchen/humidity", b"40"),  # matches no function
            (f"{prefix}/hall/temperature", b"19"),
        ]))
        client.call(lambda: ingress.mqtt.wait_received(3))
        # acknowledged means durable: all three wait on the function's queue
        assert client.queue_stats("_async.reading").visible == 3
        assert client.invocations("reading") == []
        client.drain()
        events = [r.output for r in client.invocations("reading")]
    assert [(e["topic"].rsplit("/", 2)[1], e["payload"], e["payload_encoding"])
            for e in events] == [("kitchen", "21.5", "utf-8"), ("attic", "/wAB", "base64"),
                                 ("hall", "19", "utf-8")]
    first = events[0]
    assert first["qos"] == 1 and first["retain"] is False
    assert first["filter"] == f"{prefix}/+/temperature"
    assert first["received_at"].endswith("Z")


class FlakyBroker:
    """Squall's broker, refusing the first `fail` writes (a full disk, a lost database)."""

    def __init__(self, broker, fail: int) -> None:
        self.broker = broker
        self.fail = fail
        self.calls = 0

    async def send_many(self, batches):
        self.calls += 1
        if self.calls <= self.fail:
            raise OSError("the broker is unavailable")
        return await self.broker.send_many(batches)


def test_a_message_not_made_durable_is_not_acknowledged_and_comes_back(mqtt_url, prefix):
    app = make_app(prefix)
    with TestClient(app) as client:
        flaky = FlakyBroker(client.broker, fail=1)
        source = MqttSource(flaky, client.configs, url=mqtt_url,
                            client_id=f"squall-test-{uuid.uuid4().hex[:12]}",
                            rand=lambda: 0.0)  # reconnect at once
        client.call(source.start)
        try:
            client.call(lambda: connected(source))
            client.call(lambda: publish(mqtt_url, [(f"{prefix}/cellar/temperature", b"12")]))
            # the first write failed: no PUBACK, the connection dropped; Mosquitto kept the
            # message in the session and delivered it again after the reconnect
            client.call(lambda: source.wait_received(1))
        finally:
            client.call(source.stop)
        assert flaky.calls == 2
        assert client.drain().succeeded == 1
        assert "reading " + prefix + "/cellar/temperature 12" in client.logs("reading")


def test_reconnects_with_backoff(mqtt_url, prefix):
    attempts = []

    @asynccontextmanager
    async def flaky_connect(url, *, client_id):
        attempts.append(client_id)
        if len(attempts) < 3:
            raise aiomqtt.MqttError("connection refused")
        async with mqtt_client.connect(url, client_id=client_id) as conn:
            yield conn

    with TestClient(make_app(prefix)) as client:
        source = MqttSource(client.broker, client.configs, url=mqtt_url,
                            client_id=f"squall-test-{uuid.uuid4().hex[:12]}",
                            rand=lambda: 0.0, connect=flaky_connect)
        client.call(source.start)
        try:
            client.call(lambda: connected(source))
        finally:
            client.call(source.stop)
    assert len(attempts) == 3
    # full jitter over 0.5 s doubling, capped at 30 s
    assert [BACKOFF.delay(n, 1.0) for n in (1, 2, 3, 7, 8)] == [0.5, 1.0, 2.0, 30.0, 30.0]


def test_a_shared_subscription_hands_each_message_to_one_node(mqtt_url, prefix):
    with TestClient(make_app(prefix)) as client:
        nodes = [MqttSource(client.broker, client.configs, url=mqtt_url, shared=True,
                            client_id=f"squall-test-{uuid.uuid4().hex[:12]}")
                 for _ in range(2)]
        for node in nodes:
            client.call(node.start)
        try:
            client.call(lambda: connected(*nodes))
            client.call(lambda: publish(mqtt_url, [
                (f"{prefix}/room{i}/temperature", str(i).encode()) for i in range(20)]))

            async def all_received() -> None:  # whichever node gets the next one
                while sum(n.received for n in nodes) < 20:
                    waits = [asyncio.ensure_future(n.wait_received(n.received + 1))
                             for n in nodes]
                    done, pending = await asyncio.wait(waits, timeout=10,
                                                       return_when=asyncio.FIRST_COMPLETED)
                    for p in pending:
                        p.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    assert done, [n.received for n in nodes]

            client.call(all_received)
        finally:
            for node in nodes:
                client.call(node.stop)
        assert client.queue_stats("_async.reading").visible == 20  # once each, in total
        assert all(n.received > 0 for n in nodes), [n.received for n in nodes]
        client.drain()
        payloads = sorted(int(r.output["payload"]) for r in client.invocations("reading"))
    assert payloads == list(range(20))


def test_topic_filters():
    assert topic_matches("a/+/c", "a/b/c") and not topic_matches("a/+/c", "a/b/d")
    assert topic_matches("a/#", "a") and topic_matches("a/#", "a/b/c")
    assert not topic_matches("+/x", "$SYS/x") and topic_matches("$SYS/#", "$SYS/x")
    app = App("badiot")
    for topic, why in [("a/b#", "'#' must be the whole last level"),
                       ("a/#/c", "'#' must be the whole last level"),
                       ("a/b+/c", "'+' must be a whole level"),
                       ("$share/g/a", "give the plain filter"), ("", "non-empty")]:
        with pytest.raises(ConfigError, match=f"function 'f': topic .*{re.escape(why)}"):
            app.on_mqtt(topic, name="f")(lambda event, ctx: None)
    with pytest.raises(ConfigError, match="function 'f': qos must be 0 or 1"):
        app.on_mqtt("a", qos=2, name="f")(lambda event, ctx: None)


def test_the_event_is_json_with_the_documented_fields(mqtt_url, prefix):
    with TestClient(make_app(prefix)) as client:
        ingress = client.start_sources(mqtt_url=mqtt_url)
        client.call(lambda: connected(ingress.mqtt))
        client.call(lambda: publish(mqtt_url, [(f"{prefix}/x/temperature", b"{}")], qos=0))
        client.call(lambda: ingress.mqtt.wait_received(1))
        (msg,) = client.call(lambda: client.broker.peek("_async.reading", 10))
    assert set(json.loads(msg.body)) == {"topic", "payload", "payload_encoding", "qos",
                                         "retain", "filter", "received_at"}
