"""Metering: every invocation's result becomes a row of the invocation log.

`Recorder.add` runs on the event loop for every result, so it does as little as
possible: one tuple, and (with a log-writer process as the sink) one msgpack encoding
into a buffer. A flush every 100 ms hands the batch to the sink on an executor thread:
the writer process, or the store itself in one-shot commands and tests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging

import msgpack

from ..backends.base import InvocationLog, InvocationRecord
from ..aiocompat import wait_for
from ..observe import logs
from .aio import cancel
from ..types import InvocationResult

FLUSH_INTERVAL_S = 0.1
MAX_BATCH = 1000


def to_row(app: str, r: InvocationResult, trigger: str) -> tuple:
    """The invocation-log row, in ROW_FIELDS order."""
    return (r.request_id, app, r.function, trigger, r.started_at, r.duration_ms, r.billed_ms,
            r.memory_mb, r.max_memory_mb, r.cold, r.init_ms, r.status, r.error_type,
            r.error_message, r.logs)


def to_record(app: str, result: InvocationResult, trigger: str) -> InvocationRecord:
    return InvocationRecord(*to_row(app, result, trigger))


class Recorder:
    def __init__(self, store: InvocationLog, app: str = "", *, echo: str = "none") -> None:
        """`echo`: which invocations also go to the structured log on stderr: "all" (squall
        dev), "errors" (squall run: failures and their output) or "none"."""
        self.store = store
        self.app = app
        self.echo = echo
        self._rows: list[tuple] = []
        self._packed = bytearray()  # rows already encoded for a packed sink
        self._count = 0
        self._spans: list[tuple] = []  # squall.observe.traces rows, written with the log
        self._pack = msgpack.Packer(use_bin_type=True).pack if hasattr(
            store, "record_packed") else None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="squall-log")
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._flush_lock = asyncio.Lock()

    def add(self, result: InvocationResult, trigger: str) -> None:
        row = to_row(self.app, result, trigger)
        if self._pack is not None:
            self._packed += self._pack(row)
        else:
            self._rows.append(row)
        self._count += 1
        if self.echo == "all" or (self.echo == "errors" and result.status != "ok"):
            self._echo(InvocationRecord(*row), result.trace)
        if self._wakeup is not None and self._count >= MAX_BATCH:
            self._wakeup.set()

    def add_span(self, row: tuple) -> None:
        """A finished span (SPAN_FIELDS order): written with the next batch."""
        self._spans.append(row)
        if self._wakeup is not None and len(self._spans) >= MAX_BATCH:
            self._wakeup.set()

    def _echo(self, row: InvocationRecord, trace: str | None) -> None:
        """The invocation and its output as structured lines on stderr, each with the
        request id and trace id (the fields `squall.logger` lines carry), so a line on
        the console leads to `squall logs` and `squall trace`."""
        trace_id = trace[3:35] if trace and len(trace) >= 55 else None
        for line in row.logs.rstrip("\n").split("\n") if row.logs else ():
            logs.event("function output", app=self.app, function=row.function,
                       request_id=row.request_id, trace_id=trace_id, cold=row.cold, line=line)
        level = logging.INFO if row.status == "ok" else logging.WARNING
        logs.event(
            "invocation", level, app=self.app, function=row.function, request_id=row.request_id,
            trace_id=trace_id, status=row.status, duration_ms=row.duration_ms,
            billed_ms=row.billed_ms, memory_mb=row.memory_mb, max_memory_mb=row.max_memory_mb,
            cold=row.cold,
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
                await wait_for(self._wakeup.wait(), FLUSH_INTERVAL_S)
            except asyncio.TimeoutError:
                pass
            self._wakeup.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write every row added so far; when this returns they are in the store (also
        those a concurrent flush had already taken)."""
        async with self._flush_lock:
            rows, self._rows = self._rows, []
            packed, self._packed = bytes(self._packed), bytearray()
            count, self._count = self._count, 0
            spans, self._spans = self._spans, []
            loop = asyncio.get_running_loop()
            if spans:
                try:
                    await loop.run_in_executor(self._executor, self.store.record_spans, spans)
                except Exception as exc:
                    logs.event("span write failed", logging.ERROR, error=str(exc),
                               spans=len(spans))
            if not count:
                return
            try:
                if self._pack is not None:
                    await loop.run_in_executor(self._executor, self.store.record_packed,
                                               packed, count)
                else:
                    await loop.run_in_executor(self._executor, self.store.record_rows, rows)
            except Exception as exc:  # keep serving; say so
                logs.event("invocation log write failed", logging.ERROR, error=str(exc),
                           rows=len(rows))

    async def close(self) -> None:
        await cancel(self._task)
        self._task = None
        await self.flush()
        self._executor.shutdown(wait=True)


    def pending(self) -> int:
        return self._count
