"""Declared settings: small frozen dataclasses, validated when they are made.

Pure data, no I/O. A bad setting raises `ConfigError` naming the function and the
setting at decoration time, i.e. when the user's module is imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY")
HTTP_FORMATS = ("native", "aws-http-v2", "aws-rest-v1")
FUNCTION_FORMATS = ("native", "aws")

MEMORY_MIN_MB, MEMORY_MAX_MB = 128, 10240  # AWS Lambda's range
TIMEOUT_MAX_S = 900.0  # AWS Lambda's maximum
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024  # Lambda's synchronous payload limit

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SEGMENT_RE = re.compile(r"^(\{[A-Za-z_][A-Za-z0-9_]*\+?\}|[^{}]*)$")


class ConfigError(ValueError):
    """A declaration that cannot work; the message says what, where, and what to do."""


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str


@dataclass(frozen=True, slots=True)
class FunctionConfig:
    """Everything declared about one function. Read by the runtime, gateway and CLI."""

    name: str
    kind: str = "function"  # "function" (invoke-only) | "http"
    format: str = "native"
    memory_mb: int = 128
    timeout_s: float = 3.0
    concurrency: int | None = None  # reserved concurrency: at most this many at once
    provisioned: int = 0  # workers kept warm at all times
    keep_warm_s: float = 300.0  # idle workers beyond `provisioned` are reaped after this
    max_wait_s: float = 1.0  # a sync call waits this long for a free slot, then 429
    environment: dict[str, str] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        _validate(self)

    def to_manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "format": self.format,
            "memory_mb": self.memory_mb,
            "timeout_s": self.timeout_s,
            "concurrency": self.concurrency,
            "provisioned": self.provisioned,
            "keep_warm_s": self.keep_warm_s,
            "max_wait_s": self.max_wait_s,
            "environment": dict(self.environment),
            "routes": [[r.method, r.path] for r in self.routes],
            "description": self.description,
        }

    @classmethod
    def from_manifest(cls, data: dict[str, Any]) -> FunctionConfig:
        fields = dict(data)
        fields["routes"] = tuple(Route(m, p) for m, p in fields.get("routes", ()))
        return cls(**fields)


def _fail(name: str, setting: str, problem: str) -> ConfigError:
    return ConfigError(f"function {name!r}: {setting} {problem}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validate(cfg: FunctionConfig) -> None:
    n = cfg.name
    if not isinstance(n, str) or not _NAME_RE.match(n):
        raise ConfigError(
            f"function name {n!r} is invalid: use 1-64 letters, digits, '-', '_' or '.'"
        )
    if cfg.kind not in ("function", "http"):
        raise _fail(n, "kind", f"must be 'function' or 'http', got {cfg.kind!r}")
    formats = HTTP_FORMATS if cfg.kind == "http" else FUNCTION_FORMATS
    if cfg.format not in formats:
        raise _fail(n, "format", f"must be one of {', '.join(formats)}; got {cfg.format!r}")
    if not isinstance(cfg.memory_mb, int) or isinstance(cfg.memory_mb, bool) or not (
        MEMORY_MIN_MB <= cfg.memory_mb <= MEMORY_MAX_MB
    ):
        raise _fail(
            n, "memory_mb", f"must be a whole number from {MEMORY_MIN_MB} to {MEMORY_MAX_MB}, "
            f"got {cfg.memory_mb!r}"
        )
    if not _is_number(cfg.timeout_s) or not (0 < cfg.timeout_s <= TIMEOUT_MAX_S):
        raise _fail(n, "timeout_s", f"must be a number of seconds in (0, {TIMEOUT_MAX_S:g}], "
                    f"got {cfg.timeout_s!r}")
    if cfg.concurrency is not None and (
        not isinstance(cfg.concurrency, int) or isinstance(cfg.concurrency, bool)
        or cfg.concurrency < 1
    ):
        raise _fail(n, "concurrency", f"must be a whole number >= 1 or None, got {cfg.concurrency!r}")
    if not isinstance(cfg.provisioned, int) or isinstance(cfg.provisioned, bool) or cfg.provisioned < 0:
        raise _fail(n, "provisioned", f"must be a whole number >= 0, got {cfg.provisioned!r}")
    if cfg.concurrency is not None and cfg.provisioned > cfg.concurrency:
        raise _fail(n, "provisioned", f"({cfg.provisioned}) cannot exceed concurrency "
                    f"({cfg.concurrency})")
    if not _is_number(cfg.keep_warm_s) or cfg.keep_warm_s < 0:
        raise _fail(n, "keep_warm_s", f"must be a number of seconds >= 0, got {cfg.keep_warm_s!r}")
    if not _is_number(cfg.max_wait_s) or cfg.max_wait_s < 0:
        raise _fail(n, "max_wait_s", f"must be a number of seconds >= 0, got {cfg.max_wait_s!r}")
    if not isinstance(cfg.environment, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in cfg.environment.items()
    ):
        raise _fail(n, "environment", "must be a dict of str to str")
    for route in cfg.routes:
        validate_route(n, route.method, route.path)
    if cfg.kind == "http" and not cfg.routes:
        raise _fail(n, "routes", "must hold at least one route for an HTTP function")


def validate_route(name: str, method: str, path: str) -> None:
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        raise _fail(name, "method", f"must be one of {', '.join(HTTP_METHODS)}, got {method!r}")
    if not isinstance(path, str) or not path.startswith("/"):
        raise _fail(name, "path", f"must start with '/', got {path!r}")
    segments = path.strip("/").split("/") if path != "/" else []
    seen: set[str] = set()
    for i, seg in enumerate(segments):
        if not _SEGMENT_RE.match(seg):
            raise _fail(name, "path", f"{path!r} has a malformed segment {seg!r}: "
                        "use {name} or {name+} for parameters")
        if seg.startswith("{"):
            pname = seg.strip("{}+")
            if pname in seen:
                raise _fail(name, "path", f"{path!r} repeats the parameter {pname!r}")
            seen.add(pname)
            if seg.endswith("+}") and i != len(segments) - 1:
                raise _fail(name, "path", f"{path!r}: a greedy parameter {seg} must be the "
                            "last segment")
