"""`squall.testing.TestClient`: what a user's own tests drive.

Mostly the in-process mode (the default): handlers run on threads of this process, but
requests still go through the real gateway, so routing, 404/405/413, JSON errors and
request ids behave as in production. The app under test is defined right here, as a
user's would be. The last tests check that isolated mode answers the same way.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import re
import sys
import threading
import warnings
from pathlib import Path

import pytest

from squall import App, BadRequest, HTTPError, NotRunning, Response
from squall.testing import FunctionFailed, TestClient

BASIC = str(Path(__file__).parent / "apps" / "basic.py")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

app = App("harness", max_body_bytes=64)
log = logging.getLogger("harness")
log.setLevel(logging.INFO)

# released by the timeout tests once the client has given up on the call
STUCK_EVENT = threading.Event()
STUCK_HTTP = threading.Event()
STUCK_ENV = threading.Event()


@app.http("GET", "/items/{item_id}")
def get_item(request, ctx):
    return {
        "id": request.path_params["item_id"],
        "q": request.query.getlist("q"),
        "tag": request.headers.get("x-tag"),
        "request_id": request.request_id,
        "ctx_request_id": ctx.request_id,
        "route": request.route,
    }


@app.http("POST", "/items")
def create_item(request):
    item = request.json()
    if "name" not in item:
        raise BadRequest("an item needs a name", field="name")
    return Response(201, {"created": item["name"]}, headers={"location": "/items/1"})


@app.http("PUT", "/items/{item_id}")
def put_item(request):
    return None


@app.http("GET", "/teapot")
def teapot(request):
    raise HTTPError("short and stout", status=418)


@app.http("GET", "/boom")
def boom(request):
    raise RuntimeError("kaboom")


@app.http("GET", "/bad-return")
def bad_return(request):
    return (200, "x", {}, "one too many")


@app.http("GET", "/async/{n}")
async def async_http(request):
    await asyncio.sleep(0)
    return {"double": int(request.path_params["n"]) * 2}


@app.http("GET", "/stuck", timeout_s=0.05)
def stuck_http(request):
    STUCK_HTTP.wait(10)
    return "late"


@app.http("ANY", "/legacy/{proxy+}", format="aws-http-v2")
def legacy(event, context):
    return {
        "statusCode": 202,
        "headers": {"content-type": "application/json", "x-route": event["routeKey"]},
        "cookies": ["a=1", "b=2"],
        "body": json.dumps({
            "rawPath": event["rawPath"],
            "proxy": event["pathParameters"]["proxy"],
            "query": event.get("queryStringParameters"),
            "method": event["requestContext"]["http"]["method"],
            "cookies": event.get("cookies"),
            "body": event.get("body"),
            "request_id": context.aws_request_id,
        }),
    }


@app.function(memory_mb=256)
def add(event, ctx):
    return {"sum": event["a"] + event["b"], "cold": ctx.cold_start}


@app.function()
def chatty(event, ctx):
    print(f"hello {event['who']}")
    print("to stderr", file=sys.stderr)
    log.info("info for %s", event["who"])
    logging.getLogger("harness.other").warning("careful")
    return "ok"


@app.function()
def fails(event, ctx):
    print("about to fail")
    raise ValueError("bad input")


@app.function()
async def async_fn(event, ctx):
    await asyncio.sleep(0)
    return {"n": event["n"] * 2, "remaining": ctx.get_remaining_time_in_millis() > 0}


@app.function()
def outer(event, ctx):
    print("outer runs")
    return {"inner": app.invoke("inner", {"n": event["n"]})}


@app.function()
def inner(event, ctx):
    print("inner runs")
    return event["n"] + 1


@app.function()
def outer_of_failure(event, ctx):
    try:
        app.invoke("fails", {})
    except Exception as exc:
        return {"caught": str(exc)}
    return {"caught": None}


@app.function(timeout_s=0.05)
def stuck(event, ctx):
    STUCK_EVENT.wait(10)
    return "late"


@app.function(environment={"GREETING": "hi"})
def greet(event, ctx):
    return os.environ.get("GREETING")


@app.function(timeout_s=0.05, environment={"STUCK": "1"})
def stuck_with_env(event, ctx):
    STUCK_ENV.wait(10)
    return "late"


@app.function(timeout_s=0.5, environment={"GREETING": "hello"})
def greet_quickly(event, ctx):
    return os.environ.get("GREETING")


@pytest.fixture
def client():
    with TestClient(app) as c:
        yield c


@pytest.fixture
def finish_function_threads():
    """Call after the test's clients closed: waits for the function threads they started to
    end, collects what those held, and returns the ResourceWarnings that raised (instead of
    letting them fail a later test). See test_async_handlers_leave_no_unclosed_event_loop."""
    before = set(threading.enumerate())

    def finish() -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            for thread in set(threading.enumerate()) - before:
                if thread.name.startswith("squall-fn"):
                    thread.join(10)
            gc.collect()
        return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]

    return finish


# -- HTTP through the gateway ----------------------------------------------------------------

def test_get_with_params_and_headers(client):
    r = client.get("/items/42", params={"q": ["a", "b"]}, headers={"X-Tag": "blue"})
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == "42" and body["q"] == ["a", "b"] and body["tag"] == "blue"
    assert body["route"] == "GET /items/{item_id}"
    assert r.headers["content-type"] == "application/json"


def test_query_in_the_path_and_params_combine(client):
    r = client.get("/items/1?q=x", params={"q": "y"})
    assert r.json()["q"] == ["x", "y"]


def test_request_id_header_is_the_invocation_id(client):
    r = client.get("/items/1")
    rid = r.request_id
    assert UUID.match(rid) and r.headers["x-request-id"] == rid
    assert r.json()["request_id"] == rid == r.json()["ctx_request_id"]
    [result] = client.invocations("get_item")
    assert result.request_id == rid
    assert client.get("/items/1").request_id != rid  # a new one per request


def test_post_json(client):
    r = client.post("/items", json={"name": "kettle"})
    assert r.status_code == 201
    assert r.json() == {"created": "kettle"}
    assert r.headers["location"] == "/items/1"


def test_handler_http_errors_are_responses_not_failures(client):
    r = client.post("/items", json={"colour": "red"})
    assert r.status_code == 400
    assert r.json() == {"message": "an item needs a name", "field": "name"}
    bad = client.post("/items", data="{nope", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["message"]
    assert client.get("/teapot").status_code == 418
    assert all(res.ok for res in client.invocations())  # the handler chose the status


def test_none_is_204(client):
    r = client.put("/items/1")
    assert r.status_code == 204 and r.content == b""


def test_not_found(client):
    r = client.get("/nope")
    assert r.status_code == 404
    assert r.json() == {"message": "Not Found", "code": "not_found", "requestId": r.request_id}
    assert client.invocations() == []  # no function ran


def test_method_not_allowed(client):
    r = client.delete("/items/1")
    assert r.status_code == 405
    assert r.json()["code"] == "method_not_allowed"
    assert r.headers["allow"] == "GET, PUT"


def test_payload_too_large(client):
    at_limit = json.dumps({"name": "x" * 52})
    assert len(at_limit) == 64
    assert client.post("/items", data=at_limit).status_code == 201
    r = client.post("/items", data=b"x" * 65)
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large" and r.json()["limitBytes"] == 64
    assert [res.function for res in client.invocations()] == ["create_item"]  # only the first


def test_a_failing_handler_is_a_502_with_the_error(client):
    r = client.get("/boom")
    assert r.status_code == 502
    body = r.json()
    assert body["code"] == "function_error"
    assert body["errorType"] == "RuntimeError" and body["errorMessage"] == "kaboom"
    assert body["requestId"] == r.request_id


def test_errors_can_be_hidden():
    with TestClient(app, expose_errors=False) as c:
        body = c.get("/boom").json()
    assert body["code"] == "function_error"
    assert "errorType" not in body and "errorMessage" not in body


def test_an_invalid_return_value_is_a_bad_function_response(client):
    r = client.get("/bad-return")
    assert r.status_code == 502 and r.json()["code"] == "bad_function_response"
    [result] = client.invocations("bad_return")
    assert result.error_type == "Runtime.InvalidResponse"


def test_async_http_handler(finish_function_threads):
    with TestClient(app) as client:
        r = client.get("/async/21")
    finish_function_threads()
    assert r.status_code == 200 and r.json() == {"double": 42}


def test_http_timeout_is_a_504(client):
    STUCK_HTTP.clear()
    try:
        r = client.get("/stuck")
    finally:
        STUCK_HTTP.set()  # let the abandoned thread finish
    assert r.status_code == 504 and r.json()["code"] == "timeout"
    [result] = client.invocations("stuck_http")
    assert result.status == "timeout"


def test_aws_http_v2_handler(client):
    r = client.post("/legacy/stock/tea?warehouse=north&warehouse=south", data="hi",
                    headers={"cookie": "session=abc; theme=dark"})
    assert r.status_code == 202
    assert r.headers["x-route"] == "ANY /legacy/{proxy+}"
    assert [v for k, v in r.header_list if k == "set-cookie"] == ["a=1", "b=2"]
    body = r.json()
    assert body["rawPath"] == "/legacy/stock/tea" and body["proxy"] == "stock/tea"
    assert body["method"] == "POST" and body["body"] == "hi"
    assert body["query"] == {"warehouse": "north,south"}  # v2 joins repeats with ','
    assert body["cookies"] == ["session=abc", "theme=dark"]
    assert body["request_id"] == r.request_id


# -- invoke ------------------------------------------------------------------------------------

def test_invoke_output_and_metering(client):
    first = client.invoke("add", {"a": 1, "b": 2})
    second = client.invoke("add", {"a": 3, "b": 4})
    assert first.ok and first.status == "ok" and first.output == {"sum": 3, "cold": True}
    assert second.output == {"sum": 7, "cold": False}
    assert first.cold and first.init_ms is not None
    assert not second.cold and second.init_ms is None
    for r in (first, second):
        assert UUID.match(r.request_id) and r.function == "add"
        assert r.memory_mb == 256 and r.max_memory_mb > 0
        assert r.duration_ms >= 0 and r.billed_ms >= 1
        assert r.report_line().startswith(f"REPORT RequestId: {r.request_id}\tDuration: ")
    assert "Init Duration" in first.report_line()
    assert "Init Duration" not in second.report_line()
    assert client.invocations("add") == [first, second]


def test_invoke_with_no_data(client):
    r = client.invoke("greet")
    assert r.ok


def test_invoke_failure():
    with TestClient(app) as client:
        r = client.invoke("fails", {})
    assert not r.ok and r.status == "error"
    assert r.error_type == "ValueError" and r.error_message == "bad input"
    assert any("in fails" in frame for frame in r.stack_trace)
    assert r.error_payload() == {"errorMessage": "bad input", "errorType": "ValueError",
                                 "requestId": r.request_id, "stackTrace": r.stack_trace}
    assert "about to fail" in r.logs and "[ERROR] ValueError: bad input" in r.logs


def test_invoke_check_raises_function_failed(client):
    with pytest.raises(FunctionFailed, match="fails failed: ValueError: bad input"):
        client.invoke("fails", {}, check=True)
    assert client.invoke("add", {"a": 1, "b": 1}, check=True).output["sum"] == 2


def test_invoke_unknown_function(client):
    with pytest.raises(LookupError, match="no function 'nope'"):
        client.invoke("nope", {})


def test_async_function(finish_function_threads):
    with TestClient(app) as client:
        r = client.invoke("async_fn", {"n": 5})
        again = client.invoke("async_fn", {"n": 6})
    finish_function_threads()
    assert r.ok and r.output == {"n": 10, "remaining": True}
    assert again.ok and again.output["n"] == 12


def test_async_handlers_leave_no_unclosed_event_loop(finish_function_threads):
    with TestClient(app) as client:
        assert client.invoke("async_fn", {"n": 1}).ok
    assert finish_function_threads() == []


def test_invoke_timeout_in_process(client):
    STUCK_EVENT.clear()
    try:
        r = client.invoke("stuck", {})
    finally:
        STUCK_EVENT.set()
    assert not r.ok and r.status == "timeout"
    assert r.error_type == "Sandbox.Timedout"
    assert r.error_message == (f"RequestId: {r.request_id} Error: Task timed out after "
                               "0.05 seconds")
    assert r.duration_ms == pytest.approx(50)
    assert client.invocations("stuck") == [r]


# -- captured output ---------------------------------------------------------------------------

def test_print_and_logging_are_captured_per_invocation():
    with TestClient(app) as client:
        first = client.invoke("chatty", {"who": "ada"})
        second = client.invoke("chatty", {"who": "bob"})
    assert "hello ada\n" in first.logs and "to stderr\n" in first.logs
    assert f"[INFO]\t{first.request_id}\tinfo for ada\n" in first.logs
    assert f"[WARNING]\t{first.request_id}\tcareful\n" in first.logs
    assert "bob" not in first.logs and "ada" not in second.logs
    assert client.logs("chatty") == first.logs + second.logs
    assert client.logs() == first.logs + second.logs


def test_print_is_captured_when_the_client_comes_from_a_fixture(client):
    # pytest puts its own sys.stdout back between the setup and call phases: the client
    # must re-wrap it per invocation, not once at start
    r = client.invoke("chatty", {"who": "ada"})
    assert "hello ada" in r.logs


def test_output_outside_an_invocation_is_not_captured(capsys):
    with TestClient(app) as client:
        print("from the test itself")
        r = client.invoke("chatty", {"who": "ada"})
    assert "hello ada" in r.logs
    assert "from the test itself" not in client.logs()
    assert capsys.readouterr().out == "from the test itself\n"


def test_streams_are_restored_after_close():
    before_out, before_err = sys.stdout, sys.stderr
    with TestClient(app):
        assert sys.stdout is not before_out
    assert sys.stdout is before_out and sys.stderr is before_err


# -- app.invoke between functions ------------------------------------------------------------

def test_app_invoke_between_functions():
    with TestClient(app) as client:
        r = client.invoke("outer", {"n": 1})
    assert r.ok and r.output == {"inner": 2}
    assert "outer runs" in r.logs
    assert "inner runs" not in r.logs  # the callee's output is its own


def test_app_invoke_failure_is_an_exception_in_the_caller(client):
    r = client.invoke("outer_of_failure", {})
    assert r.ok
    assert r.output["caught"] == "ValueError: bad input"


def test_nested_invocations_are_recorded_like_in_isolated_mode():
    with TestClient(app) as client:
        client.invoke("outer", {"n": 1})
    assert [r.function for r in client.invocations()] == ["inner", "outer"]
    assert "inner runs" in client.logs("inner")


def test_app_invoke_outside_the_client_is_not_running():
    with TestClient(app) as c:
        assert c.invoke("outer", {"n": 2}).output == {"inner": 3}
    with pytest.raises(NotRunning):
        app.invoke("inner", {"n": 1})


def test_environment_is_applied_in_process_for_the_call_only(client, monkeypatch):
    monkeypatch.delenv("GREETING", raising=False)
    assert client.invoke("greet").output == "hi"
    assert "GREETING" not in os.environ  # set for the call, not left behind
    assert client.invoke("add", {"a": 1, "b": 1}).ok


def test_a_timed_out_call_does_not_block_other_functions_with_an_environment(client):
    STUCK_ENV.clear()
    try:
        stuck = client.invoke("stuck_with_env", {})
        after = client.invoke("greet_quickly", {})
    finally:
        STUCK_ENV.set()
    assert stuck.status == "timeout"
    assert after.ok and after.output == "hello"


# -- usage ----------------------------------------------------------------------------------------

def test_in_process_needs_an_app_object_and_a_failed_start_leaks_nothing():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(TypeError, match="isolated=True"):
            TestClient(BASIC).start()
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_many_clients_many_apps():
    other = App("other")

    @other.function()
    def ping(event, ctx):
        return "pong"

    with TestClient(app) as a, TestClient(other) as b:
        assert a.invoke("add", {"a": 1, "b": 1}).output["sum"] == 2
        assert b.invoke("ping").output == "pong"
        assert [r.function for r in b.invocations()] == ["ping"]
        assert [r.function for r in a.invocations()] == ["add"]


# -- isolated mode: the same API over the real runtime ----------------------------------------------

def test_isolated_client_on_an_app_file():
    with TestClient(BASIC, isolated=True) as c:
        r = c.invoke("echo", {"n": 1})
        assert r.ok and r.cold and r.output["event"] == {"n": 1}
        assert r.output["pid"] != os.getpid()  # user code ran in a forked worker
        resp = c.get("/hello/ada", params={"x": "1"})
        assert resp.status_code == 200
        assert resp.json() == {"hello": "ada", "q": {"x": "1"}}
        assert [x.function for x in c.invocations()] == ["echo", "hello"]
        assert c.runtime.app_name == "basic"
