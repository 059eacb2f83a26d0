"""Squall-native HTTP: the `Request` a handler reads, and how whatever it returns becomes
a response (`to_http_response`), including the errors it may raise on purpose."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import pytest

from squall import BadRequest, HTTPError, NotFound, Response
from squall.events.http import (
    HeaderMap,
    InvalidResponse,
    QueryParams,
    Request,
    error_response,
    to_http_response,
)
from squall.types import HttpRequest, HttpResponse


def request(*, body: bytes = b"", query: str = "", headers=(), **kw) -> Request:
    return Request(HttpRequest(method=kw.pop("method", "POST"), path=kw.pop("path", "/x"),
                               query_string=query, headers=list(headers), body=body, **kw))


# -- the request ---------------------------------------------------------------------------

def test_plain_attributes():
    raw = HttpRequest(method="GET", path="/orders/7", query_string="a=1",
                      headers=[("host", "h")], body=b"", path_params={"id": "7"},
                      route="GET /orders/{id}", source_ip="10.0.0.9", request_id="rid-1")
    req = Request(raw)
    assert (req.method, req.path, req.route) == ("GET", "/orders/7", "GET /orders/{id}")
    assert req.path_params == {"id": "7"}
    assert req.query_string == "a=1"
    assert req.request_id == "rid-1" and req.source_ip == "10.0.0.9"
    assert req.raw is raw
    assert repr(req) == "Request(GET /orders/7)"


def test_json_body():
    req = request(body=b'{"customer": "ada", "items": [1, 2]}')
    assert req.json() == {"customer": "ada", "items": [1, 2]}
    assert req.json() is req.json()  # parsed once


@pytest.mark.parametrize("body", [b"[]", b"0", b'"s"', b"null", "{\"k\": \"ü\"}".encode()])
def test_json_any_value(body):
    assert request(body=body).json() == json.loads(body)


def test_json_empty_body_is_a_bad_request():
    with pytest.raises(BadRequest, match="empty") as info:
        request(body=b"").json()
    assert info.value.status == 400


@pytest.mark.parametrize("body", [b"{", b"{'a': 1}", b"nope", b"\xff\xfe", b"{} {}"])
def test_json_malformed_body_is_a_bad_request(body):
    with pytest.raises(BadRequest, match="not valid JSON") as info:
        request(body=body).json()
    assert info.value.status == 400


def test_text_and_body():
    req = request(body="café".encode())
    assert req.text == "café" and req.body == "café".encode()
    assert request(body=b"caf\xe9").text == "caf\ufffd"  # not UTF-8: replaced, not raised


def test_query_last_value_and_getlist():
    req = request(query="a=1&b=x&a=2&empty=&plus=a+b&pct=%2F%26")
    q = req.query
    assert q["a"] == "2"  # the last value, as API Gateway's queryStringParameters
    assert q.getlist("a") == ["1", "2"]
    assert q["empty"] == "" and q["plus"] == "a b" and q["pct"] == "/&"
    assert q.get("missing") is None and q.getlist("missing") == []
    assert list(q) == ["a", "b", "empty", "plus", "pct"]  # first-seen order, no repeats
    assert len(q) == 5
    assert "a" in q and "z" not in q
    assert dict(q) == {"a": "2", "b": "x", "empty": "", "plus": "a b", "pct": "/&"}
    with pytest.raises(KeyError):
        q["missing"]


def test_query_is_empty_without_a_query_string():
    assert dict(request().query) == {} and len(request().query) == 0
    assert request().query is not None


def test_headers_case_insensitive_multi_valued():
    req = request(headers=[("Content-Type", "application/json"), ("X-Tag", "a"),
                           ("x-tag", "b"), ("X-TAG", "c")])
    h = req.headers
    assert h["content-type"] == h["CONTENT-TYPE"] == "application/json"
    assert h["x-tag"] == "a,b,c"  # repeats joined with ',' (as API Gateway v2 does)
    assert h.getlist("X-Tag") == ["a", "b", "c"]
    assert h.getlist("nope") == []
    assert h.get("nope") is None
    assert list(h) == ["content-type", "x-tag"] and len(h) == 2
    assert "Content-Type" in h  # Mapping.__contains__ goes through __getitem__
    with pytest.raises(KeyError):
        h["nope"]


def test_headermap_items_list_keeps_order_and_repeats():
    h = HeaderMap([("A", "1"), ("b", "2"), ("a", "3")])
    assert h.items_list() == [("a", "1"), ("b", "2"), ("a", "3")]


def test_cookies():
    req = request(headers=[("cookie", "session=abc123; theme=dark"), ("cookie", "lang=en")])
    assert req.cookies == {"session": "abc123", "theme": "dark", "lang": "en"}
    assert request().cookies == {}


def test_quoted_cookie_value():
    assert request(headers=[("cookie", 'a="x y"; b=2')]).cookies == {"a": "x y", "b": "2"}


@pytest.mark.parametrize("header", ["session=abc; note=hello world; theme=dark",
                                    'prefs={"a":1}; theme=dark'])
def test_one_odd_cookie_does_not_hide_the_others(header):
    assert request(headers=[("cookie", header)]).cookies.get("theme") == "dark"


def test_query_params_class_directly():
    assert QueryParams("x=1&x=2&y")["y"] == ""


# -- return values -------------------------------------------------------------------------

def header(resp: HttpResponse, name: str) -> list[str]:
    return [v for k, v in resp.headers if k == name]


@pytest.mark.parametrize("value", [{"id": 1, "name": "café"}, [1, "two", None], [], {}])
def test_dict_and_list_are_json(value):
    resp = to_http_response(value)
    assert resp.status == 200
    assert header(resp, "content-type") == ["application/json"]
    assert json.loads(resp.body) == value


def test_json_is_compact_utf8():
    assert to_http_response({"name": "café", "n": [1, 2]}).body == '{"name":"café","n":[1,2]}'.encode()


@pytest.mark.parametrize("value", [0, 1.5, True, False])
def test_scalars_are_json(value):
    resp = to_http_response(value)
    assert resp.status == 200 and json.loads(resp.body) == value
    assert header(resp, "content-type") == ["application/json"]


def test_str_is_text():
    resp = to_http_response("héllo")
    assert (resp.status, resp.body) == (200, "héllo".encode())
    assert header(resp, "content-type") == ["text/plain; charset=utf-8"]


def test_empty_str_is_still_200_text():
    resp = to_http_response("")
    assert resp.status == 200 and resp.body == b""
    assert header(resp, "content-type") == ["text/plain; charset=utf-8"]


@pytest.mark.parametrize("value", [b"\x00\xff", bytearray(b"ab"), memoryview(b"cd")])
def test_bytes_are_octet_stream(value):
    resp = to_http_response(value)
    assert resp.status == 200 and resp.body == bytes(value)
    assert isinstance(resp.body, bytes)
    assert header(resp, "content-type") == ["application/octet-stream"]


def test_none_is_204_without_content_type():
    resp = to_http_response(None)
    assert resp == HttpResponse(status=204, headers=[], body=b"")


def test_status_and_body():
    resp = to_http_response((201, {"id": 7}))
    assert resp.status == 201 and json.loads(resp.body) == {"id": 7}
    assert header(resp, "content-type") == ["application/json"]


def test_status_with_no_body_keeps_the_status():
    assert to_http_response((202, None)) == HttpResponse(status=202, headers=[], body=b"")
    assert to_http_response((200, None)).status == 204  # 200 with nothing is 204


def test_status_body_headers_dict():
    resp = to_http_response((201, {"id": 7}, {"Location": "/orders/7", "X-Count": 3}))
    assert resp.status == 201
    assert resp.headers == [("location", "/orders/7"), ("x-count", "3"),
                            ("content-type", "application/json")]


def test_status_body_headers_list_keeps_repeats():
    resp = to_http_response((200, "ok", [("Set-Cookie", "a=1"), ("set-cookie", "b=2")]))
    assert header(resp, "set-cookie") == ["a=1", "b=2"]


def test_response_object():
    resp = to_http_response(Response(201, {"id": 1}, headers={"Location": "/orders/1"}))
    assert resp.status == 201 and json.loads(resp.body) == {"id": 1}
    assert resp.headers == [("location", "/orders/1"), ("content-type", "application/json")]


def test_response_headers_as_a_list():
    resp = to_http_response(Response(200, "x", headers=[("Vary", "a"), ("Vary", "b")]))
    assert header(resp, "vary") == ["a", "b"]


def test_response_defaults():
    assert to_http_response(Response()) == HttpResponse(status=204, headers=[], body=b"")
    assert to_http_response(Response(404)) == HttpResponse(status=404, headers=[], body=b"")


def test_content_type_override():
    resp = to_http_response(Response(200, "<p>hi</p>", content_type="text/html"))
    assert header(resp, "content-type") == ["text/html"]
    resp = to_http_response(Response(200, b"\x89PNG", content_type="image/png"))
    assert header(resp, "content-type") == ["image/png"] and resp.body == b"\x89PNG"
    resp = to_http_response(Response(200, {"a": 1}, content_type="application/problem+json"))
    assert header(resp, "content-type") == ["application/problem+json"]
    assert json.loads(resp.body) == {"a": 1}


def test_content_type_on_an_empty_body():
    resp = to_http_response(Response(200, None, content_type="text/csv"))
    assert resp.status == 204 and header(resp, "content-type") == ["text/csv"]


@pytest.mark.parametrize("result, expected", [
    ((200, "a,b", {"Content-Type": "text/csv"}), "text/csv"),
    ((200, {"a": 1}, [("CONTENT-TYPE", "application/vnd.api+json")]), "application/vnd.api+json"),
    (Response(200, "a,b", headers={"content-type": "text/csv"}, content_type="text/plain"),
     "text/csv"),
])
def test_the_users_content_type_header_is_kept_and_not_doubled(result, expected):
    assert header(to_http_response(result), "content-type") == [expected]


def test_http_response_passes_through():
    raw = HttpResponse(status=418, headers=[("x", "y")], body=b"teapot")
    assert to_http_response(raw) is raw


@pytest.mark.parametrize("result", [
    (99, "x"), (600, "x"), (0, "x"), (-200, "x"), ("200", "x"), (200.0, "x"), (True, "x"),
    (None, "x"), Response(700, "x"), Response("201", "x"), (1000, "x", {}),
])
def test_bad_status_is_invalid_response(result):
    with pytest.raises(InvalidResponse, match="status code"):
        to_http_response(result)


@pytest.mark.parametrize("status", [100, 200, 299, 301, 404, 599])
def test_status_range_edges(status):
    assert to_http_response((status, "x")).status == status


@pytest.mark.parametrize("result", [(200, "x", {}, "extra"), (200,), ()])
def test_tuples_of_other_lengths_are_invalid(result):
    with pytest.raises(InvalidResponse, match=r"\(status, body\)"):
        to_http_response(result)


@pytest.mark.parametrize("result", [
    {1, 2}, object(), {"when": Decimal("1.5")}, [b"bytes inside"], (200, {"x": object()}),
    Response(200, {1, 2}),
])
def test_non_serialisable_body_is_invalid_response(result):
    with pytest.raises(InvalidResponse, match="not JSON-serialisable"):
        to_http_response(result)


def test_invalid_response_is_a_type_error():
    assert issubclass(InvalidResponse, TypeError)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_numbers_are_not_sent_as_json(value):
    try:
        resp = to_http_response({"x": value})
    except InvalidResponse:
        return
    json.loads(resp.body, parse_constant=_reject)


def _reject(token):
    raise ValueError(f"{token} is not JSON")


# -- errors raised on purpose ------------------------------------------------------------------

def test_http_error_default_is_500():
    resp = error_response(HTTPError("it broke"))
    assert resp.status == 500
    assert json.loads(resp.body) == {"message": "it broke"}
    assert header(resp, "content-type") == ["application/json"]


def test_http_error_with_status_and_extra_fields():
    exc = HTTPError("slow down", status=429, retryAfter=3, code="throttled")
    assert str(exc) == "slow down"
    resp = error_response(exc)
    assert resp.status == 429
    assert json.loads(resp.body) == {"message": "slow down", "retryAfter": 3,
                                     "code": "throttled"}


@pytest.mark.parametrize("cls, status", [(BadRequest, 400), (NotFound, 404)])
def test_bad_request_and_not_found(cls, status):
    exc = cls("no order 7")
    assert isinstance(exc, HTTPError) and exc.status == status
    resp = error_response(exc)
    assert resp.status == status and json.loads(resp.body) == {"message": "no order 7"}


def test_subclass_status_can_be_overridden_per_instance():
    assert error_response(NotFound("gone", status=410)).status == 410
    assert NotFound.status == 404  # the class default is untouched


def test_bad_request_from_json_becomes_a_400_response():
    with pytest.raises(BadRequest) as info:
        request(body=b"{").json()
    resp = error_response(info.value)
    assert resp.status == 400
    assert json.loads(resp.body)["message"].startswith("the request body is not valid JSON")
