"""Keep secret values and credentials out of logs, traces and the dashboard.

`Redactor(values)` replaces every known secret value in text with `***`; header and field
names that carry credentials (authorization, cookie, x-api-key, ...) are masked whatever
their value.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable

MASK = "***"
SENSITIVE_NAMES = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie",
                             "x-api-key", "password", "secret", "token", "api_key",
                             "client_secret", "access_token", "refresh_token"})


class Redactor:
    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        """Mask these too (a secret handed to a function after start)."""
        # short values would mask innocent text; 4 characters or fewer are not secrets
        new = {v for v in values if isinstance(v, str) and len(v) > 4} - self._values
        if new:
            self._values |= new
            ordered = sorted(self._values, key=len, reverse=True)  # longest match first
            self._pattern = re.compile("|".join(map(re.escape, ordered)))

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, value: str | None) -> str | None:
        if value is None or self._pattern is None:
            return value
        return self._pattern.sub(MASK, value)

    def value(self, value: Any) -> Any:
        """Redact a JSON-like value: sensitive keys masked, secret values replaced."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: MASK if isinstance(k, str) and k.lower() in SENSITIVE_NAMES
                    else self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value

    def result(self, result: Any) -> Any:
        """An InvocationResult with its logs, error and stack trace redacted."""
        if self._pattern is None:
            return result
        return dataclasses.replace(
            result, logs=self.text(result.logs) or "",
            error_message=self.text(result.error_message),
            stack_trace=[self.text(s) or "" for s in result.stack_trace]
            if result.stack_trace else result.stack_trace)


def headers(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Request headers safe to log: credentials masked."""
    return [(k, MASK if k.lower() in SENSITIVE_NAMES else v) for k, v in items]
