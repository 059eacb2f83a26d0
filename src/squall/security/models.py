"""Request bodies against the route's pydantic class itself, in the function's worker.

Two checks guard a route declared with `model=`:

1. the gateway, in the supervisor, checks the body against the model's JSON Schema
   (squall.security.validation). It needs no user code, and it refuses most bad bodies
   before any worker is involved;
2. for a pydantic class, the worker then runs `Model.model_validate(json)` before the
   handler (squall.runtime.adapters), so `@field_validator`, `@model_validator`,
   `AfterValidator` and custom types are enforced too. They are user code, and user code
   never runs in the supervisor (docs/security.md, "Isolation"): the class stays in the
   app's own processes.

A refusal in the worker is the gateway's answer, byte for byte in shape: `400` with
`{"message": "Bad Request", "code": "invalid_request_body", "requestId", "errorMessage",
"errors": [{"field", "message"}]}`. The handler is not called.

A validator that raises anything but the errors pydantic turns into a validation error
(ValueError, AssertionError, PydanticCustomError) has a bug, not bad input: `ModelBug`,
which the worker reports as a failed invocation of the function (`502 function_error`
with the traceback in its logs), as if the handler itself had raised.

Routes without a pydantic class never get here: the adapter tests one attribute.
"""

from __future__ import annotations

import json
from typing import Any

from ..events.http import HTTPError, _not_json, error_response
from ..types import HttpResponse

MAX_REPORTED_ERRORS = 20
MAX_MESSAGE_CHARS = 300


class InvalidBody(Exception):
    """A request body refused: why, and the failing fields."""

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class ModelBug(Exception):
    """The request model's own code failed while validating (not the client's fault)."""


def parse_body(body: bytes) -> Any:
    """The JSON document in `body` (RFC 8259: no NaN/Infinity), or InvalidBody."""
    if not body:
        raise InvalidBody("the request body is empty; a JSON document was expected")
    try:
        return json.loads(body, parse_constant=_not_json)
    except RecursionError:
        raise InvalidBody("the request body is nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError is one
        raise InvalidBody(f"the request body is not valid JSON: {exc}") from None


def is_model_class(model: Any) -> bool:
    """A pydantic (v2) model class, whose own validators the worker can run."""
    return (isinstance(model, type) and callable(getattr(model, "model_validate", None))
            and callable(getattr(model, "model_json_schema", None)))


def validate(model: type, body: bytes) -> Any:
    """`model.model_validate` on the parsed body: the instance, InvalidBody for bad input,
    ModelBug when a validator itself fails."""
    from pydantic import ValidationError  # a pydantic class exists, so pydantic does

    doc = parse_body(body)
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        errors = []
        for e in exc.errors(include_url=False, include_input=False):
            field = ".".join(str(p) for p in e.get("loc", ())) or "(body)"
            errors.append({"field": field, "message": str(e.get("msg", ""))[:MAX_MESSAGE_CHARS]})
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
        raise InvalidBody("the request body does not match the route's model", errors) from None
    except RecursionError:
        raise InvalidBody("the request body is nested too deeply") from None
    except Exception as exc:
        raise ModelBug(f"the request model {model.__name__} failed while validating a body: "
                       f"{type(exc).__name__}: {exc}. A validator should raise ValueError or "
                       "AssertionError for bad input") from exc


def refusal(model: type, body: bytes, request_id: str) -> HttpResponse | None:
    """The 400 answer for a body `model` refuses, or None when it is valid."""
    try:
        validate(model, body)
    except InvalidBody as exc:
        detail: dict[str, Any] = {"code": "invalid_request_body", "requestId": request_id,
                                  "errorMessage": exc.message}
        if exc.errors:
            detail["errors"] = exc.errors
        return error_response(HTTPError("Bad Request", 400, **detail))
    return None
