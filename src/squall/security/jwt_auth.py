"""JWT authorizers (PyJWT): HS256/RS256/ES256 and kin, keys from a JWKS URL or file
(cached), or a shared secret; `iss`, `aud`, `exp`, `nbf` checked with a bounded clock
skew; scopes from the `scope`/`scp` claim.

A JWKS URL is fetched off the event loop, at most once per `jwks_cache_s`, and again
(at most every 10 s) when a token names a `kid` the cached set lacks: key rotation works
without a restart and without letting forged `kid`s hammer the identity provider.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import jwt

MAX_TOKEN_BYTES = 8 * 1024
MAX_JWKS_BYTES = 1024 * 1024
REFETCH_MIN_S = 10.0


class AuthError(Exception):
    """An authorization failure: `code` is a gateway error code (unauthorized/forbidden)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def bearer(headers: list[tuple[str, str]]) -> str:
    for k, v in headers:
        if k == "authorization":
            scheme, _, token = v.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("unauthorized", "the Authorization header must be "
                                "'Bearer <token>'")
            token = token.strip()
            if len(token) > MAX_TOKEN_BYTES:
                raise AuthError("unauthorized", f"the token is longer than {MAX_TOKEN_BYTES} "
                                "bytes")
            return token
    raise AuthError("unauthorized", "missing Authorization: Bearer <token>")


class JwksCache:
    """One JWKS (URL or file) and its keys by `kid`."""

    def __init__(self, spec: dict[str, Any], clock: Callable[[], float] = time.monotonic) -> None:
        self.url = spec.get("jwks_url")
        self.file = spec.get("jwks_file")
        self.ttl = float(spec.get("jwks_cache_s") or 300.0)
        self.clock = clock
        self.keys: dict[str | None, Any] = {}
        self.fetched = -1e18
        self.fetches = 0
        self._lock = asyncio.Lock()

    def _load(self) -> dict[str | None, Any]:
        if self.file:
            raw = Path(self.file).read_bytes()
        else:
            with urllib.request.urlopen(self.url, timeout=5) as resp:  # noqa: S310 (http(s) checked)
                raw = resp.read(MAX_JWKS_BYTES + 1)
            if len(raw) > MAX_JWKS_BYTES:
                raise ValueError(f"the JWKS at {self.url} is larger than {MAX_JWKS_BYTES} bytes")
        jwks = jwt.PyJWKSet.from_dict(json.loads(raw))
        return {k.key_id: k for k in jwks.keys}

    async def key(self, kid: str | None) -> Any:
        now = self.clock()
        stale = now - self.fetched > self.ttl
        missing = kid not in self.keys and (kid is not None or len(self.keys) != 1)
        if stale or (missing and now - self.fetched > REFETCH_MIN_S):
            async with self._lock:
                if self.clock() - self.fetched > min(self.ttl, REFETCH_MIN_S) or stale:
                    try:
                        self.keys = await asyncio.to_thread(self._load)
                        self.fetches += 1
                    except Exception as exc:
                        if not self.keys:
                            raise AuthError("unauthorized", f"the signing keys could not be "
                                            f"loaded: {type(exc).__name__}") from None
                    self.fetched = self.clock()
        if kid in self.keys:
            return self.keys[kid]
        if kid is None and len(self.keys) == 1:
            return next(iter(self.keys.values()))
        raise AuthError("unauthorized", f"the token's key id {kid!r} is not in the JWKS")


class JwtVerifier:
    def __init__(self, spec: dict[str, Any], secret_lookup: Callable[[str], str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.algorithms = list(spec["algorithms"])
        self.jwks = JwksCache(spec, clock) if spec.get("jwks_url") or spec.get("jwks_file") \
            else None
        self._secret: str | None = None
        self._secret_lookup = secret_lookup

    def _shared_secret(self) -> str:
        if self._secret is None:
            if self.spec.get("secret_env"):
                value = os.environ.get(self.spec["secret_env"])
            elif self._secret_lookup is not None:
                value = self._secret_lookup(self.spec["secret"])
            else:
                value = None
            if not value:
                raise AuthError("unavailable", "the JWT secret is not configured on this server")
            self._secret = value
        return self._secret

    async def verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise AuthError("unauthorized", f"malformed token: {exc}") from None
        alg = header.get("alg")
        if alg not in self.algorithms:  # never "none", never an algorithm not declared
            raise AuthError("unauthorized", f"token algorithm {alg!r} is not accepted")
        if self.jwks is not None:
            key = (await self.jwks.key(header.get("kid"))).key
        else:
            key = self._shared_secret()
        options = {"require": ["exp"], "verify_aud": self.spec.get("audience") is not None,
                   "verify_iss": self.spec.get("issuer") is not None}
        try:
            return jwt.decode(token, key, algorithms=self.algorithms,
                              audience=self.spec.get("audience"), issuer=self.spec.get("issuer"),
                              leeway=float(self.spec.get("leeway_s", 30.0)), options=options)
        except jwt.ExpiredSignatureError:
            raise AuthError("unauthorized", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("unauthorized", "the token is not valid yet (nbf/iat)") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError("unauthorized", f"invalid token: {exc}") from None

    def scopes(self, claims: dict[str, Any]) -> set[str]:
        value = claims.get(self.spec.get("scope_claim") or "scope")
        if value is None and "scp" in claims:
            value = claims["scp"]
        if isinstance(value, str):
            return set(value.split())
        if isinstance(value, list):
            return {v for v in value if isinstance(v, str)}
        return set()
