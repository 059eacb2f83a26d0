"""Stable gateway error codes, kept as data: HTTP status, code and message in one table
that feeds JSON error bodies (and, later, the CLI and dashboard)."""

from __future__ import annotations

import json
from typing import Any

# code -> (HTTP status, message)
ERRORS: dict[str, tuple[int, str]] = {
    "bad_request": (400, "Bad Request"),
    "invalid_signature": (401, "Unauthorized"),  # a webhook's signature did not verify
    "unauthorized": (401, "Unauthorized"),  # no or a wrong admin token
    "forbidden": (403, "Forbidden"),
    "not_found": (404, "Not Found"),
    "method_not_allowed": (405, "Method Not Allowed"),
    "conflict": (409, "Conflict"),
    "request_timeout": (408, "Request Timeout"),  # a client too slow sending its body
    "payload_too_large": (413, "Request Entity Too Large"),
    "uri_too_long": (414, "URI Too Long"),
    "headers_too_large": (431, "Request Header Fields Too Large"),
    "invalid_request_body": (400, "Bad Request"),  # failed the route's model: see "errors"
    "quota_exceeded": (429, "Too Many Requests"),  # an API key's daily quota
    "deploy_rejected": (422, "Unprocessable Entity"),  # a platform deploy failed its build
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
