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
from .errors import STATUS_CODES, error_body
from .router import MethodNotAllowed, Router

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]],
                   Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]


class Invoker(Protocol):
    async def invoke(self, function: str, kind: str, payload: Any, *,
                     request_id: str | None = None) -> InvocationResult: ...


class _TooLarge(Exception):
    pass


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
    ) -> None:
        self.invoker = invoker
        self.expose_errors = expose_errors
        self.admin = admin
        self.webhooks = webhooks  # squall.sources.webhooks.Webhooks: verify, enqueue, 202
        self._max_body_override = max_body_bytes
        self.update(manifest)

    def update(self, manifest: dict[str, Any]) -> None:
        """Swap in a new route table (hot reload)."""
        self.router = Router(routes_from_manifest(manifest))
        self._webhook_functions = {f["name"] for f in manifest["functions"] if f.get("webhook")}
        self.max_body_bytes = self._max_body_override or manifest.get("max_body_bytes",
                                                                       6 * 1024 * 1024)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/_squall/") and self.admin is not None:
            await self.admin(scope, receive, send)
            return
        rid = request_id()
        method: str = scope["method"]
        try:
            match = self.router.match(method, path)
        except MethodNotAllowed as exc:
            status, body = error_body("method_not_allowed", rid)
            await _send(send, status, body, _JSON + [(b"allow", ", ".join(exc.allowed).encode())],
                        rid)
            return
        if match is None:
            await _send(send, *error_body("not_found", rid), _JSON, rid)
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        try:
            body = await _read_body(receive, headers, self.max_body_bytes)
        except _TooLarge:
            status, payload = error_body("payload_too_large", rid,
                                         limitBytes=self.max_body_bytes)
            await _send(send, status, payload, _JSON + [(b"connection", b"close")], rid)
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
        )
        if self._webhook_functions and match.target.function in self._webhook_functions:
            await self._webhook(match.target.function, request, send)
            return
        try:
            trace = None
            for k, v in headers:
                if k == "traceparent":
                    trace = v
                    break
            result = await self.invoker.invoke(
                match.target.function, "http", http_request_to_wire(request), request_id=rid,
                trace=trace)
        except Exception as exc:  # the runtime could not run it at all
            logs.event("invocation could not start", logging.ERROR, request_id=rid,
                       function=match.target.function, error=f"{type(exc).__name__}: {exc}")
            detail = {"errorMessage": str(exc)} if self.expose_errors else {}
            await _send(send, *error_body("unavailable", rid, **detail), _JSON, rid)
            return
        if result.ok:
            resp = result.value
            out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers
                   if k != "content-length" and k != "transfer-encoding"]
            await _send(send, resp.status, resp.body, out, rid)
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
        await _send(send, status, payload, _JSON, rid)


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


async def _read_body(receive: Callable, headers: list[tuple[str, str]], limit: int) -> bytes:
    for k, v in headers:
        if k == "content-length":
            try:
                if int(v) > limit:
                    raise _TooLarge
            except ValueError:
                pass
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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
