"""API Gateway's Lambda proxy events, so handlers written for AWS run unchanged.

A neutral `HttpRequest` becomes one of API Gateway's two proxy event shapes, and what the
handler returns goes back through API Gateway's rules for that shape:

- HTTP API, payload format 2.0: `http_api_v2_event` and `response_from_v2`.
- REST API, `AWS_PROXY` integration (payload format 1.0): `rest_api_v1_event` and
  `response_from_v1`.

Pure functions, standard library only. The shapes follow the API Gateway developer guide
and, where hand-written samples and AWS disagree, the events and responses AWS itself
recorded (localstack's AWS-validated snapshots). Deliberate choices, each because a fact
is not available here:

- `HttpRequest` keeps header names lower-cased, so REST (v1) events title-case them
  ("content-type" -> "Content-Type"). AWS passes the client's own spelling, which for
  HTTP/1.1 clients is nearly always this one; HTTP API (v2) events are lower-case, as on AWS.
- Request bodies that are not UTF-8 are base64-encoded in both shapes. HTTP APIs also
  base64-encode any body whose content type is not text (form posts included); REST APIs
  only do that for `binaryMediaTypes`, which Squall does not model.
- A v1 response with `isBase64Encoded: true` is decoded, as for a REST API whose
  `binaryMediaTypes` match; without them AWS would send the base64 text itself.
- Stage variables, authorizers and mutual TLS do not exist here, so `stageVariables` is null
  (v1) or absent (v2), and `authorizer`/`authentication` never appear.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

from ..types import Headers, HttpRequest, HttpResponse
from .http import InvalidResponse

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TEXT_TYPES = frozenset({"application/json", "application/javascript", "application/xml"})
# AWS's recorded REST events have no Content-Length even for a POST with a body;
# localstack, checked against AWS, strips Connection too.
_V1_DROPPED_HEADERS = frozenset({"content-length", "connection"})
_V1_RESPONSE_KEYS = frozenset(
    {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
)
# Identity keys AWS recorded ahead of sourceIp/user/userAgent/userArn; null without IAM auth.
_V1_IDENTITY_NULLS = (
    "accessKey accountId caller cognitoAuthenticationProvider cognitoAuthenticationType "
    "cognitoIdentityId cognitoIdentityPoolId principalOrgId"
).split()


class MalformedProxyResponse(InvalidResponse):
    """A Lambda proxy response API Gateway would refuse.

    `status` is what AWS answers: a REST API 502 (logged as "Malformed Lambda proxy
    response"), an HTTP API 500 `{"message":"Internal Server Error"}`.
    """

    def __init__(self, message: str, *, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


# -- requests ----------------------------------------------------------------------------


def http_api_v2_event(
    req: HttpRequest,
    *,
    stage: str = "$default",
    api_id: str = "squall",
    account_id: str = "000000000000",
    domain_name: str | None = None,
) -> dict:
    """The event an HTTP API Lambda integration with payload format 2.0 sends."""
    grouped = _grouped_headers(req.headers)
    cookies = [c.strip() for value in grouped.pop("cookie", []) for c in value.split(";")]
    cookies = [c for c in cookies if c]
    headers = {name: ",".join(values) for name, values in grouped.items()}
    query = {k: ",".join(vs) for k, vs in _grouped_query(req.query_string).items()}
    route_key = req.route or "$default"
    # A named stage is part of the URL and AWS leaves it in rawPath; $default is the root.
    raw_path = req.path if stage == "$default" else f"/{stage}{req.path}"
    domain, prefix = _domain(req, api_id, domain_name)

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": req.query_string,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": domain,
        "domainPrefix": prefix,
        "http": {
            "method": req.method.upper(),
            "path": raw_path,
            "protocol": f"HTTP/{req.http_version}",
            "sourceIp": req.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": req.request_id,
        "routeKey": route_key,
        "stage": stage,
        "time": _request_time(req.time_epoch_ms),
        "timeEpoch": req.time_epoch_ms,
    }
    if req.authorizer:  # as HTTP APIs pass JWT / Lambda authorizer results
        auth = req.authorizer
        event["requestContext"]["authorizer"] = (
            {"jwt": {"claims": auth.get("claims", {}), "scopes": auth.get("scopes") or None}}
            if auth.get("type") == "jwt" else {"lambda": {**auth.get("claims", {}),
                                                          **{k: v for k, v in auth.items()
                                                             if k.startswith("key")}}})
    is_base64 = False
    if req.body:
        binary = not _is_text_type(headers.get("content-type"))
        event["body"], is_base64 = _encode_body(req.body, binary=binary)
    if req.path_params:
        event["pathParameters"] = dict(req.path_params)
    event["isBase64Encoded"] = is_base64
    return event


def rest_api_v1_event(
    req: HttpRequest,
    *,
    stage: str = "prod",
    api_id: str = "squall",
    account_id: str = "000000000000",
    domain_name: str | None = None,
) -> dict:
    """The event a REST API `AWS_PROXY` integration sends (payload format 1.0)."""
    multi = {
        _canonical(name): values
        for name, values in _grouped_headers(req.headers).items()
        if name not in _V1_DROPPED_HEADERS
    }
    query = _grouped_query(req.query_string)
    resource = _route_path(req.route) or req.path
    method = req.method.upper()
    domain, prefix = _domain(req, api_id, domain_name)
    body, is_base64 = _encode_body(req.body, binary=False) if req.body else (None, False)
    user_agent = multi.get("User-Agent", [None])[-1]
    identity: dict[str, Any] = dict.fromkeys(_V1_IDENTITY_NULLS)
    identity.update(sourceIp=req.source_ip, user=None, userAgent=user_agent, userArn=None)
    return {
        "resource": resource,
        "path": req.path,
        "httpMethod": method,
        # The single-value maps keep the last value, as AWS does.
        "headers": {name: values[-1] for name, values in multi.items()} or None,
        "multiValueHeaders": multi or None,
        "queryStringParameters": {k: vs[-1] for k, vs in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": dict(req.path_params) or None,
        "stageVariables": None,
        "requestContext": {
            "accountId": account_id,
            "apiId": api_id,
            "deploymentId": _short_id(f"deployment {api_id} {stage}"),
            "domainName": domain,
            "domainPrefix": prefix,
            "extendedRequestId": _extended_request_id(req.request_id),
            "httpMethod": method,
            "identity": identity,
            # REST stages are always named; "$default" is an HTTP API sending payload 1.0.
            "path": req.path if stage == "$default" else f"/{stage}{req.path}",
            "protocol": f"HTTP/{req.http_version}",
            "requestId": req.request_id,
            "requestTime": _request_time(req.time_epoch_ms),
            "requestTimeEpoch": req.time_epoch_ms,
            "resourceId": _short_id(f"resource {api_id} {resource}"),
            "resourcePath": resource,
            "stage": stage,
            **({"authorizer": {"claims": req.authorizer.get("claims", {}),
                               **{k: v for k, v in req.authorizer.items() if k.startswith("key")}}}
               if req.authorizer else {}),
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def _grouped_headers(headers: Headers) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name.lower(), []).append(value)
    return grouped


def _grouped_query(query_string: str) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for key, value in parse_qsl(query_string, keep_blank_values=True):
        grouped.setdefault(key, []).append(value)
    return grouped


def _canonical(name: str) -> str:
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


def _route_path(route: str) -> str:
    """"GET /orders/{id}" -> "/orders/{id}"; "$default" has no path template."""
    _, sep, path = route.partition(" ")
    return path if sep else ""


def _domain(req: HttpRequest, api_id: str, domain_name: str | None) -> tuple[str, str]:
    """AWS reports the Host the client used; without one, an execute-api style name."""
    if domain_name is None:
        host = next((value for name, value in req.headers if name.lower() == "host"), "")
        name, sep, port = host.rpartition(":")
        domain_name = name if sep and port.isdigit() else host
    domain_name = domain_name or f"{api_id}.execute-api.localhost"
    return domain_name, domain_name.split(".", 1)[0]


def _request_time(epoch_ms: int) -> str:
    """`12/Mar/2020:19:03:58 +0000`, in English whatever the locale."""
    t = datetime.fromtimestamp(epoch_ms // 1000, tz=timezone.utc)
    return (
        f"{t.day:02d}/{_MONTHS[t.month - 1]}/{t.year}:"
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} +0000"
    )


def _short_id(seed: str) -> str:
    """A stable 6-character lower-case id, shaped like API Gateway's resource ids."""
    return base64.b32encode(hashlib.sha1(seed.encode()).digest()).decode()[:6].lower()


def _extended_request_id(request_id: str) -> str:
    """Shaped like AWS's (`TWegAcC4EowCHnA=`) and stable for a given request id."""
    return base64.b64encode(hashlib.sha1(request_id.encode()).digest()[:11]).decode()


def _is_text_type(content_type: str | None) -> bool:
    if not content_type:
        return True
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith(("+json", "+xml"))


def _encode_body(body: bytes, *, binary: bool) -> tuple[str, bool]:
    if not binary:
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


# -- responses ---------------------------------------------------------------------------


def response_from_v2(result: Any) -> HttpResponse:
    """What an HTTP API (payload 2.0) answers for a handler's return value.

    A dict with `statusCode` is a proxy response: `headers`, `cookies` (each one a
    `set-cookie`), `body`, `isBase64Encoded`; other keys, `multiValueHeaders` among them,
    are ignored as AWS does. Anything else is the body itself: status 200,
    `application/json`, a str as-is and any other value as JSON.
    """
    if isinstance(result, dict) and "statusCode" in result:
        status = _status(result["statusCode"], http_status=500)
        headers = _single_headers(result.get("headers"), http_status=500)
        cookies = result.get("cookies")
        if cookies is None:
            cookies = []
        if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
            raise MalformedProxyResponse(
                f"'cookies' must be a list of strings, got {cookies!r}", status=500
            )
        hlist = [(name.lower(), value) for name, value in headers if value is not None]
        hlist += [("set-cookie", cookie) for cookie in cookies]
        return HttpResponse(status=status, headers=hlist, body=_body(result, http_status=500))
    if isinstance(result, dict) and "errorMessage" in result:
        # AWS takes this for the shape of a failed invocation and answers 500.
        raise MalformedProxyResponse(
            f"the function returned an error object: {result['errorMessage']!r}", status=500
        )
    if isinstance(result, str):
        text = result
    else:
        try:
            text = json.dumps(result)
        except (TypeError, ValueError) as exc:
            raise MalformedProxyResponse(
                f"the function's result is not JSON-serialisable: {exc}", status=500
            ) from None
    return HttpResponse(200, [("content-type", "application/json")], text.encode("utf-8"))


def response_from_v1(result: Any) -> HttpResponse:
    """What a REST API answers for an `AWS_PROXY` handler's return value.

    The result must be an object with no keys beyond statusCode, headers,
    multiValueHeaders, body and isBase64Encoded; none is required (statusCode defaults
    to 200, as AWS recorded). `headers` and `multiValueHeaders` merge per name, ignoring
    case, multi-values first and a single value kept unless already among them. Without
    a content type AWS adds `application/json`; a header set to null is left out, and
    suppresses that default.
    """
    if not isinstance(result, dict):
        raise MalformedProxyResponse(
            f"a REST API proxy response must be a JSON object with 'statusCode' and 'body', "
            f"got {type(result).__name__}: {_preview(result)}"
        )
    unknown = sorted(set(result) - _V1_RESPONSE_KEYS)
    if unknown:
        raise MalformedProxyResponse(
            f"a REST API proxy response may only have the keys {sorted(_V1_RESPONSE_KEYS)}; "
            f"it also has {unknown}"
        )
    status = _status(result.get("statusCode", 200), http_status=502, default=200)
    merged: dict[str, tuple[str, list[str]]] = {}  # lower-case name -> (name, values)
    named: set[str] = set()
    for name, values in _multi_headers(result.get("multiValueHeaders")):
        named.add(name.lower())
        entry = merged.setdefault(name.lower(), (name, []))[1]
        entry.extend(v for v in values if v is not None)
    for name, value in _single_headers(result.get("headers"), http_status=502):
        named.add(name.lower())
        entry = merged.setdefault(name.lower(), (name, []))[1]
        if value is not None and value not in entry:
            entry.append(value)
    hlist = [(key, value) for key, (_, values) in merged.items() for value in values]
    if "content-type" not in named:
        hlist.append(("content-type", "application/json"))
    return HttpResponse(status=status, headers=hlist, body=_body(result, http_status=502))


def _status(value: Any, *, http_status: int, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    code: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        code = value
    elif isinstance(value, str) and value.isascii() and value.strip().isdigit():
        code = int(value)
    if code is None or not 100 <= code <= 599:
        raise MalformedProxyResponse(
            f"'statusCode' must be an HTTP status (an int from 100 to 599, or such a number "
            f"as a string), got {value!r}",
            status=http_status,
        )
    return code


def _header_value(value: Any, name: str, *, http_status: int) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"  # as AWS renders JSON booleans
    if isinstance(value, int | float):
        return json.dumps(value)
    raise MalformedProxyResponse(
        f"the value of header {name!r} must be a string, got {type(value).__name__}",
        status=http_status,
    )


def _single_headers(headers: Any, *, http_status: int) -> list[tuple[str, str | None]]:
    if headers is None:
        return []
    if not isinstance(headers, dict):
        raise MalformedProxyResponse(
            f"'headers' must be an object of header name to value, got "
            f"{type(headers).__name__}",
            status=http_status,
        )
    return [
        (str(name), _header_value(value, str(name), http_status=http_status))
        for name, value in headers.items()
    ]


def _multi_headers(headers: Any) -> list[tuple[str, list[str | None]]]:
    if headers is None:
        return []
    if not isinstance(headers, dict) or not all(isinstance(v, list) for v in headers.values()):
        raise MalformedProxyResponse(
            f"'multiValueHeaders' must be an object of header name to a list of values, "
            f"got {_preview(headers)}"
        )
    return [
        (str(name), [_header_value(v, str(name), http_status=502) for v in values])
        for name, values in headers.items()
    ]


def _body(result: dict, *, http_status: int) -> bytes:
    body = result.get("body")
    flag = result.get("isBase64Encoded")
    if flag is not None and not isinstance(flag, bool):
        raise MalformedProxyResponse(
            f"'isBase64Encoded' must be true or false, got {flag!r}", status=http_status
        )
    if body is None:
        return b""
    if not isinstance(body, str):
        raise MalformedProxyResponse(
            f"'body' must be a string (serialise it, e.g. json.dumps(body)), got "
            f"{type(body).__name__}",
            status=http_status,
        )
    if not flag:
        return body.encode("utf-8")
    try:
        return base64.b64decode(body)
    except (binascii.Error, ValueError) as exc:
        raise MalformedProxyResponse(
            f"'isBase64Encoded' is true but 'body' is not valid base64: {exc}",
            status=http_status,
        ) from None


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
