"""The generated OpenAPI 3.1 document: its shape, the docs page, and schemathesis fuzzing
every operation on a real server (positive and negative cases, bounded) with no 5xx."""

from __future__ import annotations

import time

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from jsonschema import Draft202012Validator
from schemathesis import GenerationMode

MAX_EXAMPLES = 5  # per operation and mode: bounds the run (about 10 s on 2 idle cores)


def test_document_describes_routes_models_and_security(http):
    doc = http.get("/openapi.json").json()
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] == "secure"
    create = doc["paths"]["/orders"]["post"]
    assert create["summary"] == "Create an order"
    assert create["security"] == [{"apiKey": []}]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["lines"]["items"] == {"$ref": "#/components/schemas/Line"}
    assert "Line" in doc["components"]["schemas"]
    assert doc["paths"]["/me"]["get"]["security"] == [{"bearerJwt": ["me:read"]}]
    assert doc["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey", "in": "header", "name": "x-api-key"}
    assert doc["paths"]["/orders/{id}"]["get"]["parameters"][0]["name"] == "id"
    assert doc["paths"]["/files/{key}"]["get"]["parameters"][0]["name"] == "key"
    Draft202012Validator.check_schema(body)  # OpenAPI 3.1 schemas are JSON Schema 2020-12
    page = http.get("/docs")
    assert page.status_code == 200 and "POST /orders" in page.text
    assert page.headers["content-type"].startswith("text/html")


def test_schemathesis_finds_no_server_errors(secure, http):
    schema = schemathesis.openapi.from_url(f"{secure.url}/openapi.json")
    token = secure.keys.hs()
    auth = {"x-api-key": secure.api_key, "authorization": f"Bearer {token}",
            "x-token": "good-fuzz"}
    failures: list[str] = []
    session = requests.Session()  # one keep-alive connection, not one per case
    calls = 0
    t0 = time.monotonic()
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
                      database=None, phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            def run(case):
                nonlocal calls
                calls += 1
                r = case.call(base_url=secure.url, headers=auth, timeout=10, session=session)
                if r.status_code >= 500 and r.status_code != 503:
                    failures.append(f"{op.label} [{mode.value}] -> {r.status_code}: "
                                    f"{r.text[:200]}")
                elif r.status_code >= 400:
                    ctype = r.headers.get("content-type") or [""]
                    ctype = ctype[0] if isinstance(ctype, list) else ctype
                    assert ctype.startswith("application/json"), (op.label, r.status_code)

            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (an operation with no inputs)
                assert mode is GenerationMode.NEGATIVE
    elapsed = time.monotonic() - t0
    assert not failures, failures
    assert calls >= 20 and elapsed < 60, (calls, elapsed)  # a guard; the bound is the count
    assert http.get("/_squall/health").status_code == 200
