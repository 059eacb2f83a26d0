"""Alert rules as an app declares them: pure data, checked at declaration time.

    app.alert("errors", error_rate=0.05, for_s=300, notify=["webhook:https://hooks/x"])
    app.alert("orders-dlq", dlq="orders.dlq", notify=["function:page_oncall"])
    app.alert("slow-checkout", p99_ms=800, function="checkout", for_s=300)
    app.alert("throttled", throttles=1, window_s=60)
    app.alert("budget", cost_usd=5.0, window_s=86400, notify=["email:ops@example.com"])

Exactly one condition per rule. The rule breaches when the value over the last
`window_s` is above the threshold (`dlq`: the queue is not empty); it fires once it has
breached for `for_s` and resolves when it no longer does (squall.observe.alerts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CONDITIONS = ("error_rate", "p99_ms", "throttles", "cost_usd", "dlq")
NOTIFY_KINDS = ("function", "webhook", "email", "log")


@dataclass(frozen=True, slots=True)
class AlertRule:
    name: str
    condition: str  # one of CONDITIONS
    threshold: float  # dlq: 0 (any message)
    queue: str | None = None  # dlq: the dead-letter queue watched
    function: str | None = None  # None: every function of the app
    window_s: float = 300.0
    for_s: float = 0.0
    notify: tuple[str, ...] = ()

    def describe(self) -> str:
        scope = f" of {self.function}" if self.function else ""
        if self.condition == "dlq":
            return f"dead-letter queue {self.queue} not empty"
        if self.condition == "error_rate":
            what = f"error rate{scope} over {self.threshold:.1%}"
        elif self.condition == "p99_ms":
            what = f"p99 duration{scope} over {self.threshold:g} ms"
        elif self.condition == "throttles":
            what = f"throttles{scope} over {self.threshold:g}"
        else:
            what = f"cost{scope} over ${self.threshold:g}"
        held = f" for {self.for_s:g} s" if self.for_s else ""
        return f"{what} in {self.window_s:g} s{held}"

    def to_manifest(self) -> dict[str, Any]:
        return {"name": self.name, "condition": self.condition, "threshold": self.threshold,
                "queue": self.queue, "function": self.function, "window_s": self.window_s,
                "for_s": self.for_s, "notify": list(self.notify)}

    @classmethod
    def from_manifest(cls, d: dict[str, Any]) -> AlertRule:
        return cls(**{**d, "notify": tuple(d.get("notify") or ())})


def make_rule(name: str, *, function: str | None = None, window_s: float = 300.0,
              for_s: float = 0.0, notify: list[str] | tuple[str, ...] | str = (),
              **condition: Any) -> AlertRule:
    """Build and check one rule (ValueError says what is wrong)."""
    if not name or not isinstance(name, str):
        raise ValueError("app.alert: a rule needs a name")
    unknown = set(condition) - set(CONDITIONS)
    if unknown:
        raise ValueError(f"app.alert({name!r}): unknown option(s) {', '.join(sorted(unknown))}; "
                         f"conditions are {', '.join(CONDITIONS)}")
    if len(condition) != 1:
        raise ValueError(f"app.alert({name!r}): give exactly one condition of "
                         f"{', '.join(CONDITIONS)}, got {len(condition)}")
    (kind, value), = condition.items()
    queue = None
    if kind == "dlq":
        if not isinstance(value, str) or not value:
            raise ValueError(f"app.alert({name!r}): dlq= names a dead-letter queue")
        queue, threshold = value, 0.0
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"app.alert({name!r}): {kind} must be a number >= 0, got {value!r}")
        if kind == "error_rate" and value > 1:
            raise ValueError(f"app.alert({name!r}): error_rate is a fraction (0.05 for 5 %), "
                             f"got {value}")
        threshold = float(value)
    if window_s <= 0 or for_s < 0:
        raise ValueError(f"app.alert({name!r}): window_s must be > 0 and for_s >= 0")
    targets = (notify,) if isinstance(notify, str) else tuple(notify)
    for t in targets:
        kind_, sep, where = t.partition(":")
        if kind_ not in NOTIFY_KINDS or (kind_ != "log" and not (sep and where)):
            raise ValueError(f"app.alert({name!r}): notify target {t!r} is not one of "
                             "function:NAME, webhook:URL, email:ADDRESS, log")
    return AlertRule(name, kind, threshold, queue, function, float(window_s), float(for_s),
                     targets)


class DeclaresAlerts:
    """The `App` mixin: `app.alert(...)` records a rule; nothing runs at import."""

    _alert_rules: dict[str, AlertRule]

    def alert(self, name: str, **options: Any) -> AlertRule:
        rules = self.__dict__.setdefault("_alert_rules", {})
        if name in rules:
            raise ValueError(f"app.alert: a rule named {name!r} is already declared")
        rule = rules[name] = make_rule(name, **options)
        return rule

    def alert_manifest(self) -> list[dict[str, Any]]:
        return [r.to_manifest() for r in self.__dict__.get("_alert_rules", {}).values()]
