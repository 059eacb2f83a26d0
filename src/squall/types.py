"""The vocabulary every other module composes around.

Small on purpose and importing nothing else from the package: the HTTP request and
response as they cross the gateway -> worker hop, the invocation context a handler sees,
and the result (with its metering) that comes back.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

Handler = Callable[..., Any]

Headers = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """An HTTP request as the gateway received it: raw enough to build any event shape."""

    method: str
    path: str
    query_string: str = ""
    headers: Headers = field(default_factory=list)  # names lower-cased, order kept
    body: bytes = b""
    path_params: dict[str, str] = field(default_factory=dict)
    route: str = ""  # the route key that matched, e.g. "GET /orders/{id}" or "ANY /{proxy+}"
    source_ip: str = "127.0.0.1"
    scheme: str = "http"
    http_version: str = "1.1"
    time_epoch_ms: int = 0
    request_id: str = ""
    # what the route's authorizer established (squall.security.guard): {"type", "claims",
    # "scopes", and for API keys "keyId"/"keyName"}; None on open routes
    authorizer: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What goes back to the HTTP client."""

    status: int = 200
    headers: Headers = field(default_factory=list)
    body: bytes = b""


class Context:
    """The invocation context: Squall-native names and AWS Lambda's, on one object.

    `memory_limit_in_mb` is a string, as in the AWS Python runtime (handlers written for
    Lambda concatenate it); `memory_mb` is the same figure as an int.
    """

    __slots__ = (
        "request_id",
        "function_name",
        "function_version",
        "app_name",
        "memory_mb",
        "timeout_s",
        "deadline",
        "cold_start",
        "identity",
        "client_context",
        "tenant_id",
        "trace_parent",
    )

    def __init__(
        self,
        *,
        request_id: str,
        function_name: str,
        app_name: str = "",
        memory_mb: int = 128,
        timeout_s: float = 3.0,
        deadline: float | None = None,
        cold_start: bool = False,
        function_version: str = "$LATEST",
    ) -> None:
        self.request_id = request_id
        self.function_name = function_name
        self.function_version = function_version
        self.app_name = app_name
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.deadline = deadline if deadline is not None else time.monotonic() + timeout_s
        self.cold_start = cold_start
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self.trace_parent: str | None = None  # W3C traceparent of this invocation

    # AWS Lambda names
    @property
    def aws_request_id(self) -> str:
        return self.request_id

    @property
    def memory_limit_in_mb(self) -> str:
        return str(self.memory_mb)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:local:000000000000:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"squall/{self.app_name}/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))

    def __repr__(self) -> str:
        return f"Context(function_name={self.function_name!r}, request_id={self.request_id!r})"


@dataclass(frozen=True, slots=True)
class InvocationResult:
    """The outcome of one invocation and its metering (what a REPORT line says)."""

    request_id: str
    function: str
    ok: bool
    value: Any = None  # the handler's result (JSON-able), or an HttpResponse for HTTP
    error_type: str | None = None
    error_message: str | None = None
    stack_trace: list[str] | None = None
    started_at: float = 0.0  # wall clock, seconds since the epoch
    duration_ms: float = 0.0
    memory_mb: int = 128
    max_memory_mb: int = 0
    cold: bool = False
    init_ms: float | None = None
    logs: str = ""
    status: str = "ok"  # ok | error | timeout | memory | crash | throttled
    trace: str | None = None  # this invocation's traceparent: its trace id goes on log lines

    @property
    def output(self) -> Any:
        """The result as a Python value: event results parsed from their JSON text."""
        if isinstance(self.value, str):
            import json

            return json.loads(self.value) if self.value else None
        return self.value

    @property
    def billed_ms(self) -> int:
        """Lambda rounds duration up to the next millisecond."""
        return max(1, math.ceil(self.duration_ms)) if self.status != "throttled" else 0

    def report_line(self) -> str:
        line = (
            f"REPORT RequestId: {self.request_id}\tDuration: {self.duration_ms:.2f} ms\t"
            f"Billed Duration: {self.billed_ms} ms\tMemory Size: {self.memory_mb} MB\t"
            f"Max Memory Used: {self.max_memory_mb} MB"
        )
        if self.cold and self.init_ms is not None:
            line += f"\tInit Duration: {self.init_ms:.2f} ms"
        return line

    def error_payload(self) -> dict[str, Any]:
        """The error in Lambda's invoke-response shape."""
        payload: dict[str, Any] = {
            "errorMessage": self.error_message or "",
            "errorType": self.error_type or "Error",
            "requestId": self.request_id,
        }
        if self.stack_trace:
            payload["stackTrace"] = self.stack_trace
        return payload
