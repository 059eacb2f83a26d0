"""The declarative registry: `App` and its decorators.

Decorators only record (Chalice's `@app.route` is the model): they validate the
declaration, store a `Function` and hand the user's callable back unchanged. Later
stages (runtime, gateway, CLI, testing) read the registry. No I/O happens here, and no
process-global state: tests build many `App`s in one process.
"""

from __future__ import annotations

import inspect
import re
import sys
from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol

from .config import (
    DEFAULT_MAX_BODY_BYTES,
    ConfigError,
    FeedTrigger,
    FunctionConfig,
    QueueTrigger,
    RetryPolicy,
    Route,
    RuleConfig,
    ScheduleTrigger,
    StreamTrigger,
    Subscription,
    route_shape,
    validate_queue_name,
)
from .app_calls import Calls, NotRunning
from .app_sources import DeclaresSources, check_uses
from .app_state import DeclaresState
from .app_asl import DeclaresStateMachines
from .eventstore.declare import DeclaresEvents
from .security.declare import DeclaresSecurity
from .workflows.declare import DeclaresWorkflows
from .observe.rules import DeclaresAlerts
from .types import Handler

_SETTINGS = (
    "memory_mb",
    "timeout_s",
    "concurrency",
    "provisioned",
    "keep_warm_s",
    "max_wait_s",
    "environment",
    "description",
    "retries",
    "max_event_age_s",
    "on_success",
    "on_failure",
    "uses",
)
_QUEUE_SETTINGS = (
    "batch_size",
    "batch_window_s",
    "visibility_timeout_s",
    "max_receive",
    "retry",
    "dlq",
    "max_age_s",
    "max_message_bytes",
)
_STREAM_SETTINGS = ("batch_size", "batch_window_s", "shards", "max_retries", "bisect_on_error",
                    "retry", "dlq", "starting_position")
_APP_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_RULE_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class Invoker(Protocol):
    """What `App.invoke`/`send` talk to; bound by whatever runs the app (a worker, the test
    harness, the supervisor)."""

    def invoke(self, function: str, data: Any) -> Any: ...

    def send(self, queue: str, messages: list[dict[str, Any]]) -> list[str]: ...

    def invoke_async(self, function: str, body: str) -> str: ...

    def publish(self, entry_json: str) -> str: ...

    def notify(self, message_json: str) -> str: ...

    def idempotency(self, op: str, args: list[Any]) -> Any: ...

    def put_records(self, stream: str, items: list[list[str]]) -> list[str]: ...

    def state(self, kind: str, resource: str, op: str, args: list[Any]) -> Any:
        """A table, cache or bucket operation (see squall.state.handles)."""
        ...


@dataclass(frozen=True, slots=True)
class Function:
    """One registered function: its settings and the user's callable."""

    config: FunctionConfig
    handler: Handler
    takes_context: bool
    is_async: bool
    body_model: type | None = None  # a route's pydantic `model=`, run before the handler

    @property
    def name(self) -> str:
        return self.config.name


def _accepts(handler: Handler, n: int) -> bool:
    """Can `handler` be called with exactly `n` positional arguments?"""
    try:
        inspect.signature(handler).bind(*range(n))
        return True
    except TypeError:
        return False
    except ValueError:  # no signature (some builtins): trust it
        return True


def _positional_arity(handler: Handler) -> int:
    try:
        params = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return 2
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def _signature(handler: Handler) -> str:
    try:
        return f"({', '.join(str(p) for p in inspect.signature(handler).parameters.values())})"
    except (TypeError, ValueError):
        return "(unknown)"


class App(Calls, DeclaresState, DeclaresSources, DeclaresWorkflows, DeclaresEvents,
          DeclaresStateMachines, DeclaresSecurity, DeclaresAlerts):
    """A named set of functions and their triggers.

    >>> app = App("shop")
    >>> @app.http("GET", "/hello/{name}")
    ... def hello(request):
    ...     return {"hello": request.path_params["name"]}
    """

    def __init__(self, name: str, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 strict: bool = False) -> None:
        if not isinstance(name, str) or not _APP_NAME_RE.fullmatch(name):
            raise ConfigError(
                f"app name {name!r} is invalid: use 1-63 lower-case letters, digits, '-' or '_', "
                "starting with a letter or digit"
            )
        if (not isinstance(max_body_bytes, int) or isinstance(max_body_bytes, bool)
                or max_body_bytes < 1):
            raise ConfigError(f"app {name!r}: max_body_bytes must be a positive int")
        self.name = name
        self.max_body_bytes = max_body_bytes
        self.strict = bool(strict)  # every function must declare uses= (least privilege)
        self.functions: dict[str, Function] = {}
        self.rules: dict[str, RuleConfig] = {}
        self.subscriptions: list[Subscription] = []
        caller = sys._getframe(1).f_globals
        self.module: str = caller.get("__name__", "")
        self.file: str | None = caller.get("__file__")
        self._invoker: Invoker | None = None
        self._init_state()

    # -- declaration ---------------------------------------------------------------

    def http(
        self,
        method: str,
        path: str,
        *,
        name: str | None = None,
        format: str = "native",
        **settings: Any,
    ) -> Callable[[Handler], Handler]:
        """Serve `method path` through the HTTP gateway (path params: `{id}`, `{proxy+}`)."""

        def register(handler: Handler) -> Handler:
            fname = name or getattr(handler, "__name__", None) or "handler"
            self.take_route_security(fname, settings)  # auth, throttle, model, cors, ...
            route = Route(method.upper() if isinstance(method, str) else method, path)
            existing = self.functions.get(fname)
            if existing is not None and existing.handler is handler and existing.config.kind == "http":
                # the same callable served on one more route: same settings required
                wanted = self._config(fname, "http", format, settings, existing.config.routes + (route,))
                if replace(wanted, routes=existing.config.routes) != existing.config:
                    raise ConfigError(
                        f"function {fname!r}: registered again with other settings; pass name= "
                        "to register it as a separate function"
                    )
                self._check_route_free(fname, route)
                self._add(fname, wanted, handler, replace_ok=True)
                return handler
            cfg = self._config(fname, "http", format, settings, (route,))
            self._check_route_free(fname, route)
            self._add(fname, cfg, handler)
            return handler

        return register

    def function(
        self,
        handler: Handler | None = None,
        *,
        name: str | None = None,
        format: str = "native",
        **settings: Any,
    ) -> Any:
        """An invoke-only function: `app.invoke(name, data)`, `squall invoke`."""

        def register(h: Handler) -> Handler:
            fname = name or getattr(h, "__name__", None) or "handler"
            self._add(fname, self._config(fname, "function", format, settings, ()), h)
            return h

        if handler is not None:
            return register(handler)
        return register

    def queue(
        self,
        queue: str,
        *,
        name: str | None = None,
        format: str = "native",
        concurrency: int = 4,
        **settings: Any,
    ) -> Callable[[Handler], Handler]:
        """Consume `queue` in batches: `handler(batch, ctx)`; at-least-once, retried with
        backoff, dead-lettered after `max_receive` deliveries. `concurrency` caps how many
        batches run at once while a burst waits durably in the queue (load levelling)."""

        def register(handler: Handler) -> Handler:
            fname = name or getattr(handler, "__name__", None) or "handler"
            validate_queue_name(f"function {fname!r}", queue)
            qopts = {k: settings.pop(k) for k in list(settings) if k in _QUEUE_SETTINGS}
            if "retry" in qopts and isinstance(qopts["retry"], dict):
                qopts["retry"] = RetryPolicy(**qopts["retry"])
            for other in self.functions.values():
                if other.config.queue is not None and other.config.queue.queue == queue:
                    raise ConfigError(f"function {fname!r}: queue {queue!r} is already consumed "
                                      f"by function {other.name!r}")
            try:
                trigger = QueueTrigger(queue=queue, concurrency=concurrency, **qopts)
            except TypeError as exc:  # pragma: no cover - filtered above
                raise ConfigError(f"function {fname!r}: {exc}") from None
            settings.setdefault("concurrency", concurrency)
            cfg = self._config(fname, "queue", format, settings, (), queue=trigger)
            self._add(fname, cfg, handler)
            return handler

        return register

    def stream(
        self,
        stream: str,
        *,
        name: str | None = None,
        format: str = "native",
        **settings: Any,
    ) -> Callable[[Handler], Handler]:
        """Consume an ordered stream in batches, per shard and in order: `handler(records,
        ctx)`. A failing batch is retried in order (bisected to find the bad record when
        `bisect_on_error`), then the failing record goes to the DLQ and the shard moves on.
        Each consumer keeps its own checkpoint."""

        def register(handler: Handler) -> Handler:
            fname = name or getattr(handler, "__name__", None) or "handler"
            validate_queue_name(f"function {fname!r}", stream)
            sopts = {k: settings.pop(k) for k in list(settings) if k in _STREAM_SETTINGS}
            if "retry" in sopts and isinstance(sopts["retry"], dict):
                sopts["retry"] = RetryPolicy(**sopts["retry"])
            trigger = StreamTrigger(stream=stream, **sopts)
            shards = {f.config.stream.shards for f in self.functions.values()
                      if f.config.stream and f.config.stream.stream == stream}
            if shards and trigger.shards not in shards:
                raise ConfigError(f"function {fname!r}: stream {stream!r} has {shards.pop()} "
                                  f"shards elsewhere in this app; all consumers must agree")
            settings.setdefault("concurrency", trigger.shards)
            cfg = self._config(fname, "stream", format, settings, (), stream=trigger)
            self._add(fname, cfg, handler)
            return handler

        return register

    def schedule(
        self,
        expression: str,
        *,
        timezone: str = "UTC",
        missed: str = "skip",
        name: str | None = None,
        format: str = "native",
        **settings: Any,
    ) -> Callable[[Handler], Handler]:
        """Run the function on a schedule: `rate(5 minutes)`, `cron(0 12 * * ? *)` (AWS, 6
        fields) or `*/5 * * * *` (classic). Exactly one firing per tick; the event is AWS's
        Scheduled Event. `missed` says what to do with ticks missed while not running:
        "skip" (default), "fire_once" or "catch_up"."""
        from .events.schedule import InvalidSchedule, parse_schedule  # a pure leaf

        def register(handler: Handler) -> Handler:
            fname = name or getattr(handler, "__name__", None) or "handler"
            try:
                parse_schedule(expression, timezone)
            except InvalidSchedule as exc:
                raise ConfigError(f"function {fname!r}: schedule {expression!r}: "
                                  f"{exc.reason or exc.message}") from None
            if missed not in ("skip", "fire_once", "catch_up"):
                raise ConfigError(f"function {fname!r}: missed must be 'skip', 'fire_once' or "
                                  f"'catch_up', got {missed!r}")
            trigger = ScheduleTrigger(expression, timezone, missed)
            cfg = self._config(fname, "function", format, settings, (), schedule=trigger)
            self._add(fname, cfg, handler)
            return handler

        return register

    def subscribe(
        self,
        topic: str,
        *,
        filter_policy: dict[str, Any] | None = None,
        filter_scope: str = "MessageAttributes",
        name: str | None = None,
        format: str = "native",
        **settings: Any,
    ) -> Callable[[Handler], Handler]:
        """Run the function for every message published to `topic` (with `app.notify`)
        that passes the SNS filter policy. Delivery is asynchronous: retries, destinations.
        Native handlers get `{"topic", "message_id", "message", "subject", "attributes",
        "timestamp"}`; `format="aws-sns"` gets SNS's Lambda event."""

        def register(handler: Handler) -> Handler:
            fname = name or getattr(handler, "__name__", None) or "handler"
            sub = self._check_subscription(f"function {fname!r}", topic, f"function:{fname}",
                                           filter_policy, filter_scope, False)
            self.function(name=fname, format=format, **settings)(handler)
            self.subscriptions.append(sub)
            return handler

        return register

    def subscribe_queue(self, topic: str, queue: str, *,
                        filter_policy: dict[str, Any] | None = None,
                        filter_scope: str = "MessageAttributes", raw: bool = False) -> None:
        """Fan `topic` out into one of the app's queues (SNS -> SQS); `raw=True` delivers the
        bare message instead of the SNS envelope."""
        validate_queue_name(f"topic {topic!r} subscription", queue)
        self.subscriptions.append(self._check_subscription(
            f"topic {topic!r} subscription", topic, f"queue:{queue}", filter_policy,
            filter_scope, raw))

    def _check_subscription(self, owner: str, topic: str, target: str,
                            filter_policy: dict[str, Any] | None, filter_scope: str,
                            raw: bool) -> Subscription:
        from .events.topic import InvalidFilterPolicy, validate_filter_policy  # a pure leaf

        validate_queue_name(owner, topic)
        if filter_scope not in ("MessageAttributes", "MessageBody"):
            raise ConfigError(f"{owner}: filter_scope must be 'MessageAttributes' or "
                              f"'MessageBody', got {filter_scope!r}")
        if filter_policy is not None:
            try:
                validate_filter_policy(filter_policy, filter_scope)
            except InvalidFilterPolicy as exc:
                raise ConfigError(f"{owner}: invalid filter policy: {exc}") from None
        for s in self.subscriptions:
            if s.topic == topic and s.target == target:
                raise ConfigError(f"{owner}: {target} is already subscribed to {topic!r}")
        return Subscription(topic, target, filter_policy, filter_scope, raw)

    def on_event(
        self,
        *,
        source: list[str] | str | None = None,
        detail_type: list[str] | str | None = None,
        detail: dict[str, Any] | None = None,
        pattern: dict[str, Any] | None = None,
        rule: str | None = None,
        name: str | None = None,
        format: str = "native",
        input_path: str | None = None,
        input_transformer: dict[str, Any] | None = None,
        **settings: Any,
    ) -> Callable[[Handler], Handler]:
        """Run the function for every bus event matching an EventBridge pattern (built from
        source/detail_type/detail, or given whole as `pattern`). Delivery is asynchronous,
        with the function's retries and destinations."""

        def register(handler: Handler) -> Handler:
            fname = name or getattr(handler, "__name__", None) or "handler"
            if pattern is not None and (source or detail_type or detail):
                raise ConfigError(f"function {fname!r}: give pattern= or source/detail_type/"
                                  "detail, not both")
            pat = dict(pattern) if pattern is not None else {}
            if pattern is None:
                for key, value in (("source", source), ("detail-type", detail_type)):
                    if value is not None:
                        pat[key] = [value] if isinstance(value, str) else list(value)
                if detail is not None:
                    pat["detail"] = detail
            if not pat:
                raise ConfigError(f"function {fname!r}: on_event needs a pattern (source=, "
                                  "detail_type=, detail= or pattern=)")
            checked = self._check_rule(rule or f"{fname}-rule", pat, (f"function:{fname}",),
                                       input_path, input_transformer, owner=f"function {fname!r}")
            self.function(name=fname, format=format, **settings)(handler)
            self.rules[checked.name] = checked
            return handler

        return register

    def rule(self, name: str, pattern: dict[str, Any], targets: list[str], *,
             input_path: str | None = None, input_transformer: dict[str, Any] | None = None,
             description: str = "") -> None:
        """Declare a bus rule with several targets: 'function:NAME', 'queue:NAME'."""
        if not targets:
            raise ConfigError(f"rule {name!r}: needs at least one target")
        for t in targets:
            kind, _, target = t.partition(":") if isinstance(t, str) else ("", "", "")
            if kind not in ("function", "queue") or not target:
                raise ConfigError(f"rule {name!r}: target {t!r} must be 'function:NAME' or "
                                  "'queue:NAME'")
        checked = self._check_rule(name, pattern, tuple(targets), input_path, input_transformer,
                                   owner=f"rule {name!r}", description=description)
        self.rules[name] = checked

    def _check_rule(self, rname: str, pattern: dict[str, Any], targets: tuple[str, ...],
                    input_path: str | None, input_transformer: dict[str, Any] | None, *,
                    owner: str, description: str = "") -> RuleConfig:
        # events/patterns and events/bus are pure leaves (they import nothing of squall)
        from .events import bus
        from .events.patterns import InvalidPattern, compile_pattern

        if not isinstance(rname, str) or not _RULE_NAME_RE.fullmatch(rname):
            raise ConfigError(f"{owner}: rule name {rname!r} is invalid: use 1-64 letters, "
                              "digits, '-', '_' or '.'")
        if rname in self.rules:
            raise ConfigError(f"{owner}: a rule named {rname!r} already exists; pass rule=")
        try:
            compile_pattern(pattern)
        except InvalidPattern as exc:
            raise ConfigError(f"{owner}: invalid event pattern: {exc}") from None
        if input_path is not None and input_transformer is not None:
            raise ConfigError(f"{owner}: give input_path or input_transformer, not both")
        try:
            if input_path is not None:
                bus.validate_path(input_path)
            if input_transformer is not None:
                bus.validate_transformer(input_transformer)
        except bus.InvalidTransform as exc:
            raise ConfigError(f"{owner}: {exc}") from None
        return RuleConfig(rname, pattern, targets, input_path, input_transformer, description)

    def _config(
        self, fname: str, kind: str, format: str, settings: dict[str, Any],
        routes: tuple[Route, ...], queue: QueueTrigger | None = None,
        schedule: ScheduleTrigger | None = None, stream: StreamTrigger | None = None,
        feed: FeedTrigger | None = None,
    ) -> FunctionConfig:
        self.take_secrets(fname, settings)  # secrets=[...]: squall.security.declare
        unknown = sorted(set(settings) - set(_SETTINGS))
        if unknown:
            raise ConfigError(
                f"function {fname!r}: unknown setting {', '.join(map(repr, unknown))}; "
                f"known settings are {', '.join(_SETTINGS)}"
            )
        env = settings.get("environment")
        if env is not None and not isinstance(env, dict):
            raise ConfigError(f"function {fname!r}: environment must be a dict of str to str")
        try:
            return FunctionConfig(name=fname, kind=kind, format=format, routes=routes,
                                  queue=queue, schedule=schedule, stream=stream, feed=feed,
                                  **settings)
        except TypeError as exc:  # pragma: no cover - guarded by the check above
            raise ConfigError(f"function {fname!r}: {exc}") from None

    def _check_route_free(self, fname: str, route: Route) -> None:
        shape = route_shape(route.path)
        for other in self.functions.values():
            for r in other.config.routes:
                if route_shape(r.path) == shape and (
                    r.method == route.method or "ANY" in (r.method, route.method)
                ):
                    raise ConfigError(
                        f"function {fname!r}: route {route.method} {route.path} is already "
                        f"served by function {other.name!r} ({r.method} {r.path})"
                    )

    def _add(self, fname: str, cfg: FunctionConfig, handler: Handler, replace_ok: bool = False) -> None:
        if not callable(handler):
            raise ConfigError(f"function {fname!r}: the handler must be callable, got {handler!r}")
        if fname in self.functions and not replace_ok:
            raise ConfigError(
                f"function {fname!r} is already registered in app {self.name!r}; pass name= "
                "to register it under another name"
            )
        if self.strict and cfg.uses is None:
            raise ConfigError(
                f"function {fname!r}: app {self.name!r} is strict: declare what the function "
                "uses, e.g. uses={'orders': 'read', 'emails': 'send'} (uses={} for nothing)")
        native = cfg.format == "native"
        takes_two = _accepts(handler, 2)
        if not (takes_two or (native and _accepts(handler, 1))):
            first = {"http": "request", "queue": "batch", "stream": "records",
                     "change": "changes"}.get(cfg.kind, "event")
            want = f"({first}) or ({first}, ctx)" if native else "(event, context)"
            raise ConfigError(
                f"function {fname!r}: the handler must take {want}; it takes "
                f"{_positional_arity(handler)} positional argument(s): {_signature(handler)}"
            )
        self.functions[fname] = Function(
            config=cfg,
            handler=handler,
            takes_context=takes_two,
            is_async=inspect.iscoroutinefunction(handler),
            body_model=self.request_model(fname) if cfg.kind == "http" else None,
        )

    # -- reading -------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        """The registry as plain data: what a supervisor needs, without any user code."""
        check_uses(self)
        return {
            "app": self.name,
            "max_body_bytes": self.max_body_bytes,
            "functions": [f.config.to_manifest() for f in self.functions.values()],
            "rules": [r.to_manifest() for r in self.rules.values()],
            "subscriptions": [s.to_manifest() for s in self.subscriptions],
            "state": self.state_manifest(),
            "strict": self.strict,
            "workflows": self.workflow_manifest(),
            "event_consumers": self.events_manifest(),
            "security": self.security_manifest(),
            "alerts": self.alert_manifest(),
            "state_machines": self.state_machine_manifest(),
        }

    # -- calling -------------------------------------------------------------------

    def invoke(self, function: str, data: Any = None) -> Any:
        """Run `function` to completion and return its result (raises on failure)."""
        if self._invoker is None:
            raise NotRunning(
                f"app {self.name!r} is not running here: call app.invoke inside a function, "
                "under squall.testing, or use `squall invoke APP FUNCTION`"
            )
        return self._invoker.invoke(function, data)

    def queues(self) -> dict[str, Function]:
        """Declared queues and the function consuming each."""
        return {f.config.queue.queue: f for f in self.functions.values() if f.config.queue}

    def bind(self, invoker: Invoker | None) -> None:
        """Attach the runtime that `invoke` uses (done by the worker or the test harness)."""
        self._invoker = invoker

    def __repr__(self) -> str:
        return f"App({self.name!r}, functions={list(self.functions)})"
