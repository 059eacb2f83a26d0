"""Outside-world event sources on `App`: MQTT topics, inbound email, signed webhooks; and
the check of `uses=` (least privilege) against what the app declares.

A mixin of `App`; like the rest of the registry it only records. Each source makes an
ordinary asynchronous function (kind "function"): the supervisor's receivers
(squall.sources.mqtt, .email, .webhooks) make every message durable on the function's
async queue first, and the function runs from there with its retries and DLQ.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from .config import ConfigError, Route
from .triggers import EmailTrigger, MqttTrigger, WebhookTrigger
from .types import Handler


class DeclaresSources:
    name: str
    functions: dict[str, Any]
    buckets: dict[str, Any]
    _config: Any
    _add: Any
    _check_route_free: Any
    bucket: Any

    def on_mqtt(self, topic: str, *, qos: int = 1, name: str | None = None,
                format: str = "native", **settings: Any) -> Callable[[Handler], Handler]:
        """Run the function for every MQTT message on a topic matching `topic` (`+` one
        level, `#` the rest): `handler(event, ctx)` with `{"topic", "payload",
        "payload_encoding", "qos", "retain", "received_at"}`. A QoS 1 message is made
        durable before it is acknowledged to the MQTT broker (at least once)."""

        def register(handler: Handler) -> Handler:
            fname = name or getattr(handler, "__name__", None) or "handler"
            cfg = self._config(fname, "function", format, settings, ())
            self._add(fname, replace(cfg, mqtt=MqttTrigger(topic, qos)), handler)
            return handler

        return register

    def on_email(self, to: str | list[str] | tuple[str, ...], *, bucket: str = "email",
                 name: str | None = None, format: str = "native",
                 **settings: Any) -> Callable[[Handler], Handler]:
        """Run the function for every email to `to` (an address, a glob pattern such as
        `*@example.com`, or a list), received by the SMTP server `squall dev/run` start.
        Attachments are stored in `bucket` (declared here if the app has not) and the
        event refers to them by key."""

        def register(handler: Handler) -> Handler:
            fname = name or getattr(handler, "__name__", None) or "handler"
            addresses = (to,) if isinstance(to, str) else tuple(to)
            if bucket not in self.buckets:
                self.bucket(bucket)
            cfg = self._config(fname, "function", format, settings, ())
            self._add(fname, replace(cfg, email=EmailTrigger(addresses, bucket)), handler)
            return handler

        return register

    def webhook(self, path: str, *, verify: str, secret_env: str, method: str = "POST",
                tolerance_s: float = 300.0, header: str = "X-Signature-256",
                name: str | None = None, format: str = "native",
                **settings: Any) -> Callable[[Handler], Handler]:
        """Receive signed webhooks on `method path`: the signature (`verify="github"`,
        `"stripe"`, `"slack"` or `"hmac-sha256"` in `header`) is checked in constant time
        with the secret in the environment variable `secret_env`; a bad one gets 401 and
        nothing else happens; a good one is made durable and answered 202, then the
        function runs with `{"path", "headers", "body", "json", ...}`."""

        def register(handler: Handler) -> Handler:
            fname = name or getattr(handler, "__name__", None) or "handler"
            route = Route(method.upper() if isinstance(method, str) else method, path)
            cfg = self._config(fname, "function", format, settings, (route,))
            self._check_route_free(fname, route)
            trigger = WebhookTrigger(path, verify, secret_env, tolerance_s, header)
            self._add(fname, replace(cfg, webhook=trigger), handler)
            return handler

        return register


def resources(app: Any) -> dict[str, set[str]]:
    """Every resource the app declares, by kind: what `uses=` may name."""
    queues: set[str] = set()
    streams: set[str] = set()
    for f in app.functions.values():
        c = f.config
        if c.queue is not None:
            queues |= {c.queue.queue, c.queue.dead_letter_queue}
        if c.stream is not None:
            streams.add(c.stream.stream)
        for dest in (c.on_success, c.on_failure):
            if dest and dest.startswith("queue:"):
                queues.add(dest.partition(":")[2])
    for s in app.subscriptions:
        if s.target.startswith("queue:"):
            queues.add(s.target.partition(":")[2])
    for r in app.rules.values():
        queues |= {t.partition(":")[2] for t in r.targets if t.startswith("queue:")}
    return {"table": set(app.tables), "bucket": set(app.buckets), "cache": set(app.caches),
            "queue": queues, "stream": streams,
            "topic": {s.topic for s in app.subscriptions}, "function": set(app.functions),
            "bus": {"bus"}}


def check_uses(app: Any) -> None:
    """Every name in every `uses=` must be something the app declares (checked when the
    app is loaded: resources may be declared after the functions using them)."""
    declared = None
    for f in app.functions.values():
        for resource, _ in f.config.uses or ():
            declared = declared or resources(app)
            kind, sep, rname = resource.partition(":")
            kinds = [kind] if sep else list(declared)
            if not any((rname if sep else resource) in declared[k] for k in kinds):
                known = sorted({n for k in kinds for n in declared[k]})
                raise ConfigError(
                    f"function {f.name!r}: uses names {resource!r}, which app {app.name!r} "
                    f"does not declare; it has: {', '.join(known) or 'nothing'}")
