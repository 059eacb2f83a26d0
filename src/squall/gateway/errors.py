"""Stable gateway error codes, kept as data: HTTP status, code and message in one table
that feeds JSON error bodies (and, later, the CLI and dashboard)."""

from __future__ import annotations

import json
from typing import Any

# code -> (HTTP status, message)
ERRORS: dict[str, tuple[int, str]] = {
    "bad_request": (400, "Bad Request"),
    "invalid_signature": (401, "Unauthorized"),  # a webhook's signature did not verify
    "not_found": (404, "Not Found"),
    "method_not_allowed": (405, "Method Not Allowed"),
    "payload_too_large": (413, "Request Entity Too Large"),
    "throttled": (429, "Too Many Requests"),
    "function_error": (502, "Internal Server Error"),
    "function_crashed": (502, "Internal Server Error"),
    "out_of_memory": (502, "Internal Server Error"),
    "bad_function_response": (502, "Internal Server Error"),
    "timeout": (504, "Endpoint request timed out"),
    "unavailable": (503, "Service Unavailable"),
}

# invocation status -> error code
STATUS_CODES = {
    "error": "function_error",
    "crash": "function_crashed",
    "memory": "out_of_memory",
    "timeout": "timeout",
    "throttled": "throttled",
}


def error_body(code: str, request_id: str, **detail: Any) -> tuple[int, bytes]:
    status, message = ERRORS[code]
    body: dict[str, Any] = {"message": message, "code": code, "requestId": request_id}
    body.update({k: v for k, v in detail.items() if v is not None})
    return status, json.dumps(body, separators=(",", ":")).encode()
