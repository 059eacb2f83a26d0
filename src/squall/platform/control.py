"""The platform's front door: `/_platform/...` is the control API (admin token), and
`/NAME/...` (or `/NAME@ALIAS/...`) is app NAME's routes through alias `prod` (or ALIAS).

Control API (JSON; errors are JSON with a stable `code`, as on the gateway):
    GET    /_platform/health                       no token
    GET    /_platform/apps                         apps, aliases, this node's versions
    POST   /_platform/apps/NAME/versions           body: the package (.tar.gz); query:
           alias=prod|"" (none: register only), description, canary=PERCENT, window_s,
           max_error_rate, min_requests
    GET    /_platform/apps/NAME/versions           GET /_platform/apps/NAME/history
    PUT    /_platform/apps/NAME/aliases/ALIAS      {"weights": "7:90,8:10", "canary":
           {"window_s", "max_error_rate", "min_requests"} | null, "provisioned": N}
    POST   /_platform/apps/NAME/rollback           {"alias": "prod", "version": N | null}
    PUT    /_platform/apps/NAME/quotas             {"concurrency": N, "storage_mb": N, ...}
    PUT    /_platform/apps/NAME/grants/CALLER      {"functions": ["charge"] | ["*"]};
           DELETE revokes: CALLER's code may then app.invoke("NAME/charge", ...)
    DELETE /_platform/apps/NAME
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..gateway.errors import ERRORS
from ..ids import request_id as new_request_id
from .hosts import send_error
from .service import DEFAULT_ALIAS, Platform, PlatformError
from .traffic import TrafficError, parse_weights

PREFIX = "/_platform"


def _fail(code: str, message: str, detail: str = "") -> JSONResponse:
    status, text = ERRORS[code]
    body: dict[str, Any] = {"message": text, "code": code, "requestId": new_request_id(),
                            "errorMessage": message}
    if detail:
        body["detail"] = detail
    return JSONResponse(body, status)


async def _json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > 64 * 1024:
        raise PlatformError("payload_too_large", "control requests are at most 64 KiB")
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise PlatformError("bad_request", f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PlatformError("bad_request", "the body must be a JSON object")
    return data


def _number(request: Request, name: str, kind: type) -> Any:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return kind(raw)
    except ValueError:
        raise PlatformError("bad_request", f"{name}={raw!r} is not a {kind.__name__}") from None


def control_app(platform: Platform, token: str, max_package_bytes: int) -> Starlette:
    def endpoint(fn: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Any]]:
        async def wrapped(request: Request) -> JSONResponse:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return _fail("unauthorized", "a valid admin token is required: "
                             "Authorization: Bearer $SQUALL_ADMIN_TOKEN")
            try:
                out = await fn(request)
            except PlatformError as exc:
                return _fail(exc.code, str(exc), exc.detail)
            return JSONResponse(out[1], out[0]) if isinstance(out, tuple) else JSONResponse(out)
        return wrapped

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @endpoint
    async def apps(request: Request) -> Any:
        return {"apps": platform.apps()}

    @endpoint
    async def deploy(request: Request) -> Any:
        app = request.path_params["app"]
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > max_package_bytes:
            raise PlatformError("payload_too_large", f"the package is {size} bytes, over the "
                                f"limit of {max_package_bytes}")
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_package_bytes:
                raise PlatformError("payload_too_large", "the package is over the limit of "
                                    f"{max_package_bytes} bytes")
            chunks.append(chunk)
        q = request.query_params
        alias = q.get("alias", DEFAULT_ALIAS) or None
        percent = _number(request, "canary", int)
        canary = None if percent is None else {
            "percent": percent, "window_s": _number(request, "window_s", float),
            "max_error_rate": _number(request, "max_error_rate", float),
            "min_requests": _number(request, "min_requests", int)}
        info = await platform.deploy(app, b"".join(chunks), description=q.get("description", ""),
                                     alias=alias, canary=canary)
        return 201, info

    @endpoint
    async def versions(request: Request) -> Any:
        return {"versions": platform.versions(request.path_params["app"])}

    @endpoint
    async def history(request: Request) -> Any:
        return {"history": platform.history(request.path_params["app"])}

    @endpoint
    async def alias(request: Request) -> Any:
        body = await _json(request)
        weights = body.get("weights")
        try:
            if isinstance(weights, dict):
                weights = ",".join(f"{v}:{w}" for v, w in weights.items())
            parsed = parse_weights(str(weights if weights is not None else ""))
        except TrafficError as exc:
            raise PlatformError("bad_request", str(exc)) from None
        canary = body.get("canary")
        if canary is not None and not isinstance(canary, dict):
            raise PlatformError("bad_request", "canary must be an object or null")
        provisioned = body.get("provisioned")
        if provisioned is not None and (not isinstance(provisioned, int)
                                        or isinstance(provisioned, bool)):
            raise PlatformError("bad_request", "provisioned must be a whole number")
        try:
            record = await platform.set_alias(
                request.path_params["app"], request.path_params["alias"], parsed,
                canary={k: v for k, v in (canary or {}).items() if v is not None}
                if canary is not None else None, provisioned=provisioned)
        except TypeError as exc:  # an unknown canary option
            raise PlatformError("bad_request", f"canary: {exc}") from None
        return {"alias": record.name, "weights": {str(v): w for v, w in record.weights.items()},
                "canary": record.canary, "provisioned": record.provisioned}

    @endpoint
    async def rollback(request: Request) -> Any:
        body = await _json(request)
        version = body.get("version")
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            raise PlatformError("bad_request", "version must be a whole number")
        record = await platform.rollback(request.path_params["app"],
                                         str(body.get("alias") or DEFAULT_ALIAS), version)
        return {"alias": record.name, "weights": {str(v): w for v, w in record.weights.items()}}

    @endpoint
    async def quotas(request: Request) -> Any:
        return (await platform.set_quotas(request.path_params["app"],
                                          await _json(request))).to_dict()

    @endpoint
    async def grant(request: Request) -> Any:
        app, caller = request.path_params["app"], request.path_params["caller"]
        if request.method == "DELETE":
            await platform.set_grant(app, caller, None)
            return {"app": app, "caller": caller, "functions": []}
        functions = (await _json(request)).get("functions")
        if not isinstance(functions, list):
            raise PlatformError("bad_request", 'give {"functions": ["NAME", ...]} or ["*"]')
        await platform.set_grant(app, caller, functions)
        return {"app": app, "caller": caller, "functions": sorted(functions)}

    @endpoint
    async def delete(request: Request) -> Any:
        await platform.delete(request.path_params["app"])
        return {"deleted": request.path_params["app"]}

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return _fail("not_found", f"no control endpoint {request.method} {request.url.path}")

    async def not_allowed(request: Request, exc: Exception) -> JSONResponse:
        return _fail("method_not_allowed", f"{request.method} is not allowed on "
                     f"{request.url.path}")

    p = PREFIX + "/apps/{app}"
    return Starlette(routes=[
        Route(PREFIX + "/health", health),
        Route(PREFIX + "/apps", apps),
        Route(p + "/versions", deploy, methods=["POST"]),
        Route(p + "/versions", versions, methods=["GET"]),
        Route(p + "/history", history),
        Route(p + "/aliases/{alias}", alias, methods=["PUT"]),
        Route(p + "/rollback", rollback, methods=["POST"]),
        Route(p + "/quotas", quotas, methods=["PUT"]),
        Route(p + "/grants/{caller}", grant, methods=["PUT", "DELETE"]),
        Route(p, delete, methods=["DELETE"]),
    ], exception_handlers={404: not_found, 405: not_allowed})


class PlatformGateway:
    """ASGI: the control API, or one app's routes through one of its aliases."""

    def __init__(self, platform: Platform, control: Starlette) -> None:
        self.platform = platform
        self.control = control

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                from ..gateway.asgi import _lifespan

                await _lifespan(receive, send)
            return
        path: str = scope["path"]
        if path == PREFIX or path.startswith(PREFIX + "/"):
            await self.control(scope, receive, send)
            return
        head, _, rest = path[1:].partition("/")
        name, _, alias = head.partition("@")
        host = self.platform.hosts.get(name)
        if host is None or not host.aliases:
            await send_error(send, "not_found", errorMessage=(
                f"no app {name!r} is deployed here: routes are served under /APP/..."))
            return
        inner = dict(scope)
        inner["path"] = "/" + rest
        inner["raw_path"] = inner["path"].encode()
        inner["root_path"] = scope.get("root_path", "") + "/" + head
        await host(alias or DEFAULT_ALIAS, inner, receive, send)
