"""The HTTP front door: a lean raw-ASGI callable on the hot path.

Framework request/response objects cost as much CPU per request as the whole
gateway -> worker hop (shared/research/invocation-path-prototype.md), so routes are
served here directly: match, read the body under the size limit, hand the raw request to
the invoker, write the response. Everything under `/_squall/` (health, API, later the
dashboard) goes to a Starlette app, where convenience matters more than microseconds.

Every response carries `x-request-id`; every error is JSON with a stable `code`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Awaitable, Callable, Protocol

from ..ids import request_id
from ..observe import logs
from ..runtime.adapters import http_request_to_wire
from ..types import HttpRequest, InvocationResult
from ..security.guard import GatewaySecurity, Reject
from .errors import STATUS_CODES, error_body
from .hardening import (BodyWatch, Disconnected, GatewayLimits, TooLarge, TooSlow, bounded,
                        read_body)
from .openapi import DOC_PATHS, docs_page, openapi_document
from .router import MethodNotAllowed, Router

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]],
                   Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]


class Invoker(Protocol):
    async def invoke(self, function: str, kind: str, payload: Any, *,
                     request_id: str | None = None) -> InvocationResult: ...


def routes_from_manifest(manifest: dict[str, Any]) -> list[tuple[str, str, str]]:
    """HTTP functions' routes and webhook routes (one table: one lookup per request)."""
    return [
        (method, path, f["name"])
        for f in manifest["functions"]
        if f["kind"] == "http" or f.get("webhook")
        for method, path in f["routes"]
    ]


class Gateway:
    def __init__(
        self,
        invoker: Invoker,
        manifest: dict[str, Any],
        *,
        max_body_bytes: int | None = None,
        expose_errors: bool = True,
        admin: ASGIApp | None = None,
        webhooks: Any = None,
        security: GatewaySecurity | None = None,
    ) -> None:
        self.invoker = invoker
        # auth, throttles, validation, CORS (squall.security.guard); in-memory keys if none
        self.security = security if security is not None else GatewaySecurity(invoker)
        self.expose_errors = expose_errors
        self.admin = admin
        self.webhooks = webhooks  # squall.sources.webhooks.Webhooks: verify, enqueue, 202
        self.tracer: Any = None  # squall.observe.traces.Tracer: a server span per request
        self.metrics: ASGIApp | None = None  # GET /metrics (squall.observe.live)
        self._max_body_override = max_body_bytes
        self.update(manifest)

    def update(self, manifest: dict[str, Any]) -> None:
        """Swap in a new route table (hot reload)."""
        self.router = Router(routes_from_manifest(manifest))
        self._webhook_functions = {f["name"] for f in manifest["functions"] if f.get("webhook")}
        self.max_body_bytes = self._max_body_override or manifest.get("max_body_bytes",
                                                                       6 * 1024 * 1024)
        self.security.configure(manifest)
        self._policies = self.security.policies  # only routes that declare something
        self._app_throttled = self.security.app_throttle is not None
        self.limits = limits = GatewayLimits(self.security.limits)
        if getattr(self, "_body_watch", None) is None:  # slow clients: one sweeper, no timers
            self._body_watch = BodyWatch(limits.body_timeout_s)
        self._body_watch.timeout_s = limits.body_timeout_s
        # functions allowed to run longer than the gateway waits: bounded per request
        self._slow = {f["name"] for f in manifest["functions"]
                      if f.get("timeout_s", 3.0) >= limits.request_timeout_s}
        self.manifest = manifest
        self._openapi: bytes | None = None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/_squall/") and self.admin is not None:
            await self.admin(scope, receive, send)
            return
        if path == "/metrics" and self.metrics is not None:
            await self.metrics(scope, receive, send)
            return
        rid = request_id()
        method: str = scope["method"]
        refused = self.limits.refuse(scope)  # 414 / 431, whatever the route
        if refused is not None:
            await _send(send, *error_body(refused[0], rid, **refused[1]),
                        _JSON + [(b"connection", b"close")], rid)
            return
        try:
            match = self.router.match(method, path)
        except MethodNotAllowed as exc:
            if method == "OPTIONS" and self.security.has_cors and await self._preflight(
                    scope, path, rid, send):
                return
            status, body = error_body("method_not_allowed", rid)
            await _send(send, status, body, _JSON + [(b"allow", ", ".join(exc.allowed).encode())],
                        rid)
            return
        if match is None:
            if path in DOC_PATHS and method in ("GET", "HEAD"):
                await self._docs(path, send, rid)
                return
            await _send(send, *error_body("not_found", rid), _JSON, rid)
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        policy = self._policies.get(match.target.function) if self._policies else None
        if (method == "OPTIONS" and policy is not None and policy.cors
                and match.target.route_key.startswith("ANY ")
                and _header(headers, "origin") is not None
                and _header(headers, "access-control-request-method") is not None
                and await self._preflight(scope, path, rid, send)):
            return  # a CORS preflight to an ANY route: answered here, as API Gateway does
        context = None
        try:
            if self._app_throttled:
                self.security.check_app()
            if policy is not None:
                context = await self.security.admit(
                    policy, headers, scope.get("query_string", b"").decode("latin-1"),
                    {"method": method, "path": path, "route": match.target.route_key,
                     "source_ip": (scope.get("client") or ("",))[0]}, rid)
            body = await read_body(receive, headers, self.max_body_bytes, self._body_watch)
            if len(body) > self.limits.min_deep_bytes and self.limits.too_deep(body, headers):
                raise Reject("bad_request", {"errorMessage": "the JSON body is nested deeper "
                                             f"than {self.limits.max_depth} levels"})
            if policy is not None and policy.validator is not None:
                self.security.validate(policy, body)
        except Reject as exc:
            await self._reject(exc, policy, headers, rid, send)
            return
        except TooLarge:
            status, payload = error_body("payload_too_large", rid,
                                         limitBytes=self.max_body_bytes)
            await _send(send, status, payload, _JSON + [(b"connection", b"close")], rid)
            return
        except TooSlow:
            await _send(send, *error_body("request_timeout", rid,
                                          limitSeconds=self.limits.body_timeout_s),
                        _JSON + [(b"connection", b"close")], rid)
            return
        except Disconnected:  # the client went away mid-body: nothing to invoke or answer
            return
        client = scope.get("client")
        request = HttpRequest(
            method=method,
            path=path,
            query_string=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=body,
            path_params=match.params,
            route=match.target.route_key,
            source_ip=client[0] if client else "127.0.0.1",
            scheme=scope.get("scheme", "http"),
            http_version=scope.get("http_version", "1.1"),
            time_epoch_ms=int(time.time() * 1000),
            request_id=rid,
            authorizer=context,
        )
        if self._webhook_functions and match.target.function in self._webhook_functions:
            await self._webhook(match.target.function, request, send)
            return
        try:
            trace = None
            for k, v in headers:
                if k == "traceparent":
                    trace = v.partition(";")[0]  # no loop lineage from clients
                    break
            tracer = self.tracer
            if tracer is not None:
                t0 = time.time()
                trace, parent = tracer.enter(trace)
            invocation = self.invoker.invoke(
                match.target.function, "http", http_request_to_wire(request), request_id=rid,
                trace=trace)
            result = await (invocation if match.target.function not in self._slow else bounded(
                invocation, match.target.function, rid, self.limits.request_timeout_s))
            if tracer is not None:
                tracer.gateway(trace, parent, request, match.target.function, t0, result)
        except Exception as exc:  # the runtime could not run it at all
            logs.event("invocation could not start", logging.ERROR, request_id=rid,
                       function=match.target.function, error=f"{type(exc).__name__}: {exc}")
            detail = {"errorMessage": str(exc)} if self.expose_errors else {}
            await _send(send, *error_body("unavailable", rid, **detail), _JSON, rid)
            return
        cors = (self.security.cors_headers(policy, _header(headers, "origin"))
                if policy is not None and policy.cors else [])
        if result.ok:
            resp = result.value
            out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers
                   if k != "content-length" and k != "transfer-encoding"]
            await _send(send, resp.status, resp.body, out + cors if cors else out, rid)
            return
        code = STATUS_CODES.get(result.status, "function_error")
        if result.error_type == "Runtime.InvalidResponse":
            code = "bad_function_response"
        detail: dict[str, Any] = {}
        if self.expose_errors:
            detail = {"errorType": result.error_type, "errorMessage": result.error_message}
        elif code == "throttled":
            detail = {"errorMessage": result.error_message}
        status, payload = error_body(code, rid, **detail)
        await _send(send, status, payload, _JSON + cors, rid)

    async def _reject(self, exc: Reject, policy: Any, headers: list[tuple[str, str]], rid: str,
                      send: Callable) -> None:
        """A refusal by the guard or the limits: its JSON error, with CORS headers so a
        browser can read it."""
        extra = list(exc.headers)
        if policy is not None and policy.cors:
            extra += self.security.cors_headers(policy, _header(headers, "origin"))
        await _send(send, *error_body(exc.code, rid, **exc.detail), _JSON + extra, rid)

    async def _preflight(self, scope: dict, path: str, rid: str, send: Callable) -> bool:
        """Answer a CORS preflight for a route that declares CORS; False if none does.
        The route is the one the browser's actual request (Access-Control-Request-Method)
        will take. A preflight reaches a function only through a route declared with
        OPTIONS itself, or an ANY route whose actual route does not declare `cors=`."""
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        wanted = _header(headers, "access-control-request-method")
        try:
            match = self.router.match(wanted or "", path) if wanted else None
        except MethodNotAllowed:
            match = None
        policy = self._policies.get(match.target.function) if match is not None else None
        if policy is None or not policy.cors:
            return False
        try:
            out = self.security.preflight(policy, _header(headers, "origin"), wanted or "")
        except Reject as exc:
            await self._reject(exc, None, headers, rid, send)
            return True
        await _send(send, 204, b"", out, rid)
        return True

    async def _docs(self, path: str, send: Callable, rid: str) -> None:
        """GET /openapi.json and /docs, generated once per route table."""
        if self._openapi is None:
            self._openapi = json.dumps(openapi_document(self.manifest),
                                       separators=(",", ":")).encode()
        if path == "/openapi.json":
            await _send(send, 200, self._openapi, _JSON, rid)
            return
        page = docs_page(json.loads(self._openapi)).encode()
        await _send(send, 200, page, [(b"content-type", b"text/html; charset=utf-8")], rid)

    async def _webhook(self, function: str, request: HttpRequest, send: Callable) -> None:
        """A webhook route: verified and made durable by `self.webhooks`, then 202."""
        rid = request.request_id
        if self.webhooks is None:
            await _send(send, *error_body("unavailable", rid), _JSON, rid)
            return
        try:
            code, detail = await self.webhooks.receive(function, request)
        except Exception as exc:  # the broker is down: the sender will retry
            logs.event("webhook could not be made durable", logging.ERROR, request_id=rid,
                       function=function, error=f"{type(exc).__name__}: {exc}")
            detail = {"errorMessage": str(exc)} if self.expose_errors else {}
            await _send(send, *error_body("unavailable", rid, **detail), _JSON, rid)
            return
        if code == "accepted":
            body = json.dumps({"message": "Accepted", "requestId": rid, **detail},
                              separators=(",", ":")).encode()
            await _send(send, 202, body, _JSON, rid)
            return
        if not self.expose_errors and code != "invalid_signature":
            detail = {}
        await _send(send, *error_body(code, rid, **detail), _JSON, rid)


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k == name:
            return v
    return None


async def _send(send: Callable, status: int, body: bytes, headers: list, rid: str) -> None:
    headers = list(headers)
    headers.append((b"content-length", str(len(body)).encode()))
    headers.append((b"x-request-id", rid.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Callable, send: Callable) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
