"""The MQTT client behind `@app.on_mqtt` (aiomqtt over paho-mqtt, MQTT 5).

The only module that imports an MQTT library. What it gives the source above it
(squall.sources.mqtt):

* a persistent session (clean start off, a session expiry), so QoS 1 messages that
  arrive while Squall is down, or that it received but never acknowledged, are delivered
  again when it reconnects;
* **manual acknowledgement**: paho sends PUBACK only when `MqttMessage.ack()` is called,
  which the source does after the message is durable on Squall's broker. aiomqtt has no
  public switch for this; it is set on its paho client (`Client._client`), and `connect`
  fails loudly if that ever disappears rather than silently acknowledging on receipt;
* subscription identifiers, so a message is routed to exactly the subscriptions it
  matched even when topic filters overlap;
* retain handling 1: retained messages are sent when a subscription is new, not again on
  every reconnect of the same session.
"""

from __future__ import annotations

import ssl
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator
from urllib.parse import unquote, urlsplit

try:
    import aiomqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions
except ImportError as exc:  # pragma: no cover - aiomqtt is a dependency
    raise ImportError("MQTT sources need aiomqtt: pip install 'aiomqtt>=2.5'") from exc

MqttError = aiomqtt.MqttError
DEFAULT_URL = "mqtt://127.0.0.1:1883"


class MqttUrlError(ValueError):
    pass


@dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def parse_url(url: str) -> MqttTarget:
    """mqtt://[user[:password]@]host[:port] (1883), or mqtts://… (8883, TLS)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise MqttUrlError(f"MQTT URL {url!r} must look like mqtt://host:1883 or "
                           "mqtts://host:8883")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise MqttUrlError(f"MQTT URL {url!r} has a bad port") from None
    return MqttTarget(parts.hostname, port, tls,
                      unquote(parts.username) if parts.username else None,
                      unquote(parts.password) if parts.password else None)


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


@dataclass
class MqttMessage:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    subscription_ids: tuple[int, ...]
    _client: Any
    _mid: int

    def ack(self) -> None:
        """PUBACK now (QoS 1); QoS 0 has nothing to acknowledge."""
        if self.qos > 0:
            self._client.ack(self._mid, self.qos)


class MqttConnection:
    def __init__(self, client: Any) -> None:
        self._client = client

    async def subscribe(self, topic_filter: str, qos: int, subscription_id: int) -> None:
        props = Properties(PacketTypes.SUBSCRIBE)
        props.SubscriptionIdentifier = subscription_id
        result = await self._client.subscribe(
            topic_filter, options=SubscribeOptions(qos=qos, retainHandling=1),
            properties=props)
        for code in result:
            value = getattr(code, "value", code)
            if value >= 0x80:
                raise aiomqtt.MqttError(f"the MQTT broker refused the subscription to "
                                        f"{topic_filter!r}: {code}")

    async def messages(self) -> AsyncIterator[MqttMessage]:
        paho = self._client._client
        async for m in self._client.messages:
            ids = getattr(m.properties, "SubscriptionIdentifier", None) if m.properties else None
            payload = m.payload if isinstance(m.payload, (bytes, bytearray)) else (
                str(m.payload).encode() if m.payload is not None else b"")
            yield MqttMessage(str(m.topic), bytes(payload), m.qos, bool(m.retain),
                              tuple(ids or ()), paho, m.mid)


@asynccontextmanager
async def connect(url: str, *, client_id: str, session_expiry_s: int = 3600,
                  timeout_s: float = 10.0) -> AsyncIterator[MqttConnection]:
    """A connected client with a persistent session and manual acknowledgements."""
    target = parse_url(url)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry_s
    client = aiomqtt.Client(
        target.host, target.port, identifier=client_id, username=target.username,
        password=target.password, protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
        properties=props, timeout=timeout_s,
        tls_context=ssl.create_default_context() if target.tls else None)
    paho = getattr(client, "_client", None)
    if paho is None or not hasattr(paho, "manual_ack_set") or not hasattr(paho, "ack"):
        raise RuntimeError("this aiomqtt/paho-mqtt offers no manual acknowledgement; Squall "
                           "will not acknowledge MQTT messages before they are durable")
    paho.manual_ack_set(True)
    async with client:
        yield MqttConnection(client)


__all__ = ["DEFAULT_URL", "MqttConnection", "MqttError", "MqttMessage", "MqttUrlError",
           "connect", "parse_url", "redact"]
