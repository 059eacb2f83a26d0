"""Request bodies against their route's declared model (JSON Schema 2020-12, as pydantic
emits it), and the bound on JSON nesting depth. This runs in the gateway; a pydantic
class's own validators run in the worker afterwards (squall.security.models).

The depth check costs two byte counts for ordinary bodies: only a body with more
brackets than the limit is scanned (strings skipped), and the scan stops at the first
level past the limit, so a hostile 6 MB of `[` is refused after `limit` steps.
"""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from ..config import ConfigError
from .models import MAX_REPORTED_ERRORS, InvalidBody, parse_body

_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_BRACKETS = re.compile(rb"[\[\]{}]")


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
        doc = parse_body(body)
        errors = []
        for e in sorted(self.validator.iter_errors(doc), key=lambda e: list(map(str, e.path))):
            field = ".".join(str(p) for p in e.absolute_path) or "(body)"
            errors.append({"field": field, "message": e.message[:300]})
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
        if errors:
            raise InvalidBody("the request body does not match the route's model", errors)
        return doc
