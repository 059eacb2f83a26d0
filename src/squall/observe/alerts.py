"""Alerts: rules (squall.observe.rules) evaluated continuously, states recorded, people told.

Each rule is a small state machine, free of I/O (`step`):

    ok --breach--> pending --breach held for_s--> firing --no breach--> resolved (= ok)
    (for_s = 0: ok --breach--> firing at once)

`AlertEvaluator.evaluate()` reads each rule's value from the invocation log over its
window (error rate, p99, throttles, cost) or from the broker (dead-letter queue size),
steps the machine at `clock()`, and on "firing" and "resolved" records the transition in
the store and notifies every target: `function:NAME` (invoked with the alert as its
event), `webhook:URL` (a JSON POST), `email:ADDRESS` (SMTP to SQUALL_SMTP_HOST, default
127.0.0.1:25), `log` (a structured log line; always done). The supervisor runs it every
`interval_s` (SQUALL_ALERT_INTERVAL_S, 30 s); tests call `evaluate()` with a fake clock.

Read API: `list_alerts(store, app)`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import smtplib
import time
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Awaitable, Callable

from . import logs
from .cost import Pricing
from .metrics import ERROR_STATUSES
from .numbers import percentile
from .rules import AlertRule

OK, PENDING, FIRING, RESOLVED = "ok", "pending", "firing", "resolved"
NOTIFY_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class RuleState:
    state: str = OK
    since: float = 0.0  # when the current breach began (pending/firing)


def step(prev: RuleState, breach: bool, now: float, for_s: float) -> tuple[RuleState, str | None]:
    """The next state and the transition to announce ("firing", "resolved" or None)."""
    if breach:
        if prev.state == FIRING:
            return prev, None
        since = prev.since if prev.state == PENDING else now
        if now - since >= for_s:
            return RuleState(FIRING, since), FIRING
        return RuleState(PENDING, since), None
    if prev.state == FIRING:
        return RuleState(OK, now), RESOLVED
    return RuleState(OK, now), None


@dataclass(frozen=True, slots=True)
class Alert:
    """A transition, as notified and recorded."""

    app: str
    rule: str
    state: str  # firing | resolved
    at: float
    value: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"app": self.app, "rule": self.rule, "state": self.state, "at": self.at,
                "value": self.value, "message": self.message}


Notifier = Callable[[str, Alert], Awaitable[None]]


class AlertEvaluator:
    def __init__(self, app: str, rules: list[AlertRule], store: Any, *,
                 clock: Callable[[], float] = time.time,
                 dlq_size: Callable[[str], Awaitable[int]] | None = None,
                 invoke: Callable[..., Awaitable[Any]] | None = None,
                 notifier: Notifier | None = None, pricing: Pricing | None = None,
                 leader: Callable[[], Awaitable[bool]] | None = None) -> None:
        """`leader()`: whether this node evaluates this round (a lease: one node of a
        cluster at a time); None: always."""
        self.app = app
        self.rules = list(rules)
        self.store = store
        self.clock = clock
        self.dlq_size = dlq_size
        self.invoke = invoke  # runtime.invoke, for function: targets
        self.notifier = notifier or self._notify
        self.pricing = pricing or Pricing()
        self.states: dict[str, RuleState] = {}
        self.leader = leader
        self._loaded = False

    async def value(self, rule: AlertRule, now: float) -> float:
        if rule.condition == "dlq":
            if self.dlq_size is None:
                return 0.0
            return float(await self.dlq_size(rule.queue or ""))
        rows = await asyncio.get_running_loop().run_in_executor(
            None, self.store.invocation_window, self.app, now - rule.window_s, now + 1e-6,
            rule.function)
        if rule.condition == "throttles":
            return float(sum(1 for r in rows if r[7] == "throttled"))
        ran = [r for r in rows if r[7] != "throttled"]
        if rule.condition == "error_rate":
            return sum(1 for r in ran if r[7] in ERROR_STATUSES) / len(ran) if ran else 0.0
        if rule.condition == "p99_ms":
            return percentile(sorted(r[2] for r in ran), 99) or 0.0
        return sum(self.pricing.invocation_usd(r[2], r[4], r[7]) for r in rows)

    async def _load(self) -> None:
        """Start from the last recorded states: a restart, or another node taking over,
        does not announce a firing alert again."""
        rows = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.store.alert_states(self.app, limit=1000))
        for rule, state, at, _value, _message in reversed(rows):
            self.states[rule] = RuleState(FIRING, at) if state == FIRING else RuleState(OK, at)
        self._loaded = True

    async def evaluate(self) -> list[Alert]:
        """One round over every rule; returns the transitions it announced."""
        if self.leader is not None and not await self.leader():
            self._loaded = False  # another node decides; read its states when it is ours
            return []
        if not self._loaded:
            await self._load()
        now = self.clock()
        out = []
        for rule in self.rules:
            try:
                value = await self.value(rule, now)
            except Exception as exc:  # a store or broker hiccup: try again next round
                logs.event("alert rule could not be evaluated", logging.WARNING,
                           app=self.app, rule=rule.name, error=str(exc))
                continue
            breach = value > rule.threshold
            state, transition = step(self.states.get(rule.name, RuleState()), breach, now,
                                     rule.for_s)
            self.states[rule.name] = state
            if transition is None:
                continue
            verb = "FIRING" if transition == FIRING else "resolved"
            alert = Alert(self.app, rule.name, transition, now, value,
                          f"[{verb}] {self.app}/{rule.name}: {rule.describe()} "
                          f"(now {_fmt(rule, value)})")
            out.append(alert)
            await asyncio.get_running_loop().run_in_executor(
                None, self.store.record_alert, self.app, rule.name, transition, now, value,
                alert.message)
            logs.event("alert", logging.WARNING if transition == FIRING else logging.INFO,
                       **alert.to_dict())
            for target in rule.notify:
                try:
                    await self.notifier(target, alert)
                except Exception as exc:
                    logs.event("alert notification failed", logging.ERROR, app=self.app,
                               rule=rule.name, target=target, error=f"{type(exc).__name__}: {exc}")
        return out

    async def run(self, interval_s: float) -> None:
        while True:
            await self.evaluate()
            await asyncio.sleep(interval_s)

    # -- notification targets ------------------------------------------------------------

    async def _notify(self, target: str, alert: Alert) -> None:
        kind, _, where = target.partition(":")
        loop = asyncio.get_running_loop()
        if kind == "function":
            if self.invoke is None:
                raise RuntimeError("no runtime to invoke the alert function")
            result = await self.invoke(where, "event", json.dumps(alert.to_dict()))
            if not result.ok:
                raise RuntimeError(f"{where} failed: {result.error_type}: {result.error_message}")
        elif kind == "webhook":
            await loop.run_in_executor(None, post_json, where, alert.to_dict())
        elif kind == "email":
            await loop.run_in_executor(None, send_email, where, alert)


def _fmt(rule: AlertRule, value: float) -> str:
    if rule.condition == "error_rate":
        return f"{value:.1%}"
    if rule.condition == "cost_usd":
        return f"${value:.6f}"
    if rule.condition == "p99_ms":
        return f"{value:.1f} ms"
    return f"{value:g}"


def post_json(url: str, doc: dict[str, Any]) -> None:
    req = urllib.request.Request(url, data=json.dumps(doc).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=NOTIFY_TIMEOUT_S) as resp:
        if resp.status >= 300:
            raise RuntimeError(f"webhook {url} answered {resp.status}")


def send_email(to: str, alert: Alert) -> None:
    host, _, port = os.environ.get("SQUALL_SMTP_HOST", "127.0.0.1:25").partition(":")
    msg = EmailMessage()
    msg["From"] = os.environ.get("SQUALL_ALERT_FROM", "squall@localhost")
    msg["To"] = to
    msg["Subject"] = alert.message
    msg.set_content(json.dumps(alert.to_dict(), indent=2))
    with smtplib.SMTP(host, int(port or 25), timeout=NOTIFY_TIMEOUT_S) as smtp:
        smtp.send_message(msg)


# -- read API --------------------------------------------------------------------------


def list_alerts(store: Any, app: str, *, rules: list[AlertRule] | None = None,
                limit: int = 100) -> dict[str, Any]:
    """{"rules": [{name, description, state (last recorded), since}], "history": [...]}:
    the declared rules with their last recorded state, and transitions newest first."""
    history = [{"rule": r, "state": s, "at": at, "value": v, "message": m}
               for r, s, at, v, m in store.alert_states(app, limit=limit)]
    last: dict[str, dict[str, Any]] = {}
    for h in history:
        last.setdefault(h["rule"], h)
    out_rules = []
    for rule in rules or []:
        h = last.get(rule.name)
        out_rules.append({"name": rule.name, "description": rule.describe(),
                          "condition": rule.condition, "notify": list(rule.notify),
                          "state": h["state"] if h else OK, "since": h["at"] if h else None})
    return {"app": app, "rules": out_rules, "history": history}
