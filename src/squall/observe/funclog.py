"""`squall.logger`: structured JSON log lines from inside a handler.

    from squall import logger

    def charge(event, ctx):
        logger.info("charged", order=event["id"], amount=12.5)

writes one line to the function's output (captured with the invocation, shown by
`squall logs`, searchable with --grep/--level):

    {"ts": "...Z", "level": "info", "app": "shop", "function": "charge",
     "request_id": "...", "trace_id": "...", "cold": true, "msg": "charged",
     "order": 7, "amount": 12.5}

The worker binds the invocation's context before calling the handler (`bind`); outside
an invocation (a script, the in-process test harness before a call) the context fields
are simply absent.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}

_context: dict[str, Any] = {}


def bind(*, app: str, function: str, request_id: str, trace: str | None, cold: bool) -> None:
    """The invocation this worker runs now (called by the worker, once per invocation)."""
    _context.clear()
    _context.update(app=app, function=function, request_id=request_id,
                    trace_id=trace[3:35] if trace and len(trace) >= 55 else None, cold=cold)


class FunctionLogger:
    def __init__(self, level: str = "debug") -> None:
        self.level = LEVELS[level]

    def log(self, level: str, msg: str, **fields: Any) -> None:
        if LEVELS[level] < self.level:
            return
        now = time.time()
        line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                + f".{int(now * 1000) % 1000:03d}Z", "level": level, **_context, "msg": msg}
        line.update(fields)
        sys.stderr.write(json.dumps(line, default=str, ensure_ascii=False) + "\n")
        sys.stderr.flush()

    def debug(self, msg: str, **fields: Any) -> None:
        self.log("debug", msg, **fields)

    def info(self, msg: str, **fields: Any) -> None:
        self.log("info", msg, **fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self.log("warning", msg, **fields)

    def error(self, msg: str, **fields: Any) -> None:
        self.log("error", msg, **fields)

    def exception(self, msg: str, **fields: Any) -> None:
        import traceback

        self.log("error", msg, exc=traceback.format_exc(), **fields)


logger = FunctionLogger()


def line_level(line: str) -> str:
    """The level of one captured output line: a JSON line's "level", a Lambda-style
    "[ERROR]\\t…" prefix, a traceback as error, anything else (print) as info."""
    if line.startswith("{"):
        try:
            level = str(json.loads(line).get("level", "info")).lower()
            return level if level in LEVELS else "info"
        except ValueError:
            return "info"
    if line.startswith("[") and "]" in line[:12]:
        tag = line[1:line.index("]")].lower()
        return {"warn": "warning", "fatal": "critical"}.get(tag, tag if tag in LEVELS else "info")
    if line.startswith("Traceback (most recent call last)"):
        return "error"
    return "info"
