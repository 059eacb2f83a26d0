"""Declared settings of the outside-world event sources (MQTT, email, webhooks) and of
least privilege (`uses=`): small frozen dataclasses, pure data.

A leaf like `events/patterns`: it imports nothing of squall. A bad value raises
`TriggerError(setting, problem)`; `squall.config` turns it into a `ConfigError` that names
the function.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any


class TriggerError(ValueError):
    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting} {problem}")
        self.setting = setting
        self.problem = problem


# -- MQTT ----------------------------------------------------------------------------------


def check_topic_filter(topic: Any) -> None:
    """MQTT 3.1.1 section 4.7: '+' takes a whole level, '#' only as the whole last level."""
    if not isinstance(topic, str) or not topic or len(topic.encode()) > 65535:
        raise TriggerError("topic", f"must be a non-empty MQTT topic filter, got {topic!r}")
    if "\x00" in topic:
        raise TriggerError("topic", f"{topic!r} contains a NUL character")
    if topic.startswith("$share/"):
        raise TriggerError("topic", f"{topic!r}: give the plain filter; Squall makes the "
                           "shared subscription itself in distributed mode")
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise TriggerError("topic", f"{topic!r}: '#' must be the whole last level")
        if "+" in level and level != "+":
            raise TriggerError("topic", f"{topic!r}: '+' must be a whole level")


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Does `topic` (a concrete topic name) match `topic_filter`? Topics starting with
    '$' are not matched by a leading wildcard (MQTT 3.1.1 section 4.7.2)."""
    f, t = topic_filter.split("/"), topic.split("/")
    if topic.startswith("$") and f[0] in ("+", "#"):
        return False
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t):
            return False
        if level != "+" and level != t[i]:
            return False
    return len(f) == len(t)


@dataclass(frozen=True, slots=True)
class MqttTrigger:
    """`@app.on_mqtt(topic, qos=1)`: every message on a matching topic, made durable
    before it is acknowledged to the MQTT broker, then delivered asynchronously."""

    topic: str
    qos: int = 1

    def check(self) -> None:
        check_topic_filter(self.topic)
        if self.qos not in (0, 1):
            raise TriggerError("qos", f"must be 0 or 1, got {self.qos!r} (QoS 2's "
                               "exactly-once handshake is not offered; QoS 1 + the function's "
                               "idempotency gives the same effect)")

    def to_manifest(self) -> dict[str, Any]:
        return {"topic": self.topic, "qos": self.qos}


# -- email -----------------------------------------------------------------------------------

_ADDRESS_RE = re.compile(r"^[^@\s]+@[^@\s]+$")


@dataclass(frozen=True, slots=True)
class EmailTrigger:
    """`@app.on_email(to=...)`: mail for these addresses (or glob patterns such as
    `*@support.example.com`, `orders+*@example.com`), received by Squall's SMTP server.
    Attachments are stored in `bucket`."""

    to: tuple[str, ...]
    bucket: str = "email"

    def check(self) -> None:
        if not self.to:
            raise TriggerError("to", "must name at least one address or pattern")
        for addr in self.to:
            if not isinstance(addr, str) or not _ADDRESS_RE.fullmatch(addr):
                raise TriggerError("to", f"{addr!r} is not an address or pattern like "
                                   "'support@example.com' or '*@example.com'")

    def matches(self, address: str) -> bool:
        address = address.lower()
        return any(fnmatch.fnmatchcase(address, pattern.lower()) for pattern in self.to)

    def to_manifest(self) -> dict[str, Any]:
        return {"to": list(self.to), "bucket": self.bucket}

    @classmethod
    def from_manifest(cls, data: dict[str, Any]) -> EmailTrigger:
        return cls(tuple(data["to"]), data.get("bucket", "email"))


# -- webhooks ------------------------------------------------------------------------------

VERIFIERS = ("github", "stripe", "slack", "hmac-sha256")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_RE = re.compile(r"^[A-Za-z0-9-]+$")


@dataclass(frozen=True, slots=True)
class WebhookTrigger:
    """`@app.webhook(path, verify=..., secret_env=...)`: a signed POST, verified, made
    durable and answered 202 before the function runs."""

    path: str
    verify: str
    secret_env: str
    tolerance_s: float = 300.0  # stripe and slack: how old a signed timestamp may be
    header: str = "X-Signature-256"  # hmac-sha256: where the signature is

    def check(self) -> None:
        if self.verify not in VERIFIERS:
            raise TriggerError("verify", f"must be one of {', '.join(VERIFIERS)}, got "
                               f"{self.verify!r}")
        if not isinstance(self.secret_env, str) or not _ENV_RE.fullmatch(self.secret_env):
            raise TriggerError("secret_env", "must name an environment variable, got "
                               f"{self.secret_env!r}")
        if (isinstance(self.tolerance_s, bool) or not isinstance(self.tolerance_s, (int, float))
                or not 1 <= self.tolerance_s <= 3600):
            raise TriggerError("tolerance_s", f"must be seconds from 1 to 3600, got "
                               f"{self.tolerance_s!r}")
        if not isinstance(self.header, str) or not _HEADER_RE.fullmatch(self.header):
            raise TriggerError("header", f"must be an HTTP header name, got {self.header!r}")

    def to_manifest(self) -> dict[str, Any]:
        return {"path": self.path, "verify": self.verify, "secret_env": self.secret_env,
                "tolerance_s": self.tolerance_s, "header": self.header}


# -- least privilege ---------------------------------------------------------------------------

# What a grant may say, and the kinds of resource each applies to.
ACTIONS = {
    "read": ("table", "bucket", "cache"),
    "write": ("table", "bucket", "cache", "stream"),
    "send": ("queue",),
    "publish": ("topic", "bus"),
    "invoke": ("function",),
}
RESOURCE_KINDS = ("table", "bucket", "cache", "queue", "stream", "topic", "function", "bus")
_RESOURCE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")

Grant = tuple[str, tuple[str, ...]]  # (resource, actions): "orders" or "table:orders"


def parse_uses(uses: Any) -> tuple[Grant, ...]:
    """`{"orders": "read", "uploads": ["read", "write"], "queue:emails": "send"}` ->
    sorted ((resource, (actions...)), ...). A resource is a name, or `kind:name` where a
    name is used by resources of two kinds."""
    if not isinstance(uses, dict):
        raise TriggerError("uses", f"must be a dict of resource name to action(s), got "
                           f"{type(uses).__name__}")
    out = []
    for resource, actions in uses.items():
        if not isinstance(resource, str):
            raise TriggerError("uses", f"keys must be resource names, got {resource!r}")
        kind, sep, name = resource.partition(":")
        if sep and kind not in RESOURCE_KINDS:
            raise TriggerError("uses", f"{resource!r}: the kind before ':' must be one of "
                               f"{', '.join(RESOURCE_KINDS)}")
        if not _RESOURCE_RE.fullmatch(name if sep else resource):
            raise TriggerError("uses", f"{resource!r} is not a resource name")
        if isinstance(actions, str):
            actions = [a.strip() for a in actions.split(",")]
        if not isinstance(actions, (list, tuple, set, frozenset)) or not actions:
            raise TriggerError("uses", f"{resource!r}: give an action or a list of actions "
                               f"({', '.join(ACTIONS)}), got {actions!r}")
        for a in actions:
            if a not in ACTIONS:
                raise TriggerError("uses", f"{resource!r}: unknown action {a!r}; actions are "
                                   f"{', '.join(ACTIONS)}")
            if sep and kind not in ACTIONS[a]:
                raise TriggerError("uses", f"{resource!r}: a {kind} cannot be granted {a!r}")
        out.append((resource, tuple(sorted(set(actions)))))
    return tuple(sorted(out))


def grants(uses: tuple[Grant, ...], kind: str, name: str, action: str) -> bool:
    """Does this `uses` allow `action` on the `kind` resource `name`?"""
    for resource, actions in uses:
        if action in actions and resource in (name, f"{kind}:{name}"):
            return True
    return False


def uses_to_manifest(uses: tuple[Grant, ...] | None) -> dict[str, list[str]] | None:
    return None if uses is None else {r: list(a) for r, a in uses}


__all__ = ["ACTIONS", "EmailTrigger", "MqttTrigger", "RESOURCE_KINDS", "TriggerError",
           "VERIFIERS", "WebhookTrigger", "check_topic_filter", "grants", "parse_uses",
           "topic_matches", "uses_to_manifest"]
