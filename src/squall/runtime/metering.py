"""Metering: every invocation's result becomes a row of the invocation log.

`Recorder.add` is called on the event loop for each result and only appends; rows are
written to the store in batches on one executor thread, so the log never slows a call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

from ..backends.base import InvocationLog, InvocationRecord
from ..observe import logs
from ..types import InvocationResult

FLUSH_INTERVAL_S = 0.1
MAX_BATCH = 1000


def to_record(app: str, result: InvocationResult, trigger: str) -> InvocationRecord:
    return InvocationRecord(
        request_id=result.request_id, app=app, function=result.function, trigger=trigger,
        started_at=result.started_at, duration_ms=round(result.duration_ms, 3),
        billed_ms=result.billed_ms, memory_mb=result.memory_mb,
        max_memory_mb=result.max_memory_mb, cold=result.cold,
        init_ms=round(result.init_ms, 3) if result.init_ms is not None else None,
        status=result.status, error_type=result.error_type, error_message=result.error_message,
        logs=result.logs,
    )


class Recorder:
    def __init__(self, store: InvocationLog, app: str = "", *, echo: str = "none") -> None:
        """`echo`: which invocations also go to the structured log on stderr: "all" (squall
        dev), "errors" (squall run: failures and their output) or "none"."""
        self.store = store
        self.app = app
        self.echo = echo
        self._rows: list[InvocationRecord] = []
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="squall-log")
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._flush_lock = asyncio.Lock()

    def add(self, result: InvocationResult, trigger: str) -> None:
        row = to_record(self.app, result, trigger)
        self._rows.append(row)
        if self.echo == "all" or (self.echo == "errors" and row.status != "ok"):
            self._echo(row)
        if self._wakeup is not None and len(self._rows) >= MAX_BATCH:
            self._wakeup.set()

    def _echo(self, row: InvocationRecord) -> None:
        for line in row.logs.rstrip("\n").split("\n") if row.logs else ():
            logs.event("function output", function=row.function, request_id=row.request_id,
                       line=line)
        level = logging.INFO if row.status == "ok" else logging.WARNING
        logs.event(
            "invocation", level, function=row.function, request_id=row.request_id,
            status=row.status, duration_ms=row.duration_ms, billed_ms=row.billed_ms,
            memory_mb=row.memory_mb, max_memory_mb=row.max_memory_mb, cold=row.cold,
            init_ms=row.init_ms, error_type=row.error_type, error_message=row.error_message,
        )

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            try:
                await asyncio.wait_for(self._wakeup.wait(), FLUSH_INTERVAL_S)
            except asyncio.TimeoutError:
                pass
            self._wakeup.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write every row added so far; when this returns they are in the store (also
        those a concurrent flush had already taken)."""
        async with self._flush_lock:
            rows, self._rows = self._rows, []
            if not rows:
                return
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._executor, self.store.record, rows)
            except Exception as exc:  # keep serving; say so
                logs.event("invocation log write failed", logging.ERROR, error=str(exc),
                           rows=len(rows))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.flush()
        self._executor.shutdown(wait=True)


    def pending(self) -> list[Any]:
        return list(self._rows)
