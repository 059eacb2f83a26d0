"""The dashboard as one Starlette app: the page, its assets and its JSON API."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..backends import BrokerError, StoreError
from ..backends.workflow_store import WorkflowStoreError
from ..gateway.errors import ERRORS
from ..observe import logs
from ..ops import OpsError
from .api import api_routes
from .auth import DashboardAuth
from .settings import DashboardSettings
from .sources import Sources

STATIC = Path(__file__).parent / "static"
PREFIX = "/_squall"


def dashboard_app(stack: Any, settings: DashboardSettings | None = None,
                  **options: Any) -> Starlette:
    """The dashboard over a started AppStack. Its paths are absolute (`/_squall/…`): the
    gateway's admin app hands it the whole scope (`Mount("", …)`), so it routes the same
    whether a prefix was stripped before it (`squall server` serves apps under /NAME/,
    with root_path) or not."""
    settings = settings or DashboardSettings.from_env()
    src = Sources(stack)

    async def page(request: Request) -> Response:
        if not settings.enabled:
            return _error("not_found", "the dashboard is off (SQUALL_DASHBOARD=0)")
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    async def ops_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OpsError)
        return _error(exc.code if exc.code in ERRORS else "bad_request", exc.message)

    async def backend_error(request: Request, exc: Exception) -> Response:
        logs.event("dashboard read failed", logging.ERROR, path=request.url.path,
                   error=f"{type(exc).__name__}: {exc}")
        return _error("unavailable", str(exc))

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error("not_found", f"no dashboard page or API at {request.url.path}")

    routes: list[Any] = [Route(f"{PREFIX}/", page)]
    if settings.enabled:
        routes += api_routes(src, settings, prefix=PREFIX, **options)
        routes.append(Mount(f"{PREFIX}/assets", StaticFiles(directory=STATIC), name="assets"))
    return Starlette(
        routes=routes,
        middleware=[Middleware(DashboardAuth, token=settings.admin_token, prefix=PREFIX)],
        exception_handlers={OpsError: ops_error, BrokerError: backend_error,
                            StoreError: backend_error, WorkflowStoreError: backend_error,
                            404: not_found},
    )


def _error(code: str, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "code": code}, status_code=ERRORS[code][0])
