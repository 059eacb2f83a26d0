"""The dashboard's JSON endpoints, `/_squall/api/dashboard/…`: thin over squall.ops.

Every handler reads its query, calls the same function the CLI calls, and answers JSON.
Bad input is an `OpsError`, answered as `{"message", "code"}` with a 4xx status.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..ops import OpsError
from ..ops import bus as bus_ops
from ..ops import dead_letters, invocations, schedules, workflows
from ..ops.functions import trigger_summary
from . import observed
from .settings import DashboardSettings, bounded
from .sources import Sources

WINDOWS = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}


def _int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    return int(bounded(request.query_params, name, default, lo, hi, whole=True,
                       error=OpsError))


def _window(request: Request) -> tuple[str, int]:
    key = request.query_params.get("window", "1h")
    if key not in WINDOWS:
        raise OpsError(f"window must be one of {', '.join(WINDOWS)}, got {key!r}")
    return key, WINDOWS[key]


async def _body(request: Request, limit: int = 64 * 1024) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > limit:
        raise OpsError(f"the request body is over {limit} bytes", "payload_too_large")
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise OpsError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise OpsError("the request body must be a JSON object")
    return doc


def api_routes(src: Sources, settings: DashboardSettings, *, prefix: str = "",
               clock: Callable[[], float] = time.time) -> list[Route]:
    async def meta(request: Request) -> JSONResponse:
        """The app, the settings the page needs, and the side bar's badges: dead letters
        waiting, alerts firing."""
        m = src.manifest
        queues = await dead_letters.queue_overview(src.broker, src.configs)
        alerting = await src.with_store(lambda s: observed.alerts(s, m["app"], m))
        return JSONResponse({"app": m["app"], "pollMs": settings.poll_ms,
                             "functions": [f["name"] for f in m["functions"]], "now": clock(),
                             "redriveMax": settings.redrive_max,
                             "deadLetters": sum(q["deadLetters"] for q in queues),
                             "firing": sum(1 for r in alerting["rules"]
                                           if r["state"] == "firing")})

    async def functions(request: Request) -> JSONResponse:
        key, window_s = _window(request)
        m, now = src.manifest, clock()
        names = [f["name"] for f in m["functions"]]
        figs = await src.with_store(lambda s: observed.function_figures(
            s, m["app"], names, now=now, window_s=window_s))
        pools = src.pools()
        rows = [{"name": f["name"], "kind": f["kind"], "trigger": trigger_summary(f, m),
                 "memoryMb": f["memory_mb"], "timeoutS": f["timeout_s"],
                 "warm": pools.get(f["name"], {}).get("workers", 0), **figs[f["name"]]}
                for f in m["functions"]]
        return JSONResponse({"window": key, "windowS": window_s, "functions": rows})

    async def invocation_list(request: Request) -> JSONResponse:
        function = request.query_params.get("function") or None
        rid = request.query_params.get("request_id") or None
        limit = _int(request, "limit", 50, 1, invocations.MAX_LIMIT)
        if function is not None and function not in src.configs:
            raise OpsError(f"no function {function!r} in app {src.app!r}", "not_found")
        rows = await src.with_store(lambda s: invocations.recent(
            s, src.app, function, limit=limit, request_id=rid))
        return JSONResponse({"invocations": rows})

    async def trace_list(request: Request) -> JSONResponse:
        limit = _int(request, "limit", 50, 1, 500)
        return JSONResponse(await src.with_store(
            lambda s: observed.traces(s, src.app, limit=limit)))

    async def trace_one(request: Request) -> JSONResponse:
        tid = request.path_params["trace_id"]
        return JSONResponse(await src.with_store(lambda s: observed.trace(s, tid)))

    async def queues(request: Request) -> JSONResponse:
        """Every queue now, with its depth over the window (1h unless told)."""
        key, window_s = _window(request)
        rows = await dead_letters.queue_overview(src.broker, src.configs)
        now = clock()
        depths = await src.with_store(lambda s: observed.queue_depths(
            s, src.app, [r["queue"] for r in rows], now=now, window_s=window_s))
        for r in rows:
            r["depthSeries"] = depths[r["queue"]]
        return JSONResponse({"queues": rows, "window": key})

    async def dead_letter_list(request: Request) -> JSONResponse:
        dlqs = dead_letters.dead_letter_queues(src.configs, request.path_params["queue"])
        q = request.query_params
        items = await dead_letters.collect(
            src.broker, dlqs, contains=q.get("contains") or None, error=q.get("error") or None,
            limit=_int(request, "limit", 100, 1, 1000))
        return JSONResponse({"deadLetters": [dead_letters.record(d) for d in items]})

    async def redrive(request: Request) -> JSONResponse:
        dlqs = dead_letters.dead_letter_queues(src.configs, request.path_params["queue"])
        body = await _body(request)
        ids = body.get("ids")
        if ids is not None and (not isinstance(ids, list)
                                or not all(isinstance(i, str) for i in ids)):
            raise OpsError("ids must be a list of message ids")
        if ids is not None and len(ids) > settings.redrive_max:
            raise OpsError(f"at most {settings.redrive_max} messages per redrive "
                           f"(SQUALL_DASHBOARD_REDRIVE_MAX), got {len(ids)}")
        chosen = await dead_letters.collect(src.broker, dlqs, limit=10**6 if ids else
                                            settings.redrive_max)
        if ids is not None:
            chosen = dead_letters.select(chosen, ids)
        moved = await dead_letters.redrive(src.broker, chosen, rate=settings.redrive_rate)
        return JSONResponse({"redriven": moved})

    async def bus(request: Request) -> JSONResponse:
        hours = _int(request, "hours", 24, 1, 24 * 90)
        limit = _int(request, "limit", 100, 1, bus_ops.MAX_ARCHIVE_PAGE)
        now = clock()
        archived = await bus_ops.archive(src.broker, now - hours * 3600, now + 1, limit=limit)
        return JSONResponse({"rules": bus_ops.rules(src.manifest), "archive": archived,
                             "hours": hours})

    async def replay(request: Request) -> JSONResponse:
        body = await _body(request)
        try:
            start, end = float(body["from"]), float(body["to"])
        except (KeyError, TypeError, ValueError):
            raise OpsError('give "from" and "to" as seconds since the epoch') from None
        rule = body.get("rule") or None
        name = str(body.get("name") or "dashboard-replay")
        n = await bus_ops.replay(src.messaging, start, end, rule=rule, name=name)
        return JSONResponse({"replayed": n})

    async def schedule_list(request: Request) -> JSONResponse:
        rows = schedules.schedule_rows(src.configs, clock(), _int(request, "count", 3, 1, 20))
        return JSONResponse({"schedules": await schedules.with_last_firing(src.broker, rows)})

    async def workflow_list(request: Request) -> JSONResponse:
        q = request.query_params
        limit = _int(request, "limit", 50, 1, 1000)
        rows = await src.with_workflows(lambda s: workflows.executions(
            s, name=q.get("workflow") or None, status=q.get("status") or None, limit=limit))
        declared = [w["name"] for w in src.manifest.get("workflows", [])]
        return JSONResponse({"workflows": declared, "executions": rows})

    async def workflow_one(request: Request) -> JSONResponse:
        eid = request.path_params["execution_id"]
        return JSONResponse(await src.with_workflows(lambda s: workflows.execution(s, eid)))

    async def alert_list(request: Request) -> JSONResponse:
        manifest = src.manifest
        return JSONResponse(await src.with_store(
            lambda s: observed.alerts(s, manifest["app"], manifest)))

    async def cost_chart(request: Request) -> JSONResponse:
        by = request.query_params.get("by", "hour")
        if by not in ("hour", "day"):
            raise OpsError(f"by must be hour or day, got {by!r}")
        days = _int(request, "days", 2 if by == "hour" else 30, 1, 366)
        now = clock()
        return JSONResponse(await src.with_store(lambda s: observed.costs(
            s, src.app, by=by, since=now - days * 86400, until=now)))

    p = f"{prefix}/api/dashboard"
    return [
        Route(f"{p}/meta", meta),
        Route(f"{p}/functions", functions),
        Route(f"{p}/invocations", invocation_list),
        Route(f"{p}/traces", trace_list),
        Route(f"{p}/traces/{{trace_id}}", trace_one),
        Route(f"{p}/queues", queues),
        Route(f"{p}/queues/{{queue}}/dead-letters", dead_letter_list),
        Route(f"{p}/queues/{{queue}}/redrive", redrive, methods=["POST"]),
        Route(f"{p}/bus", bus),
        Route(f"{p}/bus/replay", replay, methods=["POST"]),
        Route(f"{p}/schedules", schedule_list),
        Route(f"{p}/workflows", workflow_list),
        Route(f"{p}/workflows/{{execution_id}}", workflow_one),
        Route(f"{p}/alerts", alert_list),
        Route(f"{p}/costs", cost_chart),
    ]
