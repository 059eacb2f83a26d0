"""Recent invocations with their captured output (`squall logs`, the Invocations page).

Both read the invocation log's two calls, `invocations` and `logs`, and pair each
invocation with its output lines. Figures over time (rates, percentiles, cost) are
squall.observe.metrics' and squall.observe.cost's.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..backends.base import InvocationLog, InvocationRecord
from . import OpsError

MAX_LIMIT = 1000


def check_limit(limit: int, most: int = MAX_LIMIT) -> int:
    if not 1 <= limit <= most:
        raise OpsError(f"limit must be from 1 to {most}, got {limit}")
    return limit


def as_json(r: InvocationRecord, lines: Sequence[str] = ()) -> dict[str, Any]:
    rec = {k: getattr(r, k) for k in r.__slots__ if k != "logs"}
    rec["logs"] = list(lines)
    return rec


def recent(store: InvocationLog, app: str, function: str | None = None, *, limit: int = 50,
           request_id: str | None = None) -> list[dict[str, Any]]:
    """The newest `limit` invocations, newest first, each with its output lines."""
    check_limit(limit)
    rows = store.invocations(app, function, limit=limit, request_id=request_id)
    lines = store.logs(app, function, request_id=request_id, limit=limit * 50)
    by_request: dict[str, list[str]] = {}
    for line in lines:
        by_request.setdefault(line.request_id, []).append(line.line)
    return [as_json(r, by_request.get(r.request_id, ())) for r in reversed(rows)]
