"""`/_squall/…`: the platform's own HTTP API (Starlette; not on the hot path)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from ..events import envelope


def admin_app(state: Callable[[], dict[str, Any]],
              ingest: Callable[[list[Any]], Awaitable[list[str]]] | None = None,
              dashboard: Any = None) -> Starlette:
    """`state()` returns {"manifest": ..., "stats": ...} for the running app; `ingest` puts
    CloudEvents on the app's bus (POST /_squall/events); `dashboard` (an ASGI app) serves
    every other path under /_squall/ (squall.dashboard)."""

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def functions(request: Request) -> JSONResponse:
        s = state()
        return JSONResponse({"app": s["manifest"]["app"], "functions": s["manifest"]["functions"],
                             "pools": s["stats"]})

    async def events(request: Request) -> JSONResponse:
        """CloudEvents over HTTP (binary, structured or batch mode) onto the bus: 202."""
        if ingest is None:
            return JSONResponse({"message": "no event bus here", "code": "unavailable"}, 503)
        body = await request.body()
        if len(body) > 1024 * 1024:
            return JSONResponse({"message": "Request Entity Too Large",
                                 "code": "payload_too_large", "limitBytes": 1024 * 1024}, 413)
        try:
            parsed = envelope.from_http(list(request.headers.items()), body)
        except envelope.InvalidEvent as exc:
            return JSONResponse({"message": exc.message, "code": "bad_request"}, 400)
        batch = parsed if isinstance(parsed, list) else [parsed]
        ids = await ingest(batch)
        return JSONResponse({"accepted": len(ids), "ids": ids}, 202)

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"message": "Not Found", "code": "not_found"}, status_code=404)

    return Starlette(
        routes=[Route("/_squall/health", health), Route("/_squall/api/functions", functions),
                Route("/_squall/events", events, methods=["POST"])]
        + ([Mount("", app=dashboard)] if dashboard is not None else []),  # the rest
        exception_handlers={404: not_found},
    )
