"""Hostile input against a real server: every case gets the right 4xx with a JSON error
body (code + requestId), the server stays up, and stored data is neither lost nor
corrupted. Table-driven: each row is one case (see CASES; the socket-level ones follow).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
import uuid

import jwt
import pytest

from .conftest import HOOK_SECRET, JWT_SECRET

DEEP = b"[" * 30_000 + b"]" * 30_000  # under the 64 KiB body limit
NESTED_OBJ = b'{"a":' * 2_000 + b"1" + b"}" * 2_000


def _key(server) -> dict:
    return {"x-api-key": server.api_key, "content-type": "application/json"}


def _order(oid: str, **extra) -> bytes:
    return json.dumps({"id": oid, "lines": [{"sku": "s1", "qty": 1}], **extra}).encode()


# (case id, method, path, headers (callable of the server -> dict, or dict), body, status)
CASES = [
    # malformed JSON
    ("json-truncated", "POST", "/echo", {}, b'{"a":', 400),
    ("json-single-quotes", "POST", "/echo", {}, b"{'a': 1}", 400),
    ("json-empty", "POST", "/echo", {}, b"", 400),
    ("json-trailing-garbage", "POST", "/echo", {}, b'{"a": 1} x', 400),
    ("json-nul", "POST", "/echo", {}, b"\x00", 400),
    ("json-nan", "POST", "/echo", {}, b'{"a": NaN}', 400),
    ("json-infinity", "POST", "/echo", {}, b"[Infinity]", 400),
    ("json-model-malformed", "POST", "/orders", _key, b'{"id": "x", "lines": [', 400),
    ("json-model-wrong-type", "POST", "/orders", _key, b'{"id": "x", "lines": "many"}', 400),
    ("json-model-missing-field", "POST", "/orders", _key, b'{"lines": []}', 400),
    ("json-model-extra-large-qty", "POST", "/orders", _key,
     b'{"id": "x", "lines": [{"sku": "a", "qty": 100000000000000000000}]}', 400),
    ("json-int-beyond-64-bits", "POST", "/notes/big", {},
     b'{"n": 1000000000000000000000000000000}', 400),
    # invalid UTF-8
    ("utf8-in-string", "POST", "/echo", {}, b'{"a": "\xff\xfe"}', 400),
    ("utf8-bad-sequence", "POST", "/echo", {}, b"\xc3\x28", 400),
    ("utf8-overlong", "POST", "/echo", {}, b'"\xc0\xaf"', 400),
    ("utf8-model-route", "POST", "/orders", _key, b'{"id": "\xed\xa0\x80"}', 400),
    # deep nesting
    ("deep-arrays", "POST", "/echo", {"content-type": "application/json"}, DEEP, 400),
    ("deep-objects", "POST", "/echo", {"content-type": "application/json"}, NESTED_OBJ, 400),
    ("deep-arrays-no-content-type", "POST", "/echo", {}, b"[" * 20_000 + b"]" * 20_000, 400),
    ("deep-in-model-route", "POST", "/orders", _key, DEEP, 400),
    # body size
    ("body-over-limit", "POST", "/echo", {}, b"x" * (64 * 1024 + 1), 413),
    # huge headers and URLs
    ("header-one-huge", "GET", "/orders/a", {"x-huge": "a" * 10_000}, b"", 431),
    ("header-many", "GET", "/orders/a", {f"x-h{i}": "v" * 90 for i in range(120)}, b"", 431),
    ("header-huge-cookie", "GET", "/orders/a", {"cookie": "c=" + "z" * 9000}, b"", 431),
    ("url-long-path", "GET", "/orders/" + "a" * 3000, {}, b"", 414),
    ("url-long-query", "GET", "/orders/a?q=" + "b" * 3000, {}, b"", 414),
    ("url-long-unknown-route", "GET", "/nowhere/" + "c" * 3000, {}, b"", 414),
    ("header-huge-unknown-route", "GET", "/nowhere", {"x-huge": "h" * 10_000}, b"", 431),
    # path traversal in object keys and routes
    ("traversal-dotdot-key", "GET", "/files/a/../../etc/passwd", {}, b"", 400),
    ("traversal-encoded-dots", "GET", "/files/%2e%2e/%2e%2e/etc/passwd", {}, b"", 400),
    ("traversal-encoded-slash", "GET", "/files/a/..%2f..%2fetc", {}, b"", 400),
    ("traversal-backslash", "GET", "/files/..%5c..%5cwindows", {}, b"", 400),
    ("traversal-nul", "GET", "/files/a%00b", {}, b"", 400),
    ("traversal-absolute", "GET", "/files//etc/passwd", {}, b"", 400),
    ("traversal-route", "GET", "/../../etc/passwd", {}, b"", 404),
    ("traversal-route-encoded", "GET", "/%2e%2e/%2e%2e/etc/passwd", {}, b"", 404),
    # API keys
    ("key-missing", "POST", "/orders", {"content-type": "application/json"}, _order("k1"), 401),
    ("key-wrong", "POST", "/orders", {"x-api-key": "sq_000000000000_" + "A" * 43},
     _order("k2"), 403),
    ("key-garbage", "POST", "/orders", {"x-api-key": "'; DROP TABLE keys;--"}, _order("k3"), 403),
    ("key-revoked", "POST", "/orders", lambda s: {"x-api-key": s.revoked_key}, _order("k4"), 403),
    # forged and expired tokens (HS256 route /me)
    ("jwt-missing", "GET", "/me", {}, b"", 401),
    ("jwt-basic-scheme", "GET", "/me", {"authorization": "Basic dXNlcjpwYXNz"}, b"", 401),
    ("jwt-garbage", "GET", "/me", {"authorization": "Bearer not.a.token"}, b"", 401),
    ("jwt-forged-signature", "GET", "/me",
     lambda s: {"authorization": "Bearer " + jwt.encode(
         {"sub": "x", "aud": "secure", "iss": "https://id.test", "exp": time.time() + 60,
          "scope": "me:read"}, "not-the-secret-but-long-enough-32b", algorithm="HS256")},
     b"", 401),
    ("jwt-expired", "GET", "/me",
     lambda s: {"authorization": "Bearer " + s.keys.hs(exp=int(time.time()) - 3600)}, b"", 401),
    ("jwt-not-yet-valid", "GET", "/me",
     lambda s: {"authorization": "Bearer " + s.keys.hs(nbf=int(time.time()) + 3600)}, b"", 401),
    ("jwt-wrong-audience", "GET", "/me",
     lambda s: {"authorization": "Bearer " + s.keys.hs(aud="other")}, b"", 401),
    ("jwt-wrong-issuer", "GET", "/me",
     lambda s: {"authorization": "Bearer " + s.keys.hs(iss="https://evil.test")}, b"", 401),
    ("jwt-no-exp", "GET", "/me",
     lambda s: {"authorization": "Bearer " + jwt.encode(
         {"sub": "x", "aud": "secure", "iss": "https://id.test", "scope": "me:read"},
         JWT_SECRET, algorithm="HS256")}, b"", 401),
    ("jwt-alg-none", "GET", "/me",
     lambda s: {"authorization": "Bearer " + jwt.encode(
         {"sub": "x", "aud": "secure", "exp": time.time() + 60}, None, algorithm="none")},
     b"", 401),
    ("jwt-missing-scope", "GET", "/me",
     lambda s: {"authorization": "Bearer " + s.keys.hs(scope="other:read")}, b"", 403),
    ("jwt-tampered-payload", "GET", "/me",
     lambda s: {"authorization": "Bearer " + _tamper(s.keys.hs())}, b"", 401),
    ("jwt-key-confusion", "GET", "/rs",
     lambda s: {"authorization": "Bearer " + _confused(s)}, b"", 401),
    ("jwt-unknown-kid", "GET", "/rs",
     lambda s: {"authorization": "Bearer " + s.keys.rs(kid="nope")}, b"", 401),
    ("jwt-rs-expired", "GET", "/rs",
     lambda s: {"authorization": "Bearer " + s.keys.rs(exp=int(time.time()) - 3600)}, b"", 401),
    ("jwt-huge-token", "GET", "/me", {"authorization": "Bearer " + "a" * 7000}, b"", 401),
    # custom authorizer
    ("authorizer-missing", "GET", "/custom", {}, b"", 401),
    ("authorizer-denied", "GET", "/custom", {"x-token": "bad-token"}, b"", 403),
    # pattern and cron garbage
    ("pattern-not-list", "POST", "/validate/pattern", {}, b'{"source": "x"}', 400),
    ("pattern-bad-numeric", "POST", "/validate/pattern", {},
     b'{"a": [{"numeric": [">", "x"]}]}', 400),
    ("pattern-not-object", "POST", "/validate/pattern", {}, b"[]", 400),
    ("pattern-unknown-operator", "POST", "/validate/pattern", {},
     b'{"a": [{"regex-ish": "x"}]}', 400),
    ("cron-both-days", "POST", "/validate/schedule", {},
     b'{"expression": "cron(* * * * * *)"}', 400),
    ("cron-negative-rate", "POST", "/validate/schedule", {},
     b'{"expression": "rate(-5 minutes)"}', 400),
    ("cron-minute-61", "POST", "/validate/schedule", {}, b'{"expression": "61 * * * *"}', 400),
    ("cron-garbage", "POST", "/validate/schedule", {},
     b'{"expression": "\'; DROP TABLE schedules;--"}', 400),
    # SQL-ish strings
    ("sql-in-path", "GET", "/orders/' OR 1=1 --", {}, b"", 404),
    ("sql-union", "GET", "/orders/1 UNION SELECT * FROM orders", {}, b"", 404),
    ("sql-in-model-id", "POST", "/orders", _key,
     json.dumps({"id": "x'; DROP TABLE orders;--", "lines": [{"sku": "a", "qty": 1}]}).encode(),
     400),
    # methods
    ("method-unknown", "PATCH", "/orders/a", {}, b"", 405),
]


def _tamper(token: str) -> str:
    head, payload, sig = token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["sub"] = "admin"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    return f"{head}.{forged}.{sig}"


def _confused(server) -> str:
    """HS256 signed with the RSA public key's PEM: the classic key-confusion forgery."""
    import base64
    import hmac as _h

    from cryptography.hazmat.primitives import serialization

    pem = server.keys.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=")  # noqa: E731
    signing = enc({"alg": "HS256", "typ": "JWT", "kid": "rsa1"}) + b"." + enc(
        {"sub": "x", "aud": "secure", "exp": int(time.time()) + 60})
    sig = base64.urlsafe_b64encode(_h.new(pem, signing, hashlib.sha256).digest()).rstrip(b"=")
    return (signing + b"." + sig).decode()


def _assert_json_error(r, status: int) -> None:
    """The status, a JSON object saying what is wrong, and the request id; refusals by the
    gateway also carry a stable `code` (a handler's own HTTPError carries its message)."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    body = r.json()
    assert isinstance(body, dict) and body["message"], body
    assert r.headers["x-request-id"]
    if "requestId" in body:
        assert body["requestId"] == r.headers["x-request-id"], body


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_case(secure, http, case):
    _, method, path, headers, body, status = case
    hdrs = headers(secure) if callable(headers) else dict(headers)
    if "/." in path or "//" in path[1:]:  # an HTTP client would normalise these away
        status_got, got = _raw(secure, f"{method} {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        assert status_got == status and got["message"], (status_got, got)
    else:
        _assert_json_error(http.request(method, path, content=body, headers=hdrs), status)


def test_case_count():
    # Given the table and the socket-level cases below (8), the suite holds >= 50 cases
    assert len(CASES) + 8 >= 50


# -- socket level: what an HTTP client library will not send ------------------------------

def _raw(server, request: bytes, *, then: bytes = b"", timeout: float = 10.0) -> tuple[int, dict]:
    """Send `request`, then `then`; read the response status and JSON body."""
    host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request)
        if then:
            try:
                s.sendall(then)
            except OSError:  # the server answered and closed first: what we want
                pass
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    return int(head.split(b" ")[1]), json.loads(rest[:length]) if length else {}


def test_100mb_body_refused_before_it_is_sent(secure):
    # Given a 100 MB Content-Length, When only the headers and 1 MB have gone out,
    # Then the server has already answered 413 (it never buffers the body)
    t0 = time.monotonic()
    status, body = _raw(secure, b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: "
                        b"application/json\r\ncontent-length: 104857600\r\n\r\n",
                        then=b"x" * (1 << 20))
    assert status == 413 and body["code"] == "payload_too_large"
    assert time.monotonic() - t0 < 5


def test_100mb_chunked_body_refused_while_streaming(secure):
    # Given a chunked body with no length, Then it is refused once past the limit,
    # after at most a little more than the limit was read (bounded: 100 MB never sent)
    chunk = b"10000\r\n" + b"y" * 0x10000 + b"\r\n"  # 64 KiB chunks
    status, body = _raw(secure, b"POST /echo HTTP/1.1\r\nhost: x\r\n"
                        b"transfer-encoding: chunked\r\n\r\n", then=chunk * 4)
    assert status == 413 and body["limitBytes"] == 64 * 1024


def test_slow_client_gets_408(secure):
    # Given a client that announces 100 bytes and sends 10, Then 408 after body_timeout_s
    t0 = time.monotonic()
    status, body = _raw(secure, b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n"
                        b"\r\n0123456789")
    assert status == 408 and body["code"] == "request_timeout"
    assert 0.9 < time.monotonic() - t0 < 5


def test_slow_chunked_client_gets_408(secure):
    status, body = _raw(secure, b"POST /echo HTTP/1.1\r\nhost: x\r\n"
                        b"transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
    assert status == 408


def test_client_vanishing_mid_body_invokes_nothing(secure, http):
    # Given an order sent with half its body, When the client disconnects,
    # Then the order is not created and the server serves the next request
    body = _order("half-sent")
    host, port = "127.0.0.1", int(secure.url.rsplit(":", 1)[1])
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"POST /orders HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  b"x-api-key: " + secure.api_key.encode() + b"\r\ncontent-length: "
                  + str(len(body)).encode() + b"\r\n\r\n" + body[: len(body) // 2])
    time.sleep(0.2)  # no event to await across the socket: the server sees the FIN
    assert http.get("/orders/half-sent").status_code == 404


def test_replayed_webhook_runs_once(secure, http):
    # Given a signed GitHub delivery, When it is sent three times (a replay),
    # Then it is accepted each time but runs once
    delivery = uuid.uuid4().hex
    body = b'{"ref": "refs/heads/main"}'
    sig = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    hdrs = {"x-hub-signature-256": sig, "x-github-delivery": delivery,
            "content-type": "application/json"}
    for _ in range(3):
        assert http.post("/hooks/github", content=body, headers=hdrs).status_code == 202
    deadline = time.monotonic() + 10
    while http.get(f"/hooks/count/{delivery}").json()["count"] < 1:
        assert time.monotonic() < deadline, "the webhook never ran"
        time.sleep(0.05)
    time.sleep(0.3)  # a duplicate would run right behind the first
    assert http.get(f"/hooks/count/{delivery}").json()["count"] == 1


def test_forged_and_tampered_webhooks_are_401(secure, http):
    body = b'{"ref": "x"}'
    good = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    for hdrs, content in [({"x-hub-signature-256": "sha256=" + "0" * 64}, body),
                          ({"x-hub-signature-256": good}, body + b" "),
                          ({}, body)]:
        _assert_json_error(http.post("/hooks/github", content=content, headers=hdrs), 401)


def test_cors_preflight_from_unknown_origin_is_403(secure, http):
    r = http.options("/orders", headers={"origin": "https://evil.example",
                                         "access-control-request-method": "POST"})
    _assert_json_error(r, 403)
    ok = http.options("/orders", headers={"origin": "https://shop.example",
                                          "access-control-request-method": "POST"})
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == "https://shop.example"


def test_sql_ish_data_round_trips_and_nothing_is_lost(secure, http):
    # Given orders stored before and during the hostile cases, Then all are intact
    note = "'); DROP TABLE orders; -- \u202e <script>alert(1)</script>"
    ids = [f"keep-{i}" for i in range(3)]
    for oid in ids:
        r = http.post("/orders", content=_order(oid, note=note), headers=_key(secure))
        assert r.status_code == 201, r.text
    for oid in ids:
        got = http.get(f"/orders/{oid}").json()
        assert got["note"] == note and got["lines"] == [{"sku": "s1", "qty": 1}]
    assert http.get("/_squall/health").json() == {"status": "ok"}


def test_valid_tokens_and_claims_reach_the_handler(secure, http):
    # positive controls for the token cases above
    r = http.get("/me", headers={"authorization": "Bearer " + secure.keys.hs(sub="alice")})
    assert r.status_code == 200 and r.json() == {"sub": "alice", "scopes": ["me:read"]}
    assert http.get("/rs", headers={"authorization": "Bearer " + secure.keys.rs()}).json() \
        == {"sub": "user-1"}
    assert http.get("/rs", headers={"authorization": "Bearer " + secure.keys.es()}).json() \
        == {"sub": "user-1"}
    assert http.get("/custom", headers={"x-token": "good-bob"}).json() == {"user": "bob"}
    deep_ok = b"[" * 32 + b"]" * 32
    assert http.post("/echo", content=deep_ok,
                     headers={"content-type": "application/json"}).status_code == 200


def test_secret_values_never_reach_the_invocation_log(secure, http):
    # Given a function that prints its secret, When it runs on the real runtime,
    # Then its answer works but the value is masked in what the invocation log recorded
    from .conftest import TOKEN_VALUE

    assert http.get("/secret").json() == {"length": len(TOKEN_VALUE)}
    runtime = secure.sup.runtime
    seen = []
    record = runtime.on_result
    runtime.on_result = lambda result, kind: (seen.append(result), record(result, kind))
    try:
        assert http.get("/secret").status_code == 200
    finally:
        runtime.on_result = record
    (result,) = [r for r in seen if r.function == "secret"]
    assert TOKEN_VALUE not in result.logs and "the token is ***" in result.logs
