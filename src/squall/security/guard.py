"""What the gateway asks before it invokes a secured route: CORS, auth, throttling,
validation. Built from the manifest's "security" section (squall.security.declare).

    preflight?  -> 204 with the CORS headers (or 403 for an origin not allowed); also
                   for an `ANY` route, which would otherwise get the OPTIONS request
    admit()     -> app-wide bucket, authorizer (API key | JWT | function), scopes,
                   route bucket, the key's usage plan (bucket + daily quota)
    validate()  -> the body against the route's model (400 with the failing fields)

Routes that declare nothing have no `RoutePolicy`: the gateway's hot path for them is
one dict lookup that misses (or none, when no route declares anything).
Every refusal is a `Reject`: a gateway error code, details for the JSON body, headers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..backends.base import StoreError
from ..observe import logs
from .authorizers import FunctionAuthorizer
from .jwt_auth import AuthError, JwtVerifier, bearer
from .keys import KeyStore
from .secrets import SecretStore
from .shared_keys import SharedQuotas
from .throttle import ThrottleCounters, Throttled, Throttles
from .validation import BodyValidator, InvalidBody


# what `ANY` stands for in a preflight answer (Access-Control-Allow-Methods)
ANY_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


class Reject(Exception):
    def __init__(self, code: str, detail: dict[str, Any] | None = None,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.detail = detail or {}
        self.headers = headers or []


@dataclass
class RoutePolicy:
    function: str
    auth: str | None = None  # api_key | jwt | function
    verifier: JwtVerifier | None = None
    authorizer: FunctionAuthorizer | None = None
    scopes: frozenset[str] = frozenset()
    throttle: tuple[float, int] | None = None
    validator: BodyValidator | None = None
    cors: dict[str, Any] | None = None
    methods: set[str] = field(default_factory=set)


def _throttled(exc: Throttled, code: str = "throttled") -> Reject:
    return Reject(code, {"errorMessage": exc.reason, "retryAfterSeconds": exc.retry_after},
                  [(b"retry-after", str(exc.retry_after).encode())])


class GatewaySecurity:
    def __init__(self, invoker: Any = None, *, keys: KeyStore | None = None,
                 secrets: SecretStore | None = None,
                 quotas: SharedQuotas | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 counters: ThrottleCounters | None = None) -> None:
        """`quotas`: daily quotas counted in the store shared by the nodes (it takes this
        gateway's wall clock and counters); None: counted here, in memory."""
        self.invoker = invoker
        self.keys = keys if keys is not None else KeyStore(None)
        self.secrets = secrets
        self.clock = clock
        self.throttles = Throttles(clock=clock, wall=wall, counters=counters)
        self.quotas = quotas
        if quotas is not None:
            quotas.wall, quotas.counters = wall, self.throttles.counters
        self.policies: dict[str, RoutePolicy] = {}
        self.app_throttle: tuple[float, int] | None = None
        self.limits: dict[str, Any] = {}
        self.has_cors = False
        # called with each new manifest (hot reload): e.g. who may read which secret
        self.on_configure: Callable[[dict[str, Any]], None] | None = None
        # called by close(): releases the shared stores (key poller, quota threads)
        self.on_close: Callable[[], None] | None = None

    def close(self) -> None:
        if self.on_close is not None:
            self.on_close()

    @property
    def counters(self) -> ThrottleCounters:
        """Allowed/throttled counts per scope, for the metrics exporter."""
        return self.throttles.counters

    def configure(self, manifest: dict[str, Any]) -> None:
        sec = manifest.get("security") or {}
        routes = {f["name"]: f["routes"] for f in manifest["functions"]}
        old = self.policies
        policies = {}
        for fname, spec in (sec.get("routes") or {}).items():
            policies[fname] = self._policy(fname, spec, {m for m, _ in routes.get(fname, [])},
                                           old.get(fname))
        t = sec.get("throttle")
        self.app_throttle = (t["rate"], t["burst"]) if t else None
        self.limits = sec.get("limits") or {}
        self.policies = policies
        self.has_cors = any(p.cors for p in policies.values())
        if self.on_configure is not None:
            self.on_configure(manifest)

    def _policy(self, fname: str, spec: dict[str, Any], methods: set[str],
                old: RoutePolicy | None) -> RoutePolicy:
        p = RoutePolicy(fname, methods=methods, scopes=frozenset(spec.get("scopes") or ()),
                        cors=spec.get("cors"))
        auth = spec.get("auth")
        if auth is not None:
            p.auth = auth["type"]
            if p.auth == "jwt":
                lookup = self.secrets.get if self.secrets is not None else None
                p.verifier = (old.verifier if old is not None and old.verifier is not None
                              and old.verifier.spec == auth else JwtVerifier(auth, lookup))
            elif p.auth == "function":
                p.authorizer = FunctionAuthorizer(self.invoker, auth["function"],
                                                  auth["identity"], auth["ttl_s"],
                                                  clock=self.clock)
        if spec.get("throttle"):
            p.throttle = (spec["throttle"]["rate"], spec["throttle"]["burst"])
        if spec.get("model") is not None:
            p.validator = BodyValidator(fname, spec["model"])
        return p

    # -- per request -------------------------------------------------------------------

    def check_app(self) -> None:
        if self.app_throttle is not None:
            try:
                self.throttles.check("app", *self.app_throttle)
            except Throttled as exc:
                raise _throttled(exc) from None

    async def admit(self, p: RoutePolicy, headers: list[tuple[str, str]], query: str,
                    info: dict[str, Any], rid: str) -> dict[str, Any] | None:
        """Authorize and throttle one request; returns what the handler sees as
        `request.authorizer` (claims, key, scopes), or None for an open route."""
        context: dict[str, Any] | None = None
        try:
            if p.auth == "api_key":
                context = self._api_key(headers)
            elif p.auth == "jwt":
                assert p.verifier is not None
                claims = await p.verifier.verify(bearer(headers))
                context = {"type": "jwt", "claims": claims,
                           "scopes": sorted(p.verifier.scopes(claims))}
            elif p.auth == "function":
                assert p.authorizer is not None
                identity = p.authorizer.identity(headers, query)
                decision = await p.authorizer.decide(identity, info, rid)
                context = {"type": "function", "claims": decision["claims"],
                           "scopes": decision["scopes"]}
        except AuthError as exc:
            extra = [(b"www-authenticate", b'Bearer realm="squall"')] \
                if exc.code == "unauthorized" and p.auth == "jwt" else []
            raise Reject(exc.code, {"errorMessage": exc.reason}, extra) from None
        if p.scopes:
            have = set(context["scopes"]) if context else set()
            missing = sorted(p.scopes - have)
            if missing:
                raise Reject("forbidden", {"errorMessage": "the token lacks the scopes this "
                                           f"route needs: {', '.join(missing)}"})
        try:
            if p.throttle is not None:
                self.throttles.check(f"route:{p.function}", *p.throttle)
            if context is not None and context["type"] == "api_key":
                plan = context.pop("_plan")
                if plan.rate is not None:
                    self.throttles.check(f"key:{context['keyId']}", plan.rate,
                                         plan.burst or max(1, int(plan.rate)))
                if plan.quota_per_day is not None:
                    await self._quota(context["keyId"], plan.quota_per_day)
        except Throttled as exc:
            raise _throttled(exc) from None
        return context

    async def _quota(self, key_id: str, per_day: int) -> None:
        try:
            if self.quotas is None:
                self.throttles.quota(key_id, per_day)
            else:
                await self.quotas.take(key_id, per_day)
        except Throttled as exc:
            raise _throttled(exc, "quota_exceeded") from None
        except StoreError as exc:  # the shared count is unknown: refuse rather than guess
            logs.event("cannot count a request against its API key's daily quota",
                       logging.ERROR, key=key_id, error=str(exc))
            raise Reject("unavailable", {"errorMessage": "the API key's daily quota cannot "
                                         "be checked right now; retry shortly"}) from None

    def _api_key(self, headers: list[tuple[str, str]]) -> dict[str, Any]:
        presented = None
        for k, v in headers:
            if k == "x-api-key":
                presented = v.strip()
                break
        if not presented:
            raise AuthError("unauthorized", "missing x-api-key header")
        key = self.keys.verify(presented)
        if key is None:
            raise AuthError("forbidden", "the API key is unknown or revoked")
        return {"type": "api_key", "keyId": key.id, "keyName": key.name, "claims": {},
                "scopes": [], "_plan": key.plan}

    @staticmethod
    def validate(p: RoutePolicy, body: bytes) -> None:
        if p.validator is None:
            return
        try:
            p.validator.validate(body)
        except InvalidBody as exc:
            detail: dict[str, Any] = {"errorMessage": exc.message}
            if exc.errors:
                detail["errors"] = exc.errors
            raise Reject("invalid_request_body", detail) from None

    # -- CORS ----------------------------------------------------------------------------

    @staticmethod
    def cors_headers(p: RoutePolicy, origin: str | None) -> list[tuple[bytes, bytes]]:
        c = p.cors
        if c is None or origin is None:
            return []
        if "*" in c["origins"] and not c["credentials"]:
            allow = "*"
        elif origin in c["origins"]:
            allow = origin
        else:
            return []
        out = [(b"access-control-allow-origin", allow.encode("latin-1")), (b"vary", b"origin")]
        if c["credentials"]:
            out.append((b"access-control-allow-credentials", b"true"))
        if c["expose_headers"]:
            out.append((b"access-control-expose-headers",
                        ", ".join(c["expose_headers"]).encode()))
        return out

    def preflight(self, p: RoutePolicy, origin: str | None,
                  method: str) -> list[tuple[bytes, bytes]]:
        """The headers of a 204 answer to a CORS preflight, or Reject."""
        base = self.cors_headers(p, origin)
        allowed = p.cors["methods"] or sorted(p.methods)
        if "ANY" in allowed:  # not a method a browser knows: name them
            allowed = sorted(set(allowed) - {"ANY"} | set(ANY_METHODS))
        if not base or method not in allowed:
            raise Reject("forbidden", {"errorMessage": f"CORS: origin {origin!r} may not "
                                       f"{method} this route"})
        return base + [
            (b"access-control-allow-methods", ", ".join(allowed).encode()),
            (b"access-control-allow-headers", ", ".join(p.cors["headers"]).encode()),
            (b"access-control-max-age", str(p.cors["max_age_s"]).encode()),
        ]
