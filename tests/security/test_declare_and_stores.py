"""Route security declarations (errors at decoration time), API keys and secrets at
rest, redaction, JWKS caching, authorizer caching, recursive loop detection, the CLI."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from squall import App, ConfigError
from squall.backends.broker import MessageTooLarge
from squall.cli.security import keys_cli, secrets_cli
from squall.events import lineage
from squall.security import JWT, Cors, Limits, Throttle
from squall.security.authorizers import FunctionAuthorizer
from squall.security.files import InsecureFile
from squall.security.jwt_auth import AuthError, JwtVerifier
from squall.security.keys import KeyStore
from squall.security.redact import Redactor
from squall.security.secrets import SecretError, SecretStore
from squall.security.wiring import attach_security
from squall.testing import TestClient
from squall.types import InvocationResult


def _handler(request):
    return "ok"


@pytest.mark.parametrize("kwargs, message", [
    ({"auth": "basic"}, "auth must be None, 'api_key'"),
    ({"auth": "nobody"}, "@app.authorizer"),
    ({"scopes": ["a"]}, "scopes need auth=JWT"),
    ({"auth": "api_key", "scopes": ["a"]}, "scopes need auth=JWT"),
    ({"throttle": 5}, "throttle must be"),
    ({"cors": "yes"}, "cors must be"),
    ({"model": int}, "model must be a pydantic model"),
    ({"secrets": ["1bad name"]}, "secret name"),
    ({"throttle": {"rate": 5, "burst": 0}}, "burst must be"),
])
def test_bad_route_declarations_fail_at_decoration(kwargs, message):
    app = App("decl")
    with pytest.raises(ConfigError, match=message):
        app.http("GET", "/x", **kwargs)(_handler)


@pytest.mark.parametrize("make, message", [
    (lambda: JWT(), "exactly one key source"),
    (lambda: JWT(jwks_url="https://x", secret_env="S"), "exactly one key source"),
    (lambda: JWT(secret_env="S", algorithms=["RS256"]), "only verifies HS"),
    (lambda: JWT(jwks_file="/x", algorithms=["HS256"]), "key-confusion"),
    (lambda: JWT(jwks_url="file:///etc/passwd"), "http"),
    (lambda: JWT(secret_env="S", algorithms=["none"]), "algorithms must be"),
    (lambda: JWT(secret_env="S", algorithms=["HS256"], leeway_s=3600), "leeway_s"),
    (lambda: Throttle(rate=0), "rate must be"),
    (lambda: Throttle(rate=float("nan")), "rate must be"),
    (lambda: Cors(origins=["*"], credentials=True), "credentials"),
    (lambda: Limits(max_json_depth=0), "max_json_depth"),
    (lambda: Limits(request_timeout_s=-1), "request_timeout_s"),
])
def test_bad_settings_fail_when_made(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_garbage_cron_and_patterns_fail_at_decoration():
    app = App("garbage")
    with pytest.raises(ConfigError, match="schedule"):
        app.schedule("cron(99 * * * ? *)")(_handler)
    with pytest.raises(ConfigError, match="invalid event pattern"):
        app.on_event(pattern={"source": "not-a-list"}, name="h")(lambda e, c: None)
    with pytest.raises(ConfigError, match="identity"):
        app.authorizer(identity="cookie:x")


def test_open_routes_get_no_policy_so_the_hot_path_skips_security():
    app = App("open")
    app.http("GET", "/a")(_handler)
    with TestClient(app) as client:
        assert client._gateway._policies == {} and not client._gateway._app_throttled
        assert client.get("/a").text == "ok"


# -- keys --------------------------------------------------------------------------------

def test_keys_are_stored_hashed_with_0600_and_revocation_is_seen(tmp_path):
    store = KeyStore.for_data_dir(tmp_path)
    plain, key = store.create("alice")
    text = store.path.read_text()
    assert plain not in text and plain.split("_", 2)[2] not in text
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.verify(plain).name == "alice"
    assert store.verify(plain[:-1] + ("A" if plain[-1] != "A" else "B")) is None
    other = KeyStore.for_data_dir(tmp_path)  # another process: the CLI
    other.revoke(key.id)
    store._checked = 0.0  # the running server re-reads at most once a second
    assert store.verify(plain) is None


# -- secrets -----------------------------------------------------------------------------

def test_secrets_are_encrypted_at_rest_under_a_private_key_file(tmp_path):
    s = SecretStore.for_data_dir(tmp_path)
    s.set("DB_PASSWORD", "correct horse battery staple")
    assert b"correct horse" not in s.path.read_bytes()
    assert stat.S_IMODE(s.key_path.stat().st_mode) == 0o600
    assert SecretStore.for_data_dir(tmp_path).get("DB_PASSWORD") == "correct horse battery staple"
    assert s.names() == ["DB_PASSWORD"]
    os.chmod(s.key_path, 0o644)
    with pytest.raises(InsecureFile, match="chmod 600"):
        SecretStore.for_data_dir(tmp_path).get("DB_PASSWORD")
    os.chmod(s.key_path, 0o600)
    s.key_path.write_bytes(b"Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=")  # another key
    with pytest.raises(SecretError, match="does not decrypt"):
        SecretStore.for_data_dir(tmp_path).get("DB_PASSWORD")
    with pytest.raises(SecretError, match="invalid"):
        s.set("../x", "v")


def test_a_function_reads_only_the_secrets_it_declared():
    app = App("sec")

    @app.function(secrets=["API_TOKEN"])
    def reader(event):
        return app.secret(event)

    with TestClient(app) as client:
        client.security.secrets.set("API_TOKEN", "t0ken-value")
        client.security.secrets.set("OTHER", "other-value")
        assert client.invoke("reader", "API_TOKEN").output == "t0ken-value"
        denied = client.invoke("reader", "OTHER")
        assert not denied.ok and "did not declare secret 'OTHER'" in denied.error_message


def test_secret_values_are_redacted_from_the_invocation_log(tmp_path):
    SecretStore.for_data_dir(tmp_path).set("TOKEN", "s3cr3t-v4lue")
    seen = []

    class Runtime:
        caller_services: dict = {}
        on_result = staticmethod(lambda result, kind: seen.append(result))

    rt = Runtime()
    attach_security(rt, {"security": {"secrets": {"f": ["TOKEN"]}}}, tmp_path)
    rt.on_result(InvocationResult(request_id="r", function="f", ok=False,
                                  logs="token=s3cr3t-v4lue\n", error_message="bad s3cr3t-v4lue",
                                  stack_trace=["x = 's3cr3t-v4lue'"]), "event")
    assert "s3cr3t" not in json.dumps([seen[0].logs, seen[0].error_message, seen[0].stack_trace])
    assert Redactor().value({"Authorization": "Bearer x", "a": 1}) == {"Authorization": "***",
                                                                       "a": 1}


# -- JWT: JWKS over HTTP, cached ---------------------------------------------------------

class _Jwks(BaseHTTPRequestHandler):
    body = b""
    hits = 0

    def do_GET(self):  # noqa: N802
        type(self).hits += 1
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def test_jwks_url_is_fetched_once_and_cached(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": "k1"}
    _Jwks.body = json.dumps({"keys": [jwk]}).encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        clock = [0.0]
        spec = JWT(jwks_url=f"http://127.0.0.1:{server.server_port}/jwks", audience="a",
                   jwks_cache_s=60).to_manifest()
        verifier = JwtVerifier(spec, clock=lambda: clock[0])
        token = jwt.encode({"aud": "a", "exp": time.time() + 60, "sub": "s"}, key,
                           algorithm="RS256", headers={"kid": "k1"})
        import asyncio

        async def go():
            for _ in range(5):
                assert (await verifier.verify(token))["sub"] == "s"
            forged = jwt.encode({"aud": "a", "exp": time.time() + 60}, key, algorithm="RS256",
                                headers={"kid": "unknown"})
            clock[0] += 11
            for _ in range(5):  # unknown kids refetch at most every 10 s
                with pytest.raises(AuthError):
                    await verifier.verify(forged)
            clock[0] += 61  # the cache expires
            await verifier.verify(token)

        asyncio.run(go())
        assert _Jwks.hits == 3, _Jwks.hits  # first, one refetch for the unknown kid, expiry
    finally:
        server.shutdown()
        server.server_close()


def test_custom_authorizer_answers_are_cached_per_identity_for_the_ttl():
    calls = []

    class Invoker:
        async def invoke(self, function, kind, payload, request_id=None):
            calls.append(json.loads(payload)["identity"])
            return InvocationResult(request_id="r", function=function, ok=True,
                                    value=json.dumps({"allow": True, "claims": {"u": 1}}))

    clock = [0.0]
    auth = FunctionAuthorizer(Invoker(), "check", ["header", "x-token"], 30,
                              clock=lambda: clock[0])
    import asyncio

    async def go():
        for ident in ("a", "a", "b", "a"):
            assert (await auth.decide(ident, {}, "rid"))["claims"] == {"u": 1}
        clock[0] += 31
        await auth.decide("a", {}, "rid")

    asyncio.run(go())
    assert calls == ["a", "b", "a"]


# -- recursive loops ---------------------------------------------------------------------

def test_lineage_counts_each_function_and_strips_client_values():
    t = lineage.step("00-" + "a" * 32 + "-" + "b" * 16 + "-01", "f")
    assert t.endswith(";loop=f:1")
    for _ in range(15):
        t = lineage.step(t, "f")
    with pytest.raises(lineage.RecursiveLoop, match="17 times"):
        lineage.step(t, "f")
    assert lineage.split(t)[1] == {"f": 16}
    assert lineage.strip(t) == "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    assert lineage.split("00-x;loop=bad entry,f:x,g:2")[1] == {"g": 2}


def test_a_queue_feeding_itself_is_stopped_after_16_passes_and_dead_lettered():
    app = App("loop")

    @app.queue("ping")
    def ping(batch, ctx):
        app.send("ping", {"again": True})

    @app.queue("fan")
    def fan(batch, ctx):  # one event fanning out to many is not a loop
        pass

    @app.function()
    def spread(event, ctx):
        for i in range(40):
            app.send("fan", {"i": i})

    with TestClient(app) as client:
        client.send("ping", {"start": True})
        out = client.drain()
        assert len(client.invocations("ping")) == 17 and out.dead_lettered == 1
        (dead,) = client.dead_letters("ping")
        assert dead.dead_letter_reason == "recursive_loop"
        assert "invoked 17 times in one event chain" in dead.last_error
        client.invoke("spread", None, check=True)
        out = client.drain()
        assert out.dead_lettered == 0 and out.succeeded >= 1


def test_async_payload_over_the_limit_is_refused_clearly():
    app = App("big")
    app.function(name="sink")(lambda e, c: None)
    with TestClient(app) as client:
        with pytest.raises(MessageTooLarge, match="over the 1048576-byte limit"):
            client.invoke_async("sink", "x" * (2 * 1024 * 1024))


# -- the CLI -----------------------------------------------------------------------------

def test_keys_and_secrets_cli(tmp_path):
    run = CliRunner().invoke
    d = ["--data-dir", str(tmp_path)]
    made = run(keys_cli, ["create", "ci", "--rate", "5", "--burst", "10", "--quota", "1000"] + d)
    assert made.exit_code == 0, made.output
    key = json.loads(made.stdout.strip().splitlines()[-1] if made.stdout.strip().startswith("{")
                     else [ln for ln in made.output.splitlines() if ln.startswith("{")][0])
    assert key["plan"] == {"rate": 5.0, "burst": 10, "quota_per_day": 1000}
    listed = run(keys_cli, ["list", "--json"] + d)
    assert json.loads(listed.stdout)[0]["id"] == key["id"] and key["key"] not in listed.stdout
    assert run(keys_cli, ["revoke", key["id"]] + d).exit_code == 0
    assert KeyStore.for_data_dir(tmp_path).verify(key["key"]) is None
    assert run(secrets_cli, ["set", "PW"] + d, input="hunter2-long\n").exit_code == 0
    assert run(secrets_cli, ["list"] + d).stdout.split() == ["PW"]
    assert "hunter2" not in run(secrets_cli, ["list"] + d).output
    assert run(secrets_cli, ["rm", "PW"] + d).exit_code == 0
    for cli, args, text in [(keys_cli, ["revoke", "nope"], "no API key"),
                            (keys_cli, ["create", "bad name"], "invalid"),
                            (keys_cli, ["create", "x", "--rate", "-1"], "rate must be"),
                            (secrets_cli, ["rm", "PW"], "no secret named"),
                            (secrets_cli, ["set", "bad/name", "v"], "invalid")]:
        bad = run(cli, args + d)
        assert bad.exit_code == 2 and text in bad.output, (args, bad.output)


def test_claims_reach_aws_format_handlers_as_api_gateway_passes_them(monkeypatch):
    monkeypatch.setenv("CLAIMS_TEST_SECRET", "s" * 32)
    app = App("awsclaims")
    auth = JWT(secret_env="CLAIMS_TEST_SECRET", algorithms=["HS256"])

    @app.http("GET", "/v2", format="aws-http-v2", auth=auth, name="v2")
    def v2(event, context):
        return event["requestContext"]["authorizer"]

    @app.http("GET", "/v1", format="aws-rest-v1", auth=auth, name="v1")
    def v1(event, context):
        return {"statusCode": 200, "body": json.dumps(event["requestContext"]["authorizer"])}

    token = jwt.encode({"sub": "u1", "exp": time.time() + 60, "scope": "a b"}, "s" * 32,
                       algorithm="HS256")
    with TestClient(app) as client:
        hdrs = {"authorization": f"Bearer {token}"}
        got = client.get("/v2", headers=hdrs).json()
        assert got["jwt"]["claims"]["sub"] == "u1" and got["jwt"]["scopes"] == ["a", "b"]
        assert client.get("/v1", headers=hdrs).json()["claims"]["sub"] == "u1"
