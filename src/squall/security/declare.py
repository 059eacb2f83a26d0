"""How an app declares its gateway security: a mixin of `App`, pure data, no I/O.

    @app.http("POST", "/orders", auth="api_key", throttle=Throttle(rate=5, burst=10),
              model=Order, cors=Cors(origins=["https://shop.example"]))
    @app.http("GET", "/me", auth=JWT(issuer="https://id.example", audience="shop",
              jwks_url="https://id.example/.well-known/jwks.json"), scopes=["me:read"])
    @app.authorizer(identity="header:authorization", ttl_s=300)    # a custom authorizer
    def check_token(identity, ctx): return {"allow": True, "claims": {"sub": "u1"}}
    app.gateway(throttle=Throttle(rate=1000, burst=2000), limits=Limits(max_json_depth=32))

Each route's settings become `RouteSecurity` (frozen) and then plain data in the manifest
("security"), which the gateway (squall.security.guard) reads. A pydantic model is turned
into its JSON Schema here, so no user class crosses to the supervisor; the class itself
stays with the app (`request_model`), for the worker to run its validators.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from ..config import ConfigError
from .models import is_model_class

ROUTE_SETTINGS = ("auth", "scopes", "throttle", "model", "cors", "summary", "tags")
_SECRET_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
_IDENTITY_RE = re.compile(r"^(header|query):[A-Za-z0-9_.-]{1,128}$")
JWT_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384",
                  "PS256")


def is_positive(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


@dataclass(frozen=True, slots=True)
class Throttle:
    """A token bucket: `rate` requests per second on average, bursts up to `burst`."""

    rate: float
    burst: int | None = None  # default: max(1, ceil(rate))

    def __post_init__(self) -> None:
        if not is_positive(self.rate):
            raise ConfigError(f"Throttle: rate must be a number of requests per second > 0, "
                              f"got {self.rate!r}")
        if self.burst is None:
            object.__setattr__(self, "burst", max(1, math.ceil(self.rate)))
        if not isinstance(self.burst, int) or isinstance(self.burst, bool) or self.burst < 1:
            raise ConfigError(f"Throttle: burst must be a whole number >= 1, got {self.burst!r}")

    def to_manifest(self) -> dict[str, Any]:
        return {"rate": self.rate, "burst": self.burst}


@dataclass(frozen=True, slots=True)
class Limits:
    """Gateway limits, each answered with its own JSON error."""

    max_header_bytes: int = 16 * 1024  # all header names and values: 431
    max_url_bytes: int = 8 * 1024  # path + query string: 414
    request_timeout_s: float = 29.0  # API Gateway's integration timeout: 504
    body_timeout_s: float = 10.0  # a client that is this slow sending its body: 408
    max_json_depth: int = 64  # nesting of a JSON body: 400

    def __post_init__(self) -> None:
        for name in ("max_header_bytes", "max_url_bytes", "max_json_depth"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"Limits: {name} must be a whole number >= 1, got {v!r}")
        for name in ("request_timeout_s", "body_timeout_s"):
            if not is_positive(getattr(self, name)):
                raise ConfigError(f"Limits: {name} must be seconds > 0, "
                                  f"got {getattr(self, name)!r}")

    def to_manifest(self) -> dict[str, Any]:
        return {"max_header_bytes": self.max_header_bytes, "max_url_bytes": self.max_url_bytes,
                "request_timeout_s": self.request_timeout_s,
                "body_timeout_s": self.body_timeout_s, "max_json_depth": self.max_json_depth}


@dataclass(frozen=True, slots=True)
class Cors:
    """CORS for one route: which origins, methods and headers a browser may use."""

    origins: tuple[str, ...] = ("*",)
    methods: tuple[str, ...] = ()  # default: the route's own method
    headers: tuple[str, ...] = ("content-type", "authorization", "x-api-key")
    expose_headers: tuple[str, ...] = ("x-request-id",)
    credentials: bool = False
    max_age_s: int = 600

    def __post_init__(self) -> None:
        for name in ("origins", "methods", "headers", "expose_headers"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            if not all(isinstance(v, str) and v for v in value):
                raise ConfigError(f"Cors: {name} must be a list of non-empty strings")
            object.__setattr__(self, name, tuple(value))
        if self.credentials and "*" in self.origins:
            raise ConfigError("Cors: credentials=True needs explicit origins, not '*' "
                              "(browsers refuse the combination)")
        if not isinstance(self.max_age_s, int) or self.max_age_s < 0:
            raise ConfigError("Cors: max_age_s must be a whole number >= 0")

    def to_manifest(self) -> dict[str, Any]:
        return {"origins": list(self.origins), "methods": list(self.methods),
                "headers": list(self.headers), "expose_headers": list(self.expose_headers),
                "credentials": self.credentials, "max_age_s": self.max_age_s}


@dataclass(frozen=True, slots=True)
class JWT:
    """A JSON Web Token authorizer: `Authorization: Bearer <token>`, verified with PyJWT.

    Keys: `jwks_url` (fetched and cached for `jwks_cache_s`), `jwks_file`, or for HS256 a
    shared secret from a Squall secret (`secret=`, see `squall secrets set`) or an
    environment variable of the server (`secret_env=`)."""

    issuer: str | None = None
    audience: str | None = None
    algorithms: tuple[str, ...] = ("RS256",)
    jwks_url: str | None = None
    jwks_file: str | None = None
    secret: str | None = None
    secret_env: str | None = None
    leeway_s: float = 30.0  # clock skew allowed on exp/nbf/iat
    jwks_cache_s: float = 300.0
    scope_claim: str = "scope"  # space-separated string or list ("scp" for Azure AD)

    def __post_init__(self) -> None:
        algs = (self.algorithms,) if isinstance(self.algorithms, str) else tuple(self.algorithms)
        object.__setattr__(self, "algorithms", algs)
        bad = [a for a in algs if a not in JWT_ALGORITHMS]
        if not algs or bad:
            raise ConfigError(f"JWT: algorithms must be some of {', '.join(JWT_ALGORITHMS)}; "
                              f"got {list(algs)!r}")
        sources = [s for s in (self.jwks_url, self.jwks_file, self.secret, self.secret_env) if s]
        if len(sources) != 1:
            raise ConfigError("JWT: give exactly one key source: jwks_url=, jwks_file=, "
                              "secret= (a squall secret) or secret_env=")
        symmetric = all(a.startswith("HS") for a in algs)
        if (self.secret or self.secret_env) and not symmetric:
            raise ConfigError("JWT: a shared secret only verifies HS* algorithms; use a JWKS "
                              "for RS*/ES*/PS*")
        if (self.jwks_url or self.jwks_file) and any(a.startswith("HS") for a in algs):
            raise ConfigError("JWT: HS* algorithms need a shared secret, not a JWKS (mixing "
                              "them allows key-confusion attacks)")
        if self.jwks_url is not None and not self.jwks_url.startswith(("https://", "http://")):
            raise ConfigError(f"JWT: jwks_url must be an http(s) URL, got {self.jwks_url!r}")
        if not isinstance(self.leeway_s, (int, float)) or not 0 <= self.leeway_s <= 300:
            raise ConfigError(f"JWT: leeway_s must be seconds from 0 to 300, got {self.leeway_s!r}")
        if not is_positive(self.jwks_cache_s):
            raise ConfigError("JWT: jwks_cache_s must be seconds > 0")

    def to_manifest(self) -> dict[str, Any]:
        return {"type": "jwt", "issuer": self.issuer, "audience": self.audience,
                "algorithms": list(self.algorithms), "jwks_url": self.jwks_url,
                "jwks_file": self.jwks_file, "secret": self.secret,
                "secret_env": self.secret_env, "leeway_s": self.leeway_s,
                "jwks_cache_s": self.jwks_cache_s, "scope_claim": self.scope_claim}


@dataclass(frozen=True, slots=True)
class RouteSecurity:
    """What one HTTP function declared about auth, throttling, validation and CORS."""

    auth: dict[str, Any] | None = None  # {"type": "api_key" | "jwt" | "function", ...}
    scopes: tuple[str, ...] = ()
    throttle: Throttle | None = None
    model: dict[str, Any] | None = None  # JSON Schema of the request body
    cors: Cors | None = None
    summary: str = ""
    tags: tuple[str, ...] = ()

    def to_manifest(self) -> dict[str, Any]:
        return {"auth": self.auth, "scopes": list(self.scopes),
                "throttle": self.throttle.to_manifest() if self.throttle else None,
                "model": self.model, "cors": self.cors.to_manifest() if self.cors else None,
                "summary": self.summary, "tags": list(self.tags)}


def model_schema(owner: str, model: Any) -> dict[str, Any]:
    """A pydantic model class (v2) or a JSON Schema dict, as a JSON Schema dict."""
    if isinstance(model, dict):
        if model.get("type") not in (None, "object", "array", "string", "number", "integer",
                                     "boolean", "null") and "$ref" not in model:
            raise ConfigError(f"{owner}: model is not a JSON Schema (type {model.get('type')!r})")
        return dict(model)
    schema_of = getattr(model, "model_json_schema", None)
    if callable(schema_of):
        return schema_of()
    raise ConfigError(f"{owner}: model must be a pydantic model class or a JSON Schema dict, "
                      f"got {model!r}")


def _auth(owner: str, auth: Any, authorizers: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    if auth is None:
        return None
    if auth == "api_key":
        return {"type": "api_key"}
    if isinstance(auth, JWT):
        return auth.to_manifest()
    if isinstance(auth, str) and auth in authorizers:
        return {"type": "function", "function": auth, **authorizers[auth]}
    known = ", ".join(sorted(authorizers)) or "none declared"
    raise ConfigError(f"{owner}: auth must be None, 'api_key', a squall.security.JWT(...) or "
                      f"the name of an @app.authorizer function ({known}); got {auth!r}. "
                      "Declare authorizers before the routes that use them.")


def _names(owner: str, setting: str, value: Any) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value or ())
    if not all(isinstance(v, str) and v for v in items):
        raise ConfigError(f"{owner}: {setting} must be a list of non-empty strings")
    return items


class DeclaresSecurity:
    """`App` mixin: route security, authorizers, app-wide throttle and limits, secrets."""

    name: str
    function: Any

    @property
    def route_security(self) -> dict[str, RouteSecurity]:
        return self.__dict__.setdefault("_route_security", {})

    @property
    def authorizers(self) -> dict[str, dict[str, Any]]:
        return self.__dict__.setdefault("_authorizers", {})

    @property
    def function_secrets(self) -> dict[str, tuple[str, ...]]:
        return self.__dict__.setdefault("_function_secrets", {})

    def take_route_security(self, fname: str, settings: dict[str, Any]) -> RouteSecurity | None:
        """Pop the security settings of an HTTP route out of `settings` and record them."""
        found = {k: settings.pop(k) for k in ROUTE_SETTINGS if k in settings}
        if not found:
            return None
        owner = f"function {fname!r}"
        model = found.get("model")
        throttle = found.get("throttle")
        if isinstance(throttle, dict):
            throttle = Throttle(**throttle)
        if throttle is not None and not isinstance(throttle, Throttle):
            raise ConfigError(f"{owner}: throttle must be a squall.security.Throttle")
        cors = found.get("cors")
        if cors is True:
            cors = Cors()
        if cors is not None and cors is not False and not isinstance(cors, Cors):
            raise ConfigError(f"{owner}: cors must be True or a squall.security.Cors")
        sec = RouteSecurity(
            auth=_auth(owner, found.get("auth"), self.authorizers),
            scopes=_names(owner, "scopes", found.get("scopes")),
            throttle=throttle,
            model=model_schema(owner, model) if model is not None else None,
            cors=cors or None,
            summary=str(found.get("summary") or ""),
            tags=_names(owner, "tags", found.get("tags")),
        )
        if sec.scopes and (sec.auth is None or sec.auth["type"] == "api_key"):
            raise ConfigError(f"{owner}: scopes need auth=JWT(...) or an authorizer function")
        previous = self.route_security.get(fname)
        if previous is not None and previous != sec:
            raise ConfigError(f"{owner}: registered again with other security settings")
        self.route_security[fname] = sec
        if is_model_class(model):  # its own validators run in the worker (security.models)
            self.__dict__.setdefault("_request_models", {})[fname] = model
        return sec

    def request_model(self, fname: str) -> type | None:
        """The pydantic class an HTTP function declared as `model=`, if any: the worker
        validates bodies with it before the handler (the manifest has its JSON Schema)."""
        return self.__dict__.get("_request_models", {}).get(fname)

    def take_secrets(self, fname: str, settings: dict[str, Any]) -> None:
        """Pop `secrets=` (names of squall secrets the function may read)."""
        if "secrets" not in settings:
            return
        names = _names(f"function {fname!r}", "secrets", settings.pop("secrets"))
        for n in names:
            if not _SECRET_RE.fullmatch(n):
                raise ConfigError(f"function {fname!r}: secret name {n!r} is invalid: use "
                                  "letters, digits, '_', '.', '-', starting with a letter")
        self.function_secrets[fname] = names

    def authorizer(self, fn: Callable[..., Any] | None = None, *, name: str | None = None,
                   identity: str = "header:authorization", ttl_s: float = 300.0,
                   **settings: Any) -> Any:
        """Declare a custom authorizer: `fn(request_info, ctx)` returns True/False or
        `{"allow": bool, "claims": {...}, "scopes": [...]}`. It gets `{"identity", "method",
        "path", "route", "source_ip"}`; its answer is cached per identity for `ttl_s`."""
        if not isinstance(identity, str) or not _IDENTITY_RE.fullmatch(identity):
            raise ConfigError(f"authorizer: identity must be 'header:NAME' or 'query:NAME', "
                              f"got {identity!r}")
        if not isinstance(ttl_s, (int, float)) or isinstance(ttl_s, bool) or not 0 <= ttl_s <= 3600:
            raise ConfigError(f"authorizer: ttl_s must be seconds from 0 to 3600, got {ttl_s!r}")

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            aname = name or getattr(f, "__name__", None) or "authorizer"
            self.function(name=aname, **settings)(f)
            kind, _, header = identity.partition(":")
            self.authorizers[aname] = {"identity": [kind, header.lower() if kind == "header"
                                                    else header], "ttl_s": float(ttl_s)}
            return f

        return register(fn) if fn is not None else register

    def gateway(self, *, throttle: Throttle | None = None, limits: Limits | None = None) -> None:
        """App-wide gateway settings: one token bucket in front of every route, and the
        request limits."""
        if throttle is not None and not isinstance(throttle, Throttle):
            raise ConfigError(f"app {self.name!r}: throttle must be a squall.security.Throttle")
        if limits is not None and not isinstance(limits, Limits):
            raise ConfigError(f"app {self.name!r}: limits must be a squall.security.Limits")
        self.__dict__["_gateway_throttle"] = throttle
        self.__dict__["_gateway_limits"] = limits

    def security_manifest(self) -> dict[str, Any]:
        throttle = self.__dict__.get("_gateway_throttle")
        limits = self.__dict__.get("_gateway_limits") or Limits()
        return {
            "routes": {f: s.to_manifest() for f, s in self.route_security.items()},
            "throttle": throttle.to_manifest() if throttle else None,
            "limits": limits.to_manifest(),
            "secrets": {f: list(n) for f, n in self.function_secrets.items()},
        }

    def secret(self, name: str) -> str:
        """The value of a squall secret this function declared with `secrets=[...]`."""
        invoker = self.__dict__.get("_invoker")
        if invoker is None or not hasattr(invoker, "call_service"):
            from ..app_calls import NotRunning

            raise NotRunning(f"app {self.name!r} is not running here: app.secret works inside "
                             "a function, under squall.testing or `squall run`")
        return invoker.call_service("secret", [name])
