"""Request models whose pydantic validators run before the handler (in the worker: user
code never runs in the supervisor) with the gateway's 400 answer; CORS preflights to
`ANY` routes answered by the gateway. App: tests/apps/validated_app.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from squall.runtime.loader import load_app
from squall.testing import TestClient

APP = Path(__file__).resolve().parents[1] / "apps" / "validated_app.py"
GOOD = {"id": "o-1", "lines": [{"sku": "SKU-1", "qty": 2}]}
ORIGIN = "https://shop.example"


@pytest.fixture(scope="module")
def client():
    with TestClient(load_app(str(APP))) as c:
        yield c


def _handled(client, function: str) -> int:
    return sum("handled" in r.logs for r in client.invocations(function))


def _refused(r, field: str, words: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "invalid_request_body" and body["message"] == "Bad Request"
    assert body["requestId"] == r.headers["x-request-id"]
    assert body["errorMessage"] == "the request body does not match the route's model"
    assert any(e["field"] == field and words in e["message"] for e in body["errors"]), body


@pytest.mark.parametrize("body,field,words", [
    ({**GOOD, "id": "O-1"}, "id", "the id must be lower case"),  # @field_validator
    ({**GOOD, "discount": 5}, "(body)", "a discount needs at least two lines"),  # model
    ({"id": "o-1", "lines": [{"sku": "X-1", "qty": 1}]}, "lines.0.sku", "starts with 'SKU-'"),
])
def test_python_validators_refuse_what_the_schema_lets_through(client, body, field, words):
    # Given a route whose model has Python-side validators, and a body its JSON Schema
    # accepts: the gateway's schema check alone would let it through
    before = _handled(client, "create_order")
    # When it is posted
    r = client.post("/orders", json=body)
    # Then the answer is the gateway's 400 shape, naming the field, and the handler
    # never ran
    _refused(r, field, words)
    assert _handled(client, "create_order") == before


def test_native_and_aws_routes_accept_valid_bodies_and_refuse_the_rest(client):
    r = client.post("/orders", json=GOOD)
    assert r.status_code == 201 and r.json() == {"id": "o-1"}
    _refused(client.post("/v2/orders", json={**GOOD, "id": "UP"}), "id", "lower case")
    assert client.post("/v2/orders", json=GOOD).status_code == 201


def test_the_schema_is_checked_in_the_gateway_first_then_the_class(client):
    # a body the JSON Schema refuses never reaches a worker (no invocation at all)
    before = len(client.invocations("create_order"))
    r = client.post("/orders", json={"id": "o-1", "lines": "many"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "lines"
    assert len(client.invocations("create_order")) == before
    # one the schema accepts goes to the worker, where the class refuses it
    _refused(client.post("/orders", json={**GOOD, "id": "UP"}), "id", "lower case")
    assert len(client.invocations("create_order")) == before + 1
    assert _handled(client, "create_order") == sum(
        r.value.status == 201 for r in client.invocations("create_order"))
    # a plain JSON Schema has no class to run, and routes without a model pay nothing
    app = client.app
    assert app.functions["plain"].body_model is None
    assert app.functions["open_route"].body_model is None
    assert app.functions["create_order"].body_model.__name__ == "Order"
    assert client.post("/plain", json={"name": "x"}).json() == {"name": "x"}
    r = client.post("/plain", json={"name": 1})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "name"


def test_a_validator_that_crashes_is_a_function_error_not_a_crash(client):
    # Given a validator with a bug (ZeroDivisionError, not ValueError)
    r = client.post("/buggy", json={"n": 0})
    # Then the request fails as a function error with a clear message, the handler
    # did not run, and the route keeps serving
    assert r.status_code == 502, r.text
    body = r.json()
    assert body["code"] == "function_error"
    assert body["errorType"] == "Squall.RequestModelError"
    assert "Buggy failed while validating" in body["errorMessage"]
    assert "ZeroDivisionError" in body["errorMessage"]
    assert _handled(client, "buggy") == 0
    assert client.post("/buggy", json={"n": 4}).json() == {"ok": True}


def test_real_workers_run_the_validators(tmp_path):
    # the same through the real runtime: zygote, forked worker, supervisor gateway
    with TestClient(str(APP), isolated=True) as c:
        _refused(c.post("/orders", json={**GOOD, "id": "O-1"}), "id", "lower case")
        assert c.post("/orders", json=GOOD).status_code == 201
        r = c.post("/buggy", json={"n": 0})
        assert r.status_code == 502 and r.json()["errorType"] == "Squall.RequestModelError"
        assert "ZeroDivisionError" in c.logs("buggy")
        assert c.post("/buggy", json={"n": 5}).status_code == 200


# -- CORS preflights to ANY routes ------------------------------------------------------

def _preflight(client, path: str, origin: str = ORIGIN, method: str = "PUT"):
    return client.request("OPTIONS", path, headers={
        "origin": origin, "access-control-request-method": method,
        "access-control-request-headers": "content-type"})


def test_preflight_to_an_any_route_is_answered_by_the_gateway(client):
    before = len(client.invocations("api"))
    r = _preflight(client, "/api/orders/7")
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == ORIGIN
    methods = {m.strip() for m in r.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "PUT", "POST", "DELETE"} <= methods and "ANY" not in methods
    assert "content-type" in r.headers["access-control-allow-headers"]
    assert len(client.invocations("api")) == before  # the function never saw it
    # the actual request still reaches the function, with the CORS headers
    r = client.request("PUT", "/api/orders/7", headers={"origin": ORIGIN})
    assert r.json() == {"method": "PUT"}
    assert r.headers["access-control-allow-origin"] == ORIGIN
    # a plain OPTIONS (no Access-Control-Request-Method) is not a preflight
    assert client.request("OPTIONS", "/api/x", headers={"origin": ORIGIN}).json() == {
        "method": "OPTIONS"}
    # an explicit OPTIONS route answers its own preflights (OPTIONS /api/special is
    # declared beside ANY /api/{proxy+}), and ANY routes without cors= get them
    assert _preflight(client, "/api/special").json() == {"mine": True}
    assert _handled(client, "special_options") == 1
    assert _preflight(client, "/open").json() == {"method": "OPTIONS"}


def test_preflight_from_an_unknown_origin_is_refused(client):
    before = len(client.invocations("api"))
    r = _preflight(client, "/api/orders/7", origin="https://evil.example")
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert "access-control-allow-origin" not in r.headers
    assert len(client.invocations("api")) == before
