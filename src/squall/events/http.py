"""Squall-native HTTP: the `Request` a handler receives and how its return value becomes a
response.

A native HTTP handler is `def handler(request)` or `def handler(request, ctx)` and may
return a body (dict/list -> JSON, str -> text, bytes -> octet-stream, None -> 204),
`(status, body)`, `(status, body, headers)`, or a `Response`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from ..types import Headers, HttpRequest, HttpResponse


class InvalidResponse(TypeError):
    """A handler returned something that cannot become an HTTP response."""


class HeaderMap(Mapping[str, str]):
    """Case-insensitive, multi-valued, read-only headers. `h["x"]` joins repeats with ','."""

    __slots__ = ("_items",)

    def __init__(self, items: Headers) -> None:
        self._items = [(k.lower(), v) for k, v in items]

    def __getitem__(self, key: str) -> str:
        key = key.lower()
        values = [v for k, v in self._items if k == key]
        if not values:
            raise KeyError(key)
        return ",".join(values)

    def getlist(self, key: str) -> list[str]:
        key = key.lower()
        return [v for k, v in self._items if k == key]

    def __iter__(self) -> Iterator[str]:
        seen: dict[str, None] = {}
        for k, _ in self._items:
            seen.setdefault(k)
        return iter(seen)

    def __len__(self) -> int:
        return len({k for k, _ in self._items})

    def items_list(self) -> Headers:
        return list(self._items)

    def __repr__(self) -> str:
        return f"HeaderMap({self._items!r})"


class QueryParams(Mapping[str, str]):
    """Query string parameters; `q["a"]` is the last value (as in API Gateway), `getlist` all."""

    __slots__ = ("_items",)

    def __init__(self, query_string: str) -> None:
        self._items = parse_qsl(query_string, keep_blank_values=True)

    def __getitem__(self, key: str) -> str:
        for k, v in reversed(self._items):
            if k == key:
                return v
        raise KeyError(key)

    def getlist(self, key: str) -> list[str]:
        return [v for k, v in self._items if k == key]

    def __iter__(self) -> Iterator[str]:
        seen: dict[str, None] = {}
        for k, _ in self._items:
            seen.setdefault(k)
        return iter(seen)

    def __len__(self) -> int:
        return len({k for k, _ in self._items})

    def __repr__(self) -> str:
        return f"QueryParams({self._items!r})"


class Request:
    """What a native HTTP handler receives."""

    __slots__ = ("_raw", "_headers", "_query", "_json")

    def __init__(self, raw: HttpRequest) -> None:
        self._raw = raw
        self._headers: HeaderMap | None = None
        self._query: QueryParams | None = None
        self._json: Any = _UNSET

    @property
    def method(self) -> str:
        return self._raw.method

    @property
    def path(self) -> str:
        return self._raw.path

    @property
    def route(self) -> str:
        return self._raw.route

    @property
    def path_params(self) -> dict[str, str]:
        return self._raw.path_params

    @property
    def query_string(self) -> str:
        return self._raw.query_string

    @property
    def query(self) -> QueryParams:
        if self._query is None:
            self._query = QueryParams(self._raw.query_string)
        return self._query

    @property
    def headers(self) -> HeaderMap:
        if self._headers is None:
            self._headers = HeaderMap(self._raw.headers)
        return self._headers

    @property
    def cookies(self) -> dict[str, str]:
        """Cookie name -> value, parsed leniently as browsers send them: one malformed
        pair does not hide the others (http.cookies.SimpleCookie drops them all)."""
        out: dict[str, str] = {}
        for header in self.headers.getlist("cookie"):
            for chunk in header.split(";"):
                name, sep, value = chunk.partition("=")
                name, value = name.strip(), value.strip()
                if not sep or not name:
                    continue
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                out[name] = unquote(value)
        return out

    @property
    def body(self) -> bytes:
        return self._raw.body

    @property
    def text(self) -> str:
        return self._raw.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; a malformed body raises `BadRequest` (HTTP 400)."""
        if self._json is _UNSET:
            if not self._raw.body:
                raise BadRequest("the request body is empty; JSON was expected")
            try:
                self._json = json.loads(self._raw.body, parse_constant=_not_json)
            except RecursionError:  # the gateway bounds depth; this is the last line
                raise BadRequest("the request body is nested too deeply") from None
            except ValueError as exc:
                raise BadRequest(f"the request body is not valid JSON: {exc}") from None
        return self._json

    @property
    def authorizer(self) -> dict[str, Any] | None:
        """What the route's authorizer established: {"type", "claims", "scopes", ...}."""
        return self._raw.authorizer

    @property
    def claims(self) -> dict[str, Any]:
        """The verified claims (JWT) or the custom authorizer's context; {} if none."""
        return (self._raw.authorizer or {}).get("claims") or {}

    @property
    def request_id(self) -> str:
        return self._raw.request_id

    @property
    def source_ip(self) -> str:
        return self._raw.source_ip

    @property
    def raw(self) -> HttpRequest:
        return self._raw

    def __repr__(self) -> str:
        return f"Request({self.method} {self.path})"


_UNSET: Any = object()


def _not_json(name: str) -> Any:
    """NaN and Infinity are Python's extensions, not JSON (RFC 8259): refused."""
    raise ValueError(f"{name} is not a JSON value")


class HTTPError(Exception):
    """Raise from a handler to answer with `status` and a JSON `{"message": ...}` body."""

    status = 500

    def __init__(self, message: str, status: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        self.message = message
        self.extra = extra


class BadRequest(HTTPError):
    status = 400


class NotFound(HTTPError):
    status = 404


@dataclass
class Response:
    """An explicit response: `Response(201, {"id": 1}, headers={"location": "/o/1"})`."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] | Headers = field(default_factory=dict)
    content_type: str | None = None


def encode_body(body: Any) -> tuple[bytes, str | None]:
    """A body value as bytes and the content type it implies."""
    if body is None:
        return b"", None
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body), "application/octet-stream"
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain; charset=utf-8"
    try:
        return (
            json.dumps(body, separators=(",", ":"), ensure_ascii=False,
                       allow_nan=False).encode("utf-8"),
            "application/json",
        )
    except (TypeError, ValueError) as exc:
        raise InvalidResponse(f"the response body is not JSON-serialisable: {exc}") from None


def _header_list(headers: Mapping[str, str] | Headers | None) -> Headers:
    if not headers:
        return []
    if isinstance(headers, Mapping):
        return [(str(k).lower(), str(v)) for k, v in headers.items()]
    return [(str(k).lower(), str(v)) for k, v in headers]


def _make(status: Any, body: Any, headers: Any, content_type: str | None = None) -> HttpResponse:
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise InvalidResponse(f"the status code must be an int from 100 to 599, got {status!r}")
    data, implied = encode_body(body)
    hlist = _header_list(headers)
    ctype = content_type or implied
    if ctype and not any(k == "content-type" for k, _ in hlist):
        hlist.append(("content-type", ctype))
    if body is None and status == 200:
        status = 204
    return HttpResponse(status=status, headers=hlist, body=data)


def to_http_response(result: Any) -> HttpResponse:
    """Turn whatever a native handler returned into an `HttpResponse`."""
    if isinstance(result, HttpResponse):
        return result
    if isinstance(result, Response):
        return _make(result.status, result.body, result.headers, result.content_type)
    if isinstance(result, tuple):
        if len(result) == 2:
            return _make(result[0], result[1], None)
        if len(result) == 3:
            return _make(result[0], result[1], result[2])
        raise InvalidResponse(
            f"a tuple response must be (status, body) or (status, body, headers); got "
            f"{len(result)} items"
        )
    return _make(200, result, None)


def error_response(exc: HTTPError) -> HttpResponse:
    body = {"message": exc.message, **exc.extra}
    return _make(exc.status, body, None)
