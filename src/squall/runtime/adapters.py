"""How one invocation calls a user's handler, whatever its style, and shapes the result.

Written once and used by both the forked worker and the in-process test harness:

* HTTP, native:       handler(Request[, ctx])  -> body | (status, body[, headers]) | Response
* HTTP, aws-http-v2:  handler(event, context)  -> proxy response dict or any JSON value
* HTTP, aws-rest-v1:  handler(event, context)  -> proxy response dict
* event:              handler(data, ctx)       -> any JSON value

An HTTP route declared with a pydantic `model=` has its body validated by that class
first (squall.security.models): a refusal is the gateway's 400, the handler not called.

`def` and `async def` handlers go through the same path: an awaitable result is run to
completion on the caller-supplied event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import traceback
from typing import Any, Callable

from ..app import Function
from ..events import aws_apigw
from ..events import queue as queue_events
from ..events import stream as stream_events
from ..backends.state import StateError
from ..security import models as body_models
from ..state import formats as state_formats
from ..events.http import HTTPError, InvalidResponse, Request, error_response, to_http_response
from ..types import Context, HttpRequest, HttpResponse

WireHttp = list  # [status, [[name, value], ...], body_bytes]


class HandlerFailure(Exception):
    """Carries a user error out of `call`: type, message and Lambda-style stack trace."""

    def __init__(self, error_type: str, message: str, stack: list[str]) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack = stack


def http_request_from_wire(payload: list) -> HttpRequest:
    return HttpRequest(*payload)


def http_request_to_wire(req: HttpRequest) -> list:
    return [
        req.method, req.path, req.query_string, req.headers, req.body, req.path_params,
        req.route, req.source_ip, req.scheme, req.http_version, req.time_epoch_ms,
        req.request_id, req.authorizer,
    ]


def http_response_to_wire(resp: HttpResponse) -> WireHttp:
    return [resp.status, resp.headers, resp.body]


def http_response_from_wire(value: WireHttp) -> HttpResponse:
    status, headers, body = value
    return HttpResponse(status=status, headers=[(k, v) for k, v in headers], body=body)


def _await(result: Any, loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> Any:
    if inspect.isawaitable(result):
        return loop_factory().run_until_complete(result)
    return result


def _failure(exc: BaseException) -> HandlerFailure:
    frames = traceback.extract_tb(exc.__traceback__)
    # drop our own frames: the user's trace starts at their handler
    stack = [line for line in traceback.format_list(frames) if "/squall/runtime/" not in line]
    return HandlerFailure(type(exc).__name__, str(exc), stack)


def _call_batch(fn: Function, data: Any, ctx: Context,
                loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> str:
    """A queue batch or stream records: shape them for the handler's format, run it, and
    normalise its answer to the list of failed ids."""
    cfg = fn.config
    if cfg.kind in ("change", "object"):
        return _call_feed(fn, data, ctx, loop_factory)
    if cfg.kind == "queue":
        items, id_key, aws = "messages", "id", "aws-sqs"
        to_aws, to_native = queue_events.sqs_event, queue_events.native_batch
        source = f"queue {cfg.queue.queue!r}", '{"queue": ..., "messages": [{"id": ..., "body": ...}]}'
    else:
        items, id_key, aws = "records", "sequence", "aws-kinesis"
        to_aws, to_native = stream_events.kinesis_event, stream_events.native_records
        source = f"stream {cfg.stream.stream!r}", '{"stream": ..., "records": [...]}'
    if not isinstance(data, dict) or items not in data:
        raise HandlerFailure("Runtime.InvalidEvent", f"function {fn.name!r} consumes "
                             f"{source[0]}: invoke it with {source[1]} or send to it", [])
    ids = [m[id_key] for m in data[items]]
    arg = to_aws(data) if cfg.format == aws else to_native(data)
    args = (arg, ctx) if fn.takes_context else (arg,)
    result = _await(fn.handler(*args), loop_factory)
    return json.dumps({"failed": queue_events.failed_ids(result, ids)})


def _call_feed(fn: Function, data: Any, ctx: Context,
               loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> str:
    """A table's changes (a batch) or one object event, shaped for the handler."""
    cfg = fn.config
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        what = "table" if cfg.kind == "change" else "bucket"
        raise HandlerFailure("Runtime.InvalidEvent", f"function {fn.name!r} is triggered by "
                             f"{what} {cfg.feed.resource!r}: write to it, or invoke it with "
                             '{"resource": ..., "records": [...]}', [])
    ids = [r["sequence"] for r in data["records"]]
    if cfg.kind == "change":
        arg = (state_formats.dynamodb_event(data) if cfg.format == "aws-dynamodb"
               else state_formats.native_changes(data))
    else:
        arg = (state_formats.s3_event(data) if cfg.format == "aws-s3"
               else state_formats.native_object_event(data))
    args = (arg, ctx) if fn.takes_context else (arg,)
    result = _await(fn.handler(*args), loop_factory)
    failed = queue_events.failed_ids(result, ids) if cfg.kind == "change" else []
    return json.dumps({"failed": failed})


def call(
    fn: Function,
    kind: str,
    payload: Any,
    ctx: Context,
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> Any:
    """Run one invocation; returns the wire value or raises HandlerFailure."""
    cfg = fn.config
    try:
        if kind == "http":
            raw = http_request_from_wire(payload)
            if fn.body_model is not None:  # the route's pydantic class, validators and all
                refused = body_models.refusal(fn.body_model, raw.body, raw.request_id)
                if refused is not None:
                    return http_response_to_wire(refused)
            if cfg.format == "native":
                request = Request(raw)
                try:
                    args = (request, ctx) if fn.takes_context else (request,)
                    result = _await(fn.handler(*args), loop_factory)
                    response = to_http_response(result)
                except HTTPError as exc:  # the handler chose the status: not a failure
                    response = error_response(exc)
                except StateError as exc:  # bad input to a table/bucket: the client's error
                    response = error_response(HTTPError(str(exc), exc.status, code=exc.code))
            elif cfg.format == "aws-http-v2":
                event = aws_apigw.http_api_v2_event(raw)
                result = _await(fn.handler(event, ctx), loop_factory)
                response = aws_apigw.response_from_v2(result)
            else:
                event = aws_apigw.rest_api_v1_event(raw)
                result = _await(fn.handler(event, ctx), loop_factory)
                response = aws_apigw.response_from_v1(result)
            return http_response_to_wire(response)
        # an event invocation; data arrives and leaves as JSON text
        data = json.loads(payload) if isinstance(payload, str) and payload else None
        if cfg.kind in ("queue", "stream", "change", "object"):
            return _call_batch(fn, data, ctx, loop_factory)
        args = (data, ctx) if fn.takes_context else (data,)
        result = _await(fn.handler(*args), loop_factory)
        try:
            return json.dumps(result, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise HandlerFailure(
                "Runtime.MarshalError", f"Unable to marshal response: {exc}", []
            ) from None
    except HandlerFailure:
        raise
    except InvalidResponse as exc:
        raise HandlerFailure("Runtime.InvalidResponse", str(exc), []) from None
    except body_models.ModelBug as exc:  # a validator's bug: the function failed
        cause = exc.__cause__ or exc
        raise HandlerFailure("Squall.RequestModelError", str(exc), _failure(cause).stack) from None
    except Exception as exc:
        raise _failure(exc) from None
