"""The HTTP gateway over real uvicorn on 127.0.0.1, in front of the real runtime."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from servers import RunningServer

APP = str(Path(__file__).parent / "apps" / "basic.py")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with RunningServer(APP, str(tmp_path_factory.mktemp("data"))) as s:
        yield s


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=20) as c:
        yield c


def _is_request_id(value: str) -> bool:
    return str(uuid.UUID(value)) == value


def test_path_params_and_query(http):
    r = http.get("/hello/ada", params={"x": "1"})
    assert r.status_code == 200
    assert r.json() == {"hello": "ada", "q": {"x": "1"}}
    assert r.headers["content-type"] == "application/json"
    assert _is_request_id(r.headers["x-request-id"])


def test_json_echo_and_status_tuple(http):
    body = {"a": [1, 2, {"b": None}], "ü": "ß"}
    assert http.post("/echo", json=body).json() == body
    r = http.get("/status/418")
    assert r.status_code == 418 and r.json() == {"status": "418"}


def test_binary_response(http):
    r = http.get("/binary")
    assert r.content == bytes(range(256))
    assert r.headers["content-type"] == "application/octet-stream"


def test_bad_json_body_is_a_400(http):
    r = http.post("/echo", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["message"]


def test_404_unknown_route(http):
    r = http.get("/no/such/route")
    assert r.status_code == 404
    body = r.json()
    assert body["code"] == "not_found" and body["requestId"] == r.headers["x-request-id"]


def test_405_wrong_method_lists_allowed(http):
    r = http.delete("/hello/ada")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET"
    assert r.json()["code"] == "method_not_allowed"
    assert _is_request_id(r.headers["x-request-id"])


def test_413_body_over_the_limit_with_content_length(http):
    big = b"x" * (6 * 1024 * 1024 + 1)
    r = http.post("/echo", content=big)
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    assert r.json()["limitBytes"] == 6 * 1024 * 1024


def test_413_body_over_the_limit_when_streamed(server):
    def chunks():
        for _ in range(7):
            yield b"y" * (1024 * 1024)

    with httpx.Client(base_url=server.url, timeout=20) as c:
        r = c.post("/echo", content=chunks())  # chunked: no content-length up front
    assert r.status_code == 413


def test_body_at_the_limit_is_accepted(http):
    payload = json.dumps({"blob": "z" * (6 * 1024 * 1024 - 20)}).encode()
    assert len(payload) <= 6 * 1024 * 1024
    r = http.post("/echo", content=payload)
    assert r.status_code == 200 and len(r.json()["blob"]) == 6 * 1024 * 1024 - 20


def test_502_function_error_with_request_id(http):
    r = http.get("/boom")
    assert r.status_code == 502
    body = r.json()
    assert body["code"] == "function_error"
    assert body["errorType"] == "RuntimeError" and body["errorMessage"] == "kaboom"
    assert body["requestId"] == r.headers["x-request-id"]


def test_502_crash_then_recovery(http):
    r = http.get("/crash")
    assert r.status_code == 502
    assert r.json()["code"] == "function_crashed"
    assert r.json()["requestId"] == r.headers["x-request-id"]
    assert http.get("/hello/again").status_code == 200


def test_504_timeout(http):
    r = http.get("/slow")
    assert r.status_code == 504
    body = r.json()
    assert body["code"] == "timeout"
    assert body["errorMessage"].endswith("Task timed out after 0.30 seconds")


def test_429_over_concurrency(server):
    results = []

    def call():
        with httpx.Client(base_url=server.url, timeout=20) as c:
            results.append(c.get("/limited"))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 429, 429], codes
    throttled = [r for r in results if r.status_code == 429]
    assert all(r.json()["code"] == "throttled" for r in throttled)
    assert all(_is_request_id(r.headers["x-request-id"]) for r in results)


def test_aws_http_v2_handler_unchanged(http):
    r = http.post("/v2/a/b/c?x=1&x=2&y=3", content=b"hello", headers={"cookie": "k=v"})
    assert r.status_code == 200
    body = r.json()
    assert body["rawPath"] == "/v2/a/b/c"
    assert body["proxy"] == "a/b/c"
    assert body["query"] == {"x": "1,2", "y": "3"}
    assert body["method"] == "POST"
    assert body["body"] == "hello" and body["b64"] is False
    assert body["request_id"] == r.headers["x-request-id"]
    assert r.headers["x-route"] == "ANY /v2/{proxy+}"
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]


def test_aws_http_v2_binary_request_is_base64(http):
    raw = bytes(range(200, 256))
    r = http.put("/v2/bin", content=raw, headers={"content-type": "application/octet-stream"})
    body = r.json()
    assert body["b64"] is True and base64.b64decode(body["body"]) == raw


def test_aws_http_v2_inferred_response(http):
    r = http.get("/v2plain")
    assert r.status_code == 200
    assert r.json() == {"just": "a dict"}
    assert r.headers["content-type"] == "application/json"


def test_aws_rest_v1_handler_with_base64_and_multivalue(http):
    r = http.post("/v1/items/42?tag=a&tag=b", content=b"{}")
    assert r.status_code == 201
    assert r.json() == {"resource": "/v1/items/{item}", "item": "42", "method": "POST",
                        "mvq": {"tag": ["a", "b"]}}
    assert r.headers.get_list("x-multi") == ["1", "2"]


def test_aws_rest_v1_malformed_response_is_502(http):
    r = http.get("/v1bad")
    assert r.status_code == 502
    assert r.json()["code"] == "bad_function_response"


def test_admin_health_and_functions(http):
    assert http.get("/_squall/health").json() == {"status": "ok"}
    body = http.get("/_squall/api/functions").json()
    assert body["app"] == "basic"
    names = {f["name"] for f in body["functions"]}
    assert {"hello", "echo", "v2_handler"} <= names


def test_invocations_are_metered_in_the_store(server, http):
    r = http.get("/hello/metered")
    rid = r.headers["x-request-id"]
    server.run(server.sup.runtime.on_result.__self__.flush())  # the recorder's batch
    from squall.backends import open_store, store_url_for_data_dir

    store = open_store(store_url_for_data_dir(server.sup.opts.data_dir))
    try:
        (row,) = store.invocations("basic", "hello", request_id=rid)
    finally:
        store.close()
    assert row.status == "ok" and row.trigger == "http"
    assert row.billed_ms >= 1 and row.memory_mb == 128 and row.max_memory_mb > 0
