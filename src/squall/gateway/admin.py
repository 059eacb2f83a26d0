"""`/_squall/…`: the platform's own HTTP API (Starlette; not on the hot path)."""

from __future__ import annotations

from typing import Any, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def admin_app(state: Callable[[], dict[str, Any]]) -> Starlette:
    """`state()` returns {"manifest": ..., "stats": ...} for the running app."""

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def functions(request: Request) -> JSONResponse:
        s = state()
        return JSONResponse({"app": s["manifest"]["app"], "functions": s["manifest"]["functions"],
                             "pools": s["stats"]})

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"message": "Not Found", "code": "not_found"}, status_code=404)

    return Starlette(
        routes=[Route("/_squall/health", health), Route("/_squall/api/functions", functions)],
        exception_handlers={404: not_found},
    )
