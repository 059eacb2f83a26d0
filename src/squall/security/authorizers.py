"""Custom authorizer functions: an ordinary Squall function decides, per identity, and
its answer is cached for the authorizer's TTL (API Gateway's Lambda authorizers).

The function gets `{"identity", "method", "path", "route", "source_ip"}` and answers
True/False or `{"allow": bool, "claims": {...}, "scopes": [...]}`. A failing or
malformed authorizer denies (never allows) and is logged.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from typing import Any, Callable

from ..observe import logs
from .jwt_auth import AuthError

MAX_CACHED = 10_000
MAX_IDENTITY_BYTES = 8 * 1024


class FunctionAuthorizer:
    def __init__(self, invoker: Any, function: str, identity: list[str], ttl_s: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.invoker = invoker
        self.function = function
        self.where, self.name = identity
        self.ttl_s = ttl_s
        self.clock = clock
        self.cache: OrderedDict[str, tuple[float, dict[str, Any] | None]] = OrderedDict()
        self.calls = 0

    def identity(self, headers: list[tuple[str, str]], query: str) -> str:
        value = None
        if self.where == "header":
            for k, v in headers:
                if k == self.name:
                    value = v
                    break
        else:
            from urllib.parse import parse_qsl

            for k, v in parse_qsl(query, keep_blank_values=True):
                if k == self.name:
                    value = v
        if not value:
            raise AuthError("unauthorized", f"missing {self.where} {self.name!r}")
        if len(value) > MAX_IDENTITY_BYTES:
            raise AuthError("unauthorized", f"the {self.where} {self.name!r} is too long")
        return value

    async def decide(self, identity: str, request: dict[str, Any], rid: str) -> dict[str, Any]:
        now = self.clock()
        hit = self.cache.get(identity)
        if hit is not None and hit[0] > now:
            decision = hit[1]
        else:
            decision = await self._ask(identity, request, rid)
            if self.ttl_s > 0:
                self.cache[identity] = (now + self.ttl_s, decision)
                self.cache.move_to_end(identity)
                while len(self.cache) > MAX_CACHED:
                    self.cache.popitem(last=False)
        if decision is None:
            raise AuthError("forbidden", f"authorizer {self.function!r} denied the request")
        return decision

    async def _ask(self, identity: str, request: dict[str, Any], rid: str) -> dict[str, Any] | None:
        self.calls += 1
        result = await self.invoker.invoke(self.function, "event",
                                           json.dumps({"identity": identity, **request}),
                                           request_id=rid)
        if not result.ok:
            logs.event("authorizer failed; request denied", logging.WARNING,
                       function=self.function, request_id=rid, error=result.error_type)
            raise AuthError("unauthorized", f"authorizer {self.function!r} failed")
        answer = result.output
        if answer is True:
            return {"claims": {}, "scopes": []}
        if isinstance(answer, dict) and answer.get("allow") is True:
            claims = answer.get("claims") or {}
            scopes = answer.get("scopes") or []
            if isinstance(claims, dict) and isinstance(scopes, list):
                return {"claims": claims, "scopes": [s for s in scopes if isinstance(s, str)]}
        if answer is False or (isinstance(answer, dict) and answer.get("allow") is False):
            return None
        logs.event("authorizer answered something else than allow/deny; request denied",
                   logging.WARNING, function=self.function, request_id=rid)
        return None
