"""Declared settings: small frozen dataclasses, validated when they are made.

Pure data, no I/O. A bad setting raises `ConfigError` naming the function and the
setting at decoration time, i.e. when the user's module is imported.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .triggers import (EmailTrigger, MqttTrigger, TriggerError, WebhookTrigger, parse_uses,
                       uses_to_manifest)

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY")
HTTP_FORMATS = ("native", "aws-http-v2", "aws-rest-v1")
FUNCTION_FORMATS = ("native", "aws", "aws-eventbridge", "aws-scheduled", "aws-sns")
QUEUE_FORMATS = ("native", "aws-sqs")
STREAM_FORMATS = ("native", "aws-kinesis")
CHANGE_FORMATS = ("native", "aws-dynamodb")  # @app.on_change: table change streams
OBJECT_FORMATS = ("native", "aws-s3")  # @app.on_object: object events
KINDS = ("function", "http", "queue", "stream", "change", "object")

MEMORY_MIN_MB, MEMORY_MAX_MB = 128, 10240  # AWS Lambda's range
TIMEOUT_MAX_S = 900.0  # AWS Lambda's maximum
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024  # Lambda's synchronous payload limit
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024  # SQS, EventBridge and Lambda async: 1 MB

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_QUEUE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
_SEGMENT_RE = re.compile(r"^(\{[A-Za-z_][A-Za-z0-9_]*\+?\}|[^{}]*)$")


class ConfigError(ValueError):
    """A declaration that cannot work; the message says what, where, and what to do."""


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter between attempts: attempt n (1-based) waits a
    random time in [0, min(max_s, base_s * factor ** (n - 1))]."""

    base_s: float = 1.0
    factor: float = 2.0
    max_s: float = 300.0
    jitter: bool = True

    def __post_init__(self) -> None:
        for name in ("base_s", "factor", "max_s"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ConfigError(f"RetryPolicy: {name} must be a number >= 0, got {value!r}")
        if self.factor < 1:
            raise ConfigError(f"RetryPolicy: factor must be >= 1, got {self.factor!r}")

    def delay(self, attempt: int, rand: float) -> float:
        """The wait before retry number `attempt`; `rand` is uniform in [0, 1)."""
        cap = min(self.max_s, self.base_s * self.factor ** max(0, attempt - 1))
        return cap * rand if self.jitter else cap

    def to_manifest(self) -> dict[str, Any]:
        return {"base_s": self.base_s, "factor": self.factor, "max_s": self.max_s,
                "jitter": self.jitter}


@dataclass(frozen=True, slots=True)
class QueueTrigger:
    """A queue and how its consumer feeds the function (SQS event-source-mapping knobs)."""

    queue: str
    batch_size: int = 10
    batch_window_s: float = 0.0
    concurrency: int = 4  # batches in flight at once: the load-levelling knob
    visibility_timeout_s: float | None = None  # default: 6 x the function's timeout, >= 30 s
    max_receive: int = 3  # deliveries before the message goes to the dead-letter queue
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    dlq: str | None = None  # default: "<queue>-dlq"
    max_age_s: float | None = None  # older messages go to the DLQ unprocessed
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    @property
    def dead_letter_queue(self) -> str:
        return self.dlq or f"{self.queue}-dlq"

    def visibility_for(self, timeout_s: float) -> float:
        if self.visibility_timeout_s is not None:
            return self.visibility_timeout_s
        return max(30.0, 6 * timeout_s)

    def to_manifest(self) -> dict[str, Any]:
        return {
            "queue": self.queue, "batch_size": self.batch_size,
            "batch_window_s": self.batch_window_s, "concurrency": self.concurrency,
            "visibility_timeout_s": self.visibility_timeout_s, "max_receive": self.max_receive,
            "retry": self.retry.to_manifest(), "dlq": self.dlq, "max_age_s": self.max_age_s,
            "max_message_bytes": self.max_message_bytes,
        }

    @classmethod
    def from_manifest(cls, data: dict[str, Any]) -> QueueTrigger:
        fields = dict(data)
        fields["retry"] = RetryPolicy(**fields.get("retry", {}))
        return cls(**fields)


def validate_queue_name(owner: str, name: Any) -> None:
    if not isinstance(name, str) or not _QUEUE_RE.fullmatch(name) or name.startswith("_"):
        raise ConfigError(f"{owner}: queue name {name!r} is invalid: use 1-80 letters, digits, "
                          "'-', '_' or '.', not starting with '_' (reserved for Squall)")


DESTINATION_KINDS = ("queue", "function", "topic", "bus")


def validate_destination(fname: str, setting: str, dest: Any) -> None:
    """`queue:NAME`, `function:NAME`, `topic:NAME` or `bus`."""
    if dest is None:
        return
    kind, _, target = dest.partition(":") if isinstance(dest, str) else ("", "", "")
    if kind not in DESTINATION_KINDS or (kind != "bus" and not target) or (
            kind == "bus" and target):
        raise _fail(fname, setting, f"must be 'queue:NAME', 'function:NAME', 'topic:NAME' or "
                    f"'bus', got {dest!r}")


def validate_queue_trigger(fname: str, t: QueueTrigger, timeout_s: float) -> None:
    validate_queue_name(f"function {fname!r}", t.queue)
    if t.dlq is not None:
        validate_queue_name(f"function {fname!r}: dlq", t.dlq)
        if t.dlq == t.queue:
            raise _fail(fname, "dlq", "must differ from the queue itself")
    if not isinstance(t.batch_size, int) or isinstance(t.batch_size, bool) or not (
            1 <= t.batch_size <= 10000):
        raise _fail(fname, "batch_size", f"must be a whole number from 1 to 10000, got {t.batch_size!r}")
    if not _is_number(t.batch_window_s) or not 0 <= t.batch_window_s <= 300:
        raise _fail(fname, "batch_window_s", f"must be seconds from 0 to 300, got {t.batch_window_s!r}")
    if not isinstance(t.concurrency, int) or isinstance(t.concurrency, bool) or t.concurrency < 1:
        raise _fail(fname, "concurrency", f"must be a whole number >= 1, got {t.concurrency!r}")
    if t.visibility_timeout_s is not None:
        if not _is_number(t.visibility_timeout_s) or not 0 < t.visibility_timeout_s <= 43200:
            raise _fail(fname, "visibility_timeout_s",
                        f"must be seconds in (0, 43200], got {t.visibility_timeout_s!r}")
        if t.visibility_timeout_s < timeout_s:
            raise _fail(fname, "visibility_timeout_s",
                        f"({t.visibility_timeout_s:g} s) must be at least the function's "
                        f"timeout_s ({timeout_s:g} s), or messages are delivered twice")
    if not isinstance(t.max_receive, int) or isinstance(t.max_receive, bool) or t.max_receive < 1:
        raise _fail(fname, "max_receive", f"must be a whole number >= 1, got {t.max_receive!r}")
    if not isinstance(t.retry, RetryPolicy):
        raise _fail(fname, "retry", f"must be a squall.RetryPolicy, got {t.retry!r}")
    if t.max_age_s is not None and (not _is_number(t.max_age_s) or t.max_age_s <= 0):
        raise _fail(fname, "max_age_s", f"must be seconds > 0 or None, got {t.max_age_s!r}")
    if not isinstance(t.max_message_bytes, int) or not 1 <= t.max_message_bytes <= 16 * 2**20:
        raise _fail(fname, "max_message_bytes",
                    f"must be a whole number from 1 to {16 * 2**20}, got {t.max_message_bytes!r}")


@dataclass(frozen=True, slots=True)
class StreamTrigger:
    """An ordered stream and how its consumer reads it (Kinesis event-source mapping)."""

    stream: str
    batch_size: int = 100
    batch_window_s: float = 0.0
    shards: int = 4  # records with one partition key always land in one shard, in order
    max_retries: int = 3  # then the failing record goes to the DLQ and the shard moves on
    bisect_on_error: bool = True  # split a failing batch to find the bad record
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(base_s=0.5, max_s=30.0))
    dlq: str | None = None  # default "<stream>-dlq"
    starting_position: str = "trim_horizon"  # or "latest"

    @property
    def dead_letter_queue(self) -> str:
        return self.dlq or f"{self.stream}-dlq"

    def to_manifest(self) -> dict[str, Any]:
        return {"stream": self.stream, "batch_size": self.batch_size,
                "batch_window_s": self.batch_window_s, "shards": self.shards,
                "max_retries": self.max_retries, "bisect_on_error": self.bisect_on_error,
                "retry": self.retry.to_manifest(), "dlq": self.dlq,
                "starting_position": self.starting_position}

    @classmethod
    def from_manifest(cls, data: dict[str, Any]) -> StreamTrigger:
        fields = dict(data)
        fields["retry"] = RetryPolicy(**fields.get("retry", {}))
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class FeedTrigger:
    """A table's change stream (`source="table"`) or a bucket's object events
    (`source="bucket"`) feeding a function, in order per key, at least once; a failing
    batch is retried (bisected) and then dead-lettered, as for streams."""

    source: str  # "table" | "bucket"
    resource: str  # the table or bucket name
    events: tuple[str, ...]
    prefix: str = ""  # object events: key filters
    suffix: str = ""
    batch_size: int = 100
    max_retries: int = 3
    bisect_on_error: bool = True
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(base_s=0.5, max_s=30.0))
    dlq: str | None = None  # default "<function>-dlq"
    starting_position: str = "trim_horizon"  # or "latest"

    @property
    def feed(self) -> str:
        return f"{self.source}:{self.resource}"

    def to_manifest(self) -> dict[str, Any]:
        return {"source": self.source, "resource": self.resource, "events": list(self.events),
                "prefix": self.prefix, "suffix": self.suffix, "batch_size": self.batch_size,
                "max_retries": self.max_retries, "bisect_on_error": self.bisect_on_error,
                "retry": self.retry.to_manifest(), "dlq": self.dlq,
                "starting_position": self.starting_position}

    @classmethod
    def from_manifest(cls, data: dict[str, Any]) -> FeedTrigger:
        fields = dict(data)
        fields["retry"] = RetryPolicy(**fields.get("retry", {}))
        fields["events"] = tuple(fields.get("events", ()))
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class ScheduleTrigger:
    """When a scheduled function fires: `rate(…)`, AWS `cron(…)` or 5-field cron."""

    expression: str
    timezone: str = "UTC"
    missed: str = "skip"  # after downtime: skip | fire_once | catch_up

    def to_manifest(self) -> dict[str, Any]:
        return {"expression": self.expression, "timezone": self.timezone, "missed": self.missed}


@dataclass(frozen=True, slots=True)
class Subscription:
    """A topic subscription: every message on `topic` that passes the filter policy goes to
    a function (invoked asynchronously, as SNS invokes Lambda) or a queue."""

    topic: str
    target: str  # "function:NAME" | "queue:NAME"
    filter_policy: dict[str, Any] | None = None
    filter_scope: str = "MessageAttributes"  # or "MessageBody"
    raw: bool = False  # queue targets: the bare message instead of the SNS envelope

    def to_manifest(self) -> dict[str, Any]:
        return {"topic": self.topic, "target": self.target, "filter_policy": self.filter_policy,
                "filter_scope": self.filter_scope, "raw": self.raw}


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """An event-bus rule: an EventBridge event pattern and where matching events go."""

    name: str
    pattern: dict[str, Any]
    targets: tuple[str, ...]  # "function:NAME", "queue:NAME", "topic:NAME"
    input_path: str | None = None
    input_transformer: dict[str, Any] | None = None  # {"input_paths": {...}, "template": ...}
    description: str = ""

    def to_manifest(self) -> dict[str, Any]:
        return {"name": self.name, "pattern": self.pattern, "targets": list(self.targets),
                "input_path": self.input_path, "input_transformer": self.input_transformer,
                "description": self.description}

    @classmethod
    def from_manifest(cls, data: dict[str, Any]) -> RuleConfig:
        fields = dict(data)
        fields["targets"] = tuple(fields.get("targets", ()))
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class FunctionConfig:
    """Everything declared about one function. Read by the runtime, gateway and CLI."""

    name: str
    kind: str = "function"  # "function" (invoke-only) | "http" | "queue"
    format: str = "native"
    memory_mb: int = 128
    timeout_s: float = 3.0
    concurrency: int | None = None  # reserved concurrency: at most this many at once
    provisioned: int = 0  # workers kept warm at all times
    keep_warm_s: float = 300.0  # idle workers beyond `provisioned` are reaped after this
    max_wait_s: float = 1.0  # a sync call waits this long for a free slot, then 429
    environment: dict[str, str] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    description: str = ""
    queue: QueueTrigger | None = None
    # asynchronous invocation (app.invoke_async), as Lambda's "Event" invocation type
    retries: int = 2
    max_event_age_s: float = 6 * 3600.0
    on_success: str | None = None
    on_failure: str | None = None
    schedule: ScheduleTrigger | None = None
    stream: StreamTrigger | None = None
    feed: FeedTrigger | None = None  # on_change / on_object
    mqtt: MqttTrigger | None = None  # on_mqtt (squall.triggers)
    email: EmailTrigger | None = None  # on_email
    webhook: WebhookTrigger | None = None  # webhook (its route is in `routes`)
    # least privilege: ((resource, (actions...)), ...); None = undeclared (everything)
    uses: tuple[tuple[str, tuple[str, ...]], ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.uses, dict):  # as declared: {"orders": "read", ...}
            try:
                object.__setattr__(self, "uses", parse_uses(self.uses))
            except TriggerError as exc:
                raise _fail(self.name, exc.setting, exc.problem) from None
        _validate(self)

    def to_manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "format": self.format,
            "memory_mb": self.memory_mb,
            "timeout_s": self.timeout_s,
            "concurrency": self.concurrency,
            "provisioned": self.provisioned,
            "keep_warm_s": self.keep_warm_s,
            "max_wait_s": self.max_wait_s,
            "environment": dict(self.environment),
            "routes": [[r.method, r.path] for r in self.routes],
            "description": self.description,
            "queue": self.queue.to_manifest() if self.queue else None,
            "retries": self.retries,
            "max_event_age_s": self.max_event_age_s,
            "on_success": self.on_success,
            "on_failure": self.on_failure,
            "schedule": self.schedule.to_manifest() if self.schedule else None,
            "stream": self.stream.to_manifest() if self.stream else None,
            "feed": self.feed.to_manifest() if self.feed else None,
            "mqtt": self.mqtt.to_manifest() if self.mqtt else None,
            "email": self.email.to_manifest() if self.email else None,
            "webhook": self.webhook.to_manifest() if self.webhook else None,
            "uses": uses_to_manifest(self.uses),
        }

    def async_trigger(self) -> QueueTrigger:
        """The internal queue behind `app.invoke_async(self.name, ...)`."""
        return QueueTrigger(
            queue=f"_async.{self.name}", batch_size=1, concurrency=self.concurrency or 4,
            # the worker is killed at its timeout, so twice that plus a margin covers a run
            # and its wait for a slot; a node that dies hands its events over that soon
            visibility_timeout_s=2 * self.timeout_s + 5.0, max_receive=self.retries + 1,
            retry=RetryPolicy(base_s=1.0, factor=2.0, max_s=120.0),
            dlq=f"_async.{self.name}-dlq", max_age_s=self.max_event_age_s,
        )

    @classmethod
    def from_manifest(cls, data: dict[str, Any]) -> FunctionConfig:
        fields = dict(data)
        fields["routes"] = tuple(Route(m, p) for m, p in fields.get("routes", ()))
        if fields.get("queue"):
            fields["queue"] = QueueTrigger.from_manifest(fields["queue"])
        if fields.get("schedule"):
            fields["schedule"] = ScheduleTrigger(**fields["schedule"])
        if fields.get("stream"):
            fields["stream"] = StreamTrigger.from_manifest(fields["stream"])
        if fields.get("feed"):
            fields["feed"] = FeedTrigger.from_manifest(fields["feed"])
        if fields.get("mqtt"):
            fields["mqtt"] = MqttTrigger(**fields["mqtt"])
        if fields.get("email"):
            fields["email"] = EmailTrigger.from_manifest(fields["email"])
        if fields.get("webhook"):
            fields["webhook"] = WebhookTrigger(**fields["webhook"])
        return cls(**fields)


def _fail(name: str, setting: str, problem: str) -> ConfigError:
    return ConfigError(f"function {name!r}: {setting} {problem}")


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool, not NaN, not infinite)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validate(cfg: FunctionConfig) -> None:
    n = cfg.name
    if not isinstance(n, str) or not _NAME_RE.fullmatch(n):
        raise ConfigError(
            f"function name {n!r} is invalid: use 1-64 letters, digits, '-', '_' or '.'"
        )
    if cfg.kind not in KINDS:
        raise _fail(n, "kind", f"must be one of {', '.join(KINDS)}, got {cfg.kind!r}")
    formats = {"http": HTTP_FORMATS, "queue": QUEUE_FORMATS, "stream": STREAM_FORMATS,
               "change": CHANGE_FORMATS, "object": OBJECT_FORMATS}.get(cfg.kind,
                                                                      FUNCTION_FORMATS)
    if cfg.format not in formats:
        raise _fail(n, "format", f"must be one of {', '.join(formats)}; got {cfg.format!r}")
    if not isinstance(cfg.memory_mb, int) or isinstance(cfg.memory_mb, bool) or not (
        MEMORY_MIN_MB <= cfg.memory_mb <= MEMORY_MAX_MB
    ):
        raise _fail(
            n, "memory_mb", f"must be a whole number from {MEMORY_MIN_MB} to {MEMORY_MAX_MB}, "
            f"got {cfg.memory_mb!r}"
        )
    if not _is_number(cfg.timeout_s) or not (0 < cfg.timeout_s <= TIMEOUT_MAX_S):
        raise _fail(n, "timeout_s", f"must be a number of seconds in (0, {TIMEOUT_MAX_S:g}], "
                    f"got {cfg.timeout_s!r}")
    if cfg.concurrency is not None and (
        not isinstance(cfg.concurrency, int) or isinstance(cfg.concurrency, bool)
        or cfg.concurrency < 1
    ):
        raise _fail(n, "concurrency", f"must be a whole number >= 1 or None, got {cfg.concurrency!r}")
    if not isinstance(cfg.provisioned, int) or isinstance(cfg.provisioned, bool) or cfg.provisioned < 0:
        raise _fail(n, "provisioned", f"must be a whole number >= 0, got {cfg.provisioned!r}")
    if cfg.concurrency is not None and cfg.provisioned > cfg.concurrency:
        raise _fail(n, "provisioned", f"({cfg.provisioned}) cannot exceed concurrency "
                    f"({cfg.concurrency})")
    if not _is_number(cfg.keep_warm_s) or cfg.keep_warm_s < 0:
        raise _fail(n, "keep_warm_s", f"must be a number of seconds >= 0, got {cfg.keep_warm_s!r}")
    if not _is_number(cfg.max_wait_s) or cfg.max_wait_s < 0:
        raise _fail(n, "max_wait_s", f"must be a number of seconds >= 0, got {cfg.max_wait_s!r}")
    if not isinstance(cfg.environment, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in cfg.environment.items()
    ):
        raise _fail(n, "environment", "must be a dict of str to str")
    for route in cfg.routes:
        validate_route(n, route.method, route.path)
    if cfg.kind == "http" and not cfg.routes:
        raise _fail(n, "routes", "must hold at least one route for an HTTP function")
    if not isinstance(cfg.retries, int) or isinstance(cfg.retries, bool) or not 0 <= cfg.retries <= 2:
        raise _fail(n, "retries", f"must be 0, 1 or 2 (as Lambda), got {cfg.retries!r}")
    if not _is_number(cfg.max_event_age_s) or not 60 <= cfg.max_event_age_s <= 6 * 3600:
        raise _fail(n, "max_event_age_s", f"must be seconds from 60 to 21600, got "
                    f"{cfg.max_event_age_s!r}")
    validate_destination(n, "on_success", cfg.on_success)
    validate_destination(n, "on_failure", cfg.on_failure)
    if cfg.kind == "stream":
        t = cfg.stream
        if t is None:
            raise _fail(n, "stream", "must be set for a stream function")
        validate_queue_name(f"function {n!r}", t.stream)
        for name, lo, hi in (("batch_size", 1, 10000), ("shards", 1, 256),
                             ("max_retries", 0, 10000)):
            v = getattr(t, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise _fail(n, name, f"must be a whole number from {lo} to {hi}, got {v!r}")
        if not _is_number(t.batch_window_s) or not 0 <= t.batch_window_s <= 300:
            raise _fail(n, "batch_window_s", f"must be seconds from 0 to 300, got {t.batch_window_s!r}")
        if t.starting_position not in ("trim_horizon", "latest"):
            raise _fail(n, "starting_position", "must be 'trim_horizon' or 'latest'")
    if cfg.kind in ("change", "object"):
        validate_feed_trigger(n, cfg.kind, cfg.feed)
    if cfg.kind == "queue":
        if cfg.queue is None:
            raise _fail(n, "queue", "must be set for a queue function")
        validate_queue_trigger(n, cfg.queue, cfg.timeout_s)
    for source in (cfg.mqtt, cfg.email, cfg.webhook):
        if source is not None:
            if cfg.kind != "function":
                raise _fail(n, "kind", "must be 'function' for an MQTT, email or webhook "
                            "trigger (they are delivered asynchronously)")
            try:
                source.check()
            except TriggerError as exc:
                raise _fail(n, exc.setting, exc.problem) from None
    if cfg.uses is not None and not isinstance(cfg.uses, tuple):
        raise _fail(n, "uses", "must be a dict of resource name to action(s)")


CHANGE_EVENTS = ("insert", "modify", "remove")
OBJECT_EVENTS = ("created", "deleted", "archived")


def validate_feed_trigger(n: str, kind: str, t: FeedTrigger | None) -> None:
    if t is None:
        raise _fail(n, "feed", f"must be set for a {kind} function")
    allowed = CHANGE_EVENTS if kind == "change" else OBJECT_EVENTS
    if not t.events or any(e not in allowed for e in t.events):
        raise _fail(n, "events", f"must be a non-empty list of {', '.join(allowed)}; "
                    f"got {list(t.events)!r}")
    for name, lo, hi in (("batch_size", 1, 10000), ("max_retries", 0, 10000)):
        v = getattr(t, name)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise _fail(n, name, f"must be a whole number from {lo} to {hi}, got {v!r}")
    for name in ("prefix", "suffix"):
        if not isinstance(getattr(t, name), str):
            raise _fail(n, name, "must be a string")
    if not isinstance(t.retry, RetryPolicy):
        raise _fail(n, "retry", f"must be a squall.RetryPolicy, got {t.retry!r}")
    if t.dlq is not None:
        validate_queue_name(f"function {n!r}: dlq", t.dlq)
    if t.starting_position not in ("trim_horizon", "latest"):
        raise _fail(n, "starting_position", "must be 'trim_horizon' or 'latest'")


def route_shape(path: str) -> str:
    """What a path template matches, for conflict checks: trailing slash dropped and
    parameter names erased (`/orders/{id}/` and `/orders/{order_id}` are the same route)."""
    norm = path.rstrip("/") or "/"
    return re.sub(r"\{[^}]*?(\+?)\}", lambda m: "{+}" if m.group(1) else "{}", norm)


def validate_route(name: str, method: str, path: str) -> None:
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        raise _fail(name, "method", f"must be one of {', '.join(HTTP_METHODS)}, got {method!r}")
    if not isinstance(path, str) or not path.startswith("/"):
        raise _fail(name, "path", f"must start with '/', got {path!r}")
    if path.strip("/").split("/")[0] == "_squall":
        raise _fail(name, "path", f"{path!r} is under /_squall/, which Squall reserves for "
                    "its dashboard and API: choose another path")
    segments = path.strip("/").split("/") if path != "/" else []
    seen: set[str] = set()
    for i, seg in enumerate(segments):
        if not _SEGMENT_RE.fullmatch(seg):
            raise _fail(name, "path", f"{path!r} has a malformed segment {seg!r}: "
                        "use {name} or {name+} for parameters")
        if seg.startswith("{"):
            pname = seg.strip("{}+")
            if pname in seen:
                raise _fail(name, "path", f"{path!r} repeats the parameter {pname!r}")
            seen.add(pname)
            if seg.endswith("+}") and i != len(segments) - 1:
                raise _fail(name, "path", f"{path!r}: a greedy parameter {seg} must be the "
                            "last segment")
