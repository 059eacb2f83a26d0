"""Request bodies against their route's declared model (JSON Schema 2020-12, as pydantic
emits it), and the bound on JSON nesting depth.

The depth check costs two byte counts for ordinary bodies: only a body with more
brackets than the limit is scanned (strings skipped), and the scan stops at the first
level past the limit, so a hostile 6 MB of `[` is refused after `limit` steps.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from ..config import ConfigError
from ..events.http import _not_json  # NaN/Infinity are not JSON

_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_BRACKETS = re.compile(rb"[\[\]{}]")
MAX_REPORTED_ERRORS = 20


def too_deep(body: bytes, limit: int) -> bool:
    """Does the JSON text `body` nest arrays/objects more than `limit` levels?"""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for m in _BRACKETS.finditer(_STRINGS.sub(b'""', body)):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def is_json(headers: list[tuple[str, str]]) -> bool:
    for k, v in headers:
        if k == "content-type":
            v = v.split(";", 1)[0].strip().lower()
            return v == "application/json" or v.endswith("+json")
    return False


class InvalidBody(Exception):
    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class BodyValidator:
    """One route's request model, compiled once."""

    def __init__(self, function: str, schema: dict[str, Any]) -> None:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ConfigError(f"function {function!r}: the request model is not a valid JSON "
                              f"Schema: {exc.message}") from None
        self.validator = Draft202012Validator(schema)

    def validate(self, body: bytes) -> Any:
        if not body:
            raise InvalidBody("the request body is empty; a JSON document was expected")
        try:
            doc = json.loads(body, parse_constant=_not_json)
        except RecursionError:
            raise InvalidBody("the request body is nested too deeply") from None
        except ValueError as exc:  # UnicodeDecodeError is one
            raise InvalidBody(f"the request body is not valid JSON: {exc}") from None
        errors = []
        for e in sorted(self.validator.iter_errors(doc), key=lambda e: list(map(str, e.path))):
            field = ".".join(str(p) for p in e.absolute_path) or "(body)"
            errors.append({"field": field, "message": e.message[:300]})
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
        if errors:
            raise InvalidBody("the request body does not match the route's model", errors)
        return doc
