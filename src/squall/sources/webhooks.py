"""Signed webhooks: verify, make durable, answer 202; the function runs afterwards.

    POST /hooks/github  -> gateway (a webhook route) -> Webhooks.receive
        1. the signature, in constant time, with the secret from `secret_env`
           (the function's `environment` first, then the supervisor's environment)
        2. bad or missing -> 401, nothing enqueued
        3. good -> one durable message on the function's async queue (`_async.<fn>`),
           deduplicated by the delivery's identity (GitHub's delivery id, Stripe's event
           id, else the signature) -> 202 {"id"}; the function runs from the queue with its
           retries and dead-letter queue.

The verifiers are pure functions over (secret, body, headers, now) so the documented test
vectors can check them without a server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import time
from datetime import datetime, timezone
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs

from ..backends.broker import MessageTooLarge, OutMessage
from ..config import DEFAULT_MAX_MESSAGE_BYTES
from ..events.envelope import new_traceparent
from ..observe import logs
from ..types import HttpRequest


class SignatureError(Exception):
    """The request is not signed as the webhook requires; the message says how."""


def _hmac_hex(secret: bytes, data: bytes) -> str:
    return hmac.new(secret, data, hashlib.sha256).hexdigest()


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name.lower())
    if not value:
        raise SignatureError(f"missing {name} header")
    return value.strip()


def _fresh(timestamp: str, now: float, tolerance_s: float, what: str) -> int:
    try:
        t = int(timestamp)
    except ValueError:
        raise SignatureError(f"{what} timestamp {timestamp[:32]!r} is not a number") from None
    if abs(now - t) > tolerance_s:
        raise SignatureError(f"{what} timestamp is {abs(now - t):.0f} s from now, outside "
                             f"the {tolerance_s:g} s tolerance (a replay, or a clock off)")
    return t


def verify_github(secret: bytes, body: bytes, headers: Mapping[str, str], *,
                  now: float = 0.0, tolerance_s: float = 300.0, header: str = "") -> None:
    """X-Hub-Signature-256: sha256=HEX(HMAC-SHA256(secret, body))."""
    given = _header(headers, "X-Hub-Signature-256")
    if not given.startswith("sha256="):
        raise SignatureError("X-Hub-Signature-256 must start with 'sha256='")
    if not _same(_hmac_hex(secret, body), given[7:]):
        raise SignatureError("X-Hub-Signature-256 does not match the body")


def verify_stripe(secret: bytes, body: bytes, headers: Mapping[str, str], *,
                  now: float = 0.0, tolerance_s: float = 300.0, header: str = "") -> None:
    """Stripe-Signature: t=TS,v1=HEX[,v1=HEX...][,v0=...]; v1 = HMAC-SHA256(secret,
    "TS.body"). Any v1 may match (secret rolling); the timestamp must be within the
    tolerance (replay protection)."""
    value = _header(headers, "Stripe-Signature")
    stamps, v1 = [], []
    for part in value.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            stamps.append(val)
        elif key == "v1":
            v1.append(val)
    if len(stamps) != 1:
        raise SignatureError("Stripe-Signature must carry exactly one t= timestamp")
    if not v1:
        raise SignatureError("Stripe-Signature carries no v1 signature")
    expected = _hmac_hex(secret, stamps[0].encode() + b"." + body)
    matched = False
    for sig in v1:  # compare every one: the time taken does not depend on which matched
        matched |= _same(expected, sig)
    if not matched:
        raise SignatureError("no v1 signature in Stripe-Signature matches the body")
    _fresh(stamps[0], now, tolerance_s, "Stripe-Signature")


def verify_slack(secret: bytes, body: bytes, headers: Mapping[str, str], *,
                 now: float = 0.0, tolerance_s: float = 300.0, header: str = "") -> None:
    """X-Slack-Signature: v0=HEX(HMAC-SHA256(secret, "v0:TS:body")) with
    X-Slack-Request-Timestamp: TS within the tolerance."""
    ts = _header(headers, "X-Slack-Request-Timestamp")
    given = _header(headers, "X-Slack-Signature")
    if not given.startswith("v0="):
        raise SignatureError("X-Slack-Signature must start with 'v0='")
    expected = _hmac_hex(secret, b"v0:" + ts.encode() + b":" + body)
    if not _same(expected, given[3:]):
        raise SignatureError("X-Slack-Signature does not match the body")
    _fresh(ts, now, tolerance_s, "X-Slack-Request-Timestamp")


def verify_hmac_sha256(secret: bytes, body: bytes, headers: Mapping[str, str], *,
                       now: float = 0.0, tolerance_s: float = 300.0,
                       header: str = "X-Signature-256") -> None:
    """`header`: HEX(HMAC-SHA256(secret, body)), optionally prefixed 'sha256='."""
    given = _header(headers, header)
    if given.startswith("sha256="):
        given = given[7:]
    if not _same(_hmac_hex(secret, body), given.lower()):
        raise SignatureError(f"{header} does not match the body")


VERIFIERS: dict[str, Callable[..., None]] = {
    "github": verify_github, "stripe": verify_stripe, "slack": verify_slack,
    "hmac-sha256": verify_hmac_sha256,
}


def webhook_event(request: HttpRequest, verify: str, received_at: float) -> dict[str, Any]:
    """What the function receives: the request as verified, with the body parsed where
    its content type says how."""
    headers: dict[str, str] = {}
    for k, v in request.headers:
        headers[k] = f"{headers[k]}, {v}" if k in headers else v
    try:
        body, is_b64 = request.body.decode("utf-8"), False
    except UnicodeDecodeError:
        body, is_b64 = base64.b64encode(request.body).decode(), True
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    parsed: Any = None
    form = None
    if not is_b64 and (ctype == "application/json" or ctype.endswith("+json")):
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
    elif not is_b64 and ctype == "application/x-www-form-urlencoded":
        form = {k: v[0] if len(v) == 1 else v
                for k, v in parse_qs(body, keep_blank_values=True).items()}
    return {
        "id": request.request_id, "path": request.path, "method": request.method,
        "verified_by": verify, "headers": headers, "query": request.query_string,
        "body": body, "is_base64": is_b64, "json": parsed, "form": form,
        "source_ip": request.source_ip,
        "received_at": datetime.fromtimestamp(received_at, timezone.utc)
        .strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
    }


def _delivery_key(verify: str, headers: Mapping[str, str], event: dict[str, Any]) -> str:
    """The same delivery sent twice (a sender's retry, a replay within the tolerance) is
    enqueued once: by the sender's delivery id where it has one, else the signature."""
    if verify == "github" and headers.get("x-github-delivery"):
        return "github:" + headers["x-github-delivery"]
    if verify == "stripe" and isinstance(event.get("json"), dict) and event["json"].get("id"):
        return f"stripe:{event['json']['id']}"
    sig = {"github": "x-hub-signature-256", "stripe": "stripe-signature",
           "slack": "x-slack-signature"}.get(verify)
    if sig and headers.get(sig):
        return f"{verify}:{headers[sig]}"
    return f"{verify}:{hashlib.sha256(event['body'].encode()).hexdigest()}"


class Webhooks:
    """The webhook functions of one app and the receiver the gateway calls."""

    def __init__(self, messaging: Any, configs: dict[str, Any], *,
                 clock: Callable[[], float] = time.time,
                 environ: Mapping[str, str] = os.environ) -> None:
        self.messaging = messaging
        self.clock = clock
        self.environ = environ
        self.configs: dict[str, Any] = {}
        self.configure(configs)

    def configure(self, configs: dict[str, Any]) -> None:
        self.configs = {n: c for n, c in configs.items() if c.webhook is not None}
        for cfg in self.configs.values():
            if not self._secret(cfg):
                logs.event("webhook secret is not set: every request will be refused",
                           logging.WARNING, function=cfg.name, path=cfg.webhook.path,
                           secret_env=cfg.webhook.secret_env)

    def _secret(self, cfg: Any) -> bytes | None:
        name = cfg.webhook.secret_env
        value = cfg.environment.get(name) or self.environ.get(name)
        return value.encode() if value else None

    async def receive(self, function: str, request: HttpRequest) -> tuple[str, dict[str, Any]]:
        """("accepted", {"id"}) once durable; otherwise (error code, detail)."""
        cfg = self.configs.get(function)
        if cfg is None:
            return "not_found", {}
        hook = cfg.webhook
        secret = self._secret(cfg)
        if secret is None:
            logs.event("webhook refused: secret not set", logging.ERROR, function=function,
                       secret_env=hook.secret_env, request_id=request.request_id)
            return "unavailable", {"errorMessage": f"the webhook's secret is not configured "
                                   f"(set {hook.secret_env})"}
        headers = {k: v for k, v in request.headers}
        now = self.clock()
        try:
            VERIFIERS[hook.verify](secret, request.body, headers, now=now,
                                   tolerance_s=hook.tolerance_s, header=hook.header)
        except SignatureError as exc:
            logs.event("webhook signature rejected", logging.WARNING, function=function,
                       path=request.path, reason=str(exc), request_id=request.request_id,
                       source_ip=request.source_ip)
            return "invalid_signature", {"errorMessage": str(exc)}
        event = webhook_event(request, hook.verify, now)
        body = json.dumps(event, separators=(",", ":")).encode()
        queue = f"_async.{function}"
        if len(body) > DEFAULT_MAX_MESSAGE_BYTES:
            return "payload_too_large", {"limitBytes": DEFAULT_MAX_MESSAGE_BYTES}
        trace = headers.get("traceparent") or new_traceparent()
        try:
            (mid,) = await self.messaging.broker.send(queue, [OutMessage(
                body=body, trace=trace, attributes={"webhook": hook.path},
                dedup_key=_delivery_key(hook.verify, headers, event))])
        except MessageTooLarge:
            return "payload_too_large", {"limitBytes": DEFAULT_MAX_MESSAGE_BYTES}
        return "accepted", {"id": mid}


__all__ = ["SignatureError", "VERIFIERS", "Webhooks", "verify_github", "verify_hmac_sha256",
           "verify_slack", "verify_stripe", "webhook_event"]
