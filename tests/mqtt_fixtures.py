"""The Mosquitto the MQTT tests run against: 127.0.0.1:1883 (started by .ci/services), or
SQUALL_TEST_MQTT_URL. Unreachable: the tests skip saying how to start it, except under
CI=true where that is a failure."""

from __future__ import annotations

import os
import socket

import aiomqtt
import pytest

from squall.backends import mqtt as mqtt_client

URL = os.environ.get("SQUALL_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")


def mqtt_url() -> str:
    target = mqtt_client.parse_url(URL)
    try:
        socket.create_connection((target.host, target.port), timeout=2).close()
    except OSError as exc:
        message = (f"Mosquitto is not reachable at {URL} ({exc}): start it with "
                   "`mosquitto -d -c /etc/mosquitto/mosquitto.conf`, or point "
                   "SQUALL_TEST_MQTT_URL at one")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return URL


async def publish(url: str, messages: list[tuple[str, bytes]], qos: int = 1) -> None:
    """Publish as an outside device would, with its own client."""
    target = mqtt_client.parse_url(url)
    async with aiomqtt.Client(target.host, target.port) as pub:
        for topic, payload in messages:
            await pub.publish(topic, payload, qos=qos)
