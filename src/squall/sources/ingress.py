"""The receivers for events from outside: MQTT and SMTP, started by the supervisor when
the app declares `@app.on_mqtt` or `@app.on_email` functions (webhooks arrive through
the HTTP gateway: squall.sources.webhooks).

Settings come from options (`--mqtt`, `--smtp-port`) or the environment:

    SQUALL_MQTT_URL        mqtt://127.0.0.1:1883   (mqtts://, user:password@ allowed)
    SQUALL_MQTT_CLIENT_ID  squall-<app>[-<node>]   (the persistent session's name)
    SQUALL_SMTP_HOST       127.0.0.1
    SQUALL_SMTP_PORT       2525
    SQUALL_SMTP_MAX_BYTES  10485760                (larger mail: 552)
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..backends.mqtt import DEFAULT_URL, MqttUrlError, parse_url
from .email import DEFAULT_MAX_BYTES, EmailReceiver
from .mqtt import MqttSource

_CLIENT_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class IngressConfigError(ValueError):
    pass


@dataclass(frozen=True)
class IngressSettings:
    mqtt_url: str = DEFAULT_URL
    mqtt_client_id: str | None = None
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_max_bytes: int = DEFAULT_MAX_BYTES
    shared: bool = False  # distributed mode: MQTT shared subscriptions across nodes

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **given: Any) -> IngressSettings:
        """Options given (not None) win over the environment, which wins over defaults."""
        env = {"mqtt_url": "SQUALL_MQTT_URL", "mqtt_client_id": "SQUALL_MQTT_CLIENT_ID",
               "smtp_host": "SQUALL_SMTP_HOST", "smtp_port": "SQUALL_SMTP_PORT",
               "smtp_max_bytes": "SQUALL_SMTP_MAX_BYTES"}
        values: dict[str, Any] = {}
        for field, var in env.items():
            if given.get(field) is not None:
                values[field] = given[field]
            elif environ.get(var):
                values[field] = environ[var]
        for field in ("smtp_port", "smtp_max_bytes"):
            if field in values:
                try:
                    values[field] = int(values[field])
                except ValueError:
                    raise IngressConfigError(f"{env[field]} must be a whole number, got "
                                             f"{values[field]!r}") from None
        if not 0 <= values.get("smtp_port", 2525) <= 65535:
            raise IngressConfigError(f"the SMTP port must be from 0 to 65535, got "
                                     f"{values['smtp_port']}")
        if values.get("smtp_max_bytes", 1) < 1:
            raise IngressConfigError("SQUALL_SMTP_MAX_BYTES must be at least 1")
        if given.get("shared") is not None:
            values["shared"] = bool(given["shared"])
        try:
            parse_url(values.get("mqtt_url", DEFAULT_URL))
        except MqttUrlError as exc:
            raise IngressConfigError(str(exc)) from None
        return cls(**values)


class Ingress:
    """MQTT subscriber and SMTP server of one running app."""

    def __init__(self, broker: Any, state: Any, configs: dict[str, Any],
                 settings: IngressSettings, *, app: str, node_id: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.broker = broker
        self.state = state
        self.settings = settings
        self.clock = clock
        client_id = settings.mqtt_client_id or _CLIENT_ID_UNSAFE.sub(
            "-", f"squall-{app}" + (f"-{node_id}" if settings.shared and node_id else ""))
        self.mqtt = MqttSource(broker, configs, url=settings.mqtt_url,
                               client_id=client_id[:128], shared=settings.shared, clock=clock)
        self.smtp: EmailReceiver | None = None
        self.configs = configs

    def _wants_smtp(self, configs: dict[str, Any]) -> bool:
        return any(c.email is not None for c in configs.values())

    async def start(self) -> None:
        self.mqtt.start()
        if self._wants_smtp(self.configs):
            await self._start_smtp()

    async def reconfigure(self, configs: dict[str, Any]) -> None:
        """Hot reload: new subscriptions, recipients and buckets; the SMTP port stays."""
        self.configs = configs
        await self.mqtt.stop()
        self.mqtt.configure(configs)
        self.mqtt.start()
        if self.smtp is not None:
            self.smtp.configure(configs)
            if not self._wants_smtp(configs):
                await self.smtp.stop()
                self.smtp = None
        elif self._wants_smtp(configs):
            await self._start_smtp()

    async def _start_smtp(self) -> None:
        smtp = EmailReceiver(self.broker, self.state, self.configs,
                             host=self.settings.smtp_host, port=self.settings.smtp_port,
                             max_bytes=self.settings.smtp_max_bytes, clock=self.clock)
        try:
            await smtp.start()
        except OSError as exc:
            raise OSError(exc.errno, f"cannot receive email on {self.settings.smtp_host}:"
                          f"{self.settings.smtp_port} ({exc.strerror or exc}); choose another "
                          "port with --smtp-port or SQUALL_SMTP_PORT") from None
        self.smtp = smtp

    async def stop(self) -> None:
        await self.mqtt.stop()
        if self.smtp is not None:
            await self.smtp.stop()
            self.smtp = None


__all__ = ["Ingress", "IngressConfigError", "IngressSettings"]
