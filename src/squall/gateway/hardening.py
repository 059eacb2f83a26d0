"""The gateway's limits on what a client may send, each with its own JSON error:

    URL (path + query) longer than max_url_bytes        -> 414 uri_too_long
    header names + values larger than max_header_bytes  -> 431 headers_too_large
    body larger than max_body_bytes (Content-Length,
      or counted while streaming: never buffered whole)  -> 413 payload_too_large
    body trickling in slower than body_timeout_s        -> 408 request_timeout
    JSON body nested deeper than max_json_depth         -> 400 bad_request
    function slower than request_timeout_s              -> 504 timeout

A client that disconnects mid-body is dropped: the function is not invoked with half a
body. The checks on the hot path are a length sum over the raw headers and two byte
counts of the body.
"""

from __future__ import annotations

import asyncio
import time
import types
from typing import Any, Awaitable, Callable

from ..security.declare import Limits
from ..security.validation import is_json, too_deep
from ..types import InvocationResult

DEFAULT_LIMITS = Limits().to_manifest()


class TooLarge(Exception):
    pass


class TooSlow(Exception):
    pass


class Disconnected(Exception):
    pass


class GatewayLimits:
    __slots__ = ("max_url", "max_headers", "body_timeout_s", "request_timeout_s", "max_depth",
                 "min_deep_bytes")

    def __init__(self, limits: dict[str, Any] | None) -> None:
        lim = {**DEFAULT_LIMITS, **(limits or {})}
        self.max_url = lim["max_url_bytes"]
        self.max_headers = lim["max_header_bytes"]
        self.body_timeout_s = lim["body_timeout_s"]
        self.request_timeout_s = lim["request_timeout_s"]
        self.max_depth = lim["max_json_depth"]
        self.min_deep_bytes = 2 * self.max_depth + 1  # the shortest text nested too deeply

    def refuse(self, scope: dict) -> tuple[str, dict[str, Any]] | None:
        """The error code for a request line or headers over the limits, else None."""
        url = len(scope.get("raw_path") or scope["path"]) + len(scope.get("query_string", b""))
        if url > self.max_url:
            return "uri_too_long", {"limitBytes": self.max_url}
        size = 0
        for k, v in scope["headers"]:  # the plain loop: cheaper than map/chain for ~10
            size += len(k) + len(v)
        if size > self.max_headers:
            return "headers_too_large", {"limitBytes": self.max_headers}
        return None

    def too_deep(self, body: bytes, headers: list[tuple[str, str]]) -> bool:
        """Call only for bodies longer than `min_deep_bytes` (shorter ones cannot be)."""
        return (body.count(b"[") + body.count(b"{") > self.max_depth and is_json(headers)
                and too_deep(body, self.max_depth))


class BodyWatch:
    """Bounds how long clients may take to send their bodies, without a timer per request:
    requests reading a body register here, and one sweeper task (alive only while some
    request is reading) cancels those past their deadline a few times a second."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.reading: dict[asyncio.Task, float] = {}
        self.expired: set[asyncio.Task] = set()
        self._sweeper: asyncio.Task | None = None

    def start(self) -> asyncio.Task | None:
        task = asyncio.current_task()
        if task is None:
            return None
        self.reading[task] = time.monotonic() + self.timeout_s
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return task

    def stop(self, task: asyncio.Task | None) -> None:
        if task is not None:
            self.reading.pop(task, None)

    def timed_out(self, task: asyncio.Task | None) -> bool:
        """After a CancelledError: was it this watch (then the task goes on), or not?"""
        if task is None or task not in self.expired:
            return False
        self.expired.discard(task)
        task.uncancel()
        return True

    async def _sweep(self) -> None:
        try:
            while self.reading:
                await asyncio.sleep(min(0.25, self.timeout_s / 4))
                now = time.monotonic()
                for task, deadline in list(self.reading.items()):
                    if deadline <= now:
                        del self.reading[task]
                        self.expired.add(task)
                        task.cancel()
        finally:
            self._sweeper = None


@types.coroutine
def _resume(coro: Any, waiting: Any) -> Any:
    """Go on awaiting `coro`, already run up to its first suspension on `waiting`: what
    `await` does, continued by hand (the event loop sees the same future)."""
    while True:
        try:
            sent = yield waiting
        except BaseException as exc:  # cancellation (the BodyWatch) and the like
            try:
                waiting = coro.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                waiting = coro.send(sent)
            except StopIteration as done:
                return done.value


async def _wait(coro: Any, waiting: Any, watch: BodyWatch) -> dict:
    """The rest of a receive that had to wait: watched, so a slow client gets TooSlow."""
    task = watch.start()
    try:
        return await _resume(coro, waiting)
    except asyncio.CancelledError:
        if watch.timed_out(task):
            raise TooSlow from None
        raise
    finally:
        watch.stop(task)


async def read_body(receive: Callable, headers: list[tuple[str, str]], limit: int,
                    watch: BodyWatch) -> bytes:
    """The whole body, refused as soon as it is known to be over `limit`; a client that
    keeps us waiting longer than the watch allows gets TooSlow (408)."""
    for k, v in headers:
        if k == "content-length":
            try:
                if int(v) > limit:
                    raise TooLarge
            except ValueError:
                pass
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        # a message already there (the usual case: the body came with the headers) is
        # taken without a timer; only a receive that has to wait is watched
        coro = receive()
        try:
            waiting = coro.send(None)
        except StopIteration as done:
            message = done.value
        else:
            message = await _wait(coro, waiting, watch)
        if message["type"] != "http.request":
            raise Disconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise TooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def bounded(invocation: Awaitable[InvocationResult], function: str, rid: str,
                  timeout_s: float) -> InvocationResult:
    """The invocation, or a timeout result once the gateway's request time is up."""
    try:
        async with asyncio.timeout(timeout_s):
            return await invocation
    except TimeoutError:
        return InvocationResult(request_id=rid, function=function, ok=False, status="timeout",
                                error_type="Gateway.Timeout",
                                error_message=f"no answer within the gateway's request "
                                f"timeout of {timeout_s:g} s")
