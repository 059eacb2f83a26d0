"""Signed webhooks: the providers' documented test vectors, then the route end to end:
a bad or missing signature is 401 with nothing enqueued; a good one is durable and 202
before the function runs."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from squall import App, ConfigError
from squall.sources.webhooks import (SignatureError, verify_github, verify_hmac_sha256,
                                     verify_slack, verify_stripe)
from squall.testing import TestClient

# GitHub, "Validating webhook deliveries" > "Testing the webhook payload validation"
GITHUB_SECRET = b"It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIG = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

# Slack, "Verifying requests from Slack" (the worked example)
SLACK_SECRET = b"8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TS = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com"
    b"%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
SLACK_SIG = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

# Stripe's docs show the header's shape (t, v1, and a test-mode v0) but publish no secret
# for it; its v1 is checked against the documented scheme with a secret of our own.
STRIPE_DOC_HEADER = ("t=1492774577,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e"
                     "108d8bd,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39")
STRIPE_SECRET = b"whsec_test_secret"
STRIPE_BODY = b'{\n  "id": "evt_test_webhook",\n  "object": "event"\n}'


def stripe_header(body: bytes, t: int, secret: bytes = STRIPE_SECRET) -> str:
    """The documented scheme: v1 = hex HMAC-SHA256(secret, "<t>.<body>")."""
    return f"t={t},v1={hmac.new(secret, f'{t}.'.encode() + body, hashlib.sha256).hexdigest()}"


# -- the verifiers against the vectors -----------------------------------------------------


def test_github_documented_vector():
    verify_github(GITHUB_SECRET, GITHUB_BODY, {"x-hub-signature-256": GITHUB_SIG})
    with pytest.raises(SignatureError, match="does not match"):
        verify_github(GITHUB_SECRET, b"Hello, World?", {"x-hub-signature-256": GITHUB_SIG})
    with pytest.raises(SignatureError, match="does not match"):
        verify_github(b"another secret", GITHUB_BODY, {"x-hub-signature-256": GITHUB_SIG})
    with pytest.raises(SignatureError, match="must start with 'sha256='"):
        verify_github(GITHUB_SECRET, GITHUB_BODY, {"x-hub-signature-256": GITHUB_SIG[7:]})
    with pytest.raises(SignatureError, match="missing X-Hub-Signature-256"):
        verify_github(GITHUB_SECRET, GITHUB_BODY, {})


def test_slack_documented_vector_and_its_timestamp_window():
    headers = {"x-slack-request-timestamp": SLACK_TS, "x-slack-signature": SLACK_SIG}
    verify_slack(SLACK_SECRET, SLACK_BODY, headers, now=int(SLACK_TS) + 299)
    with pytest.raises(SignatureError, match="outside the 300 s tolerance"):
        verify_slack(SLACK_SECRET, SLACK_BODY, headers, now=int(SLACK_TS) + 301)
    with pytest.raises(SignatureError, match="does not match"):
        verify_slack(SLACK_SECRET, SLACK_BODY + b"&x=1", headers, now=int(SLACK_TS))
    with pytest.raises(SignatureError, match="does not match"):  # the timestamp is signed
        verify_slack(SLACK_SECRET, SLACK_BODY, dict(headers, **{
            "x-slack-request-timestamp": str(int(SLACK_TS) + 1)}), now=int(SLACK_TS))


def test_stripe_scheme_tolerance_and_the_documented_header():
    t = 1492774577
    header = stripe_header(STRIPE_BODY, t)
    # cross-check: the same signature computed the other documented way round
    expected = hmac.new(STRIPE_SECRET, b"1492774577." + STRIPE_BODY, hashlib.sha256)
    assert header.endswith(expected.hexdigest())
    verify_stripe(STRIPE_SECRET, STRIPE_BODY, {"stripe-signature": header}, now=t + 300)
    # replay protection: a good signature with an old timestamp is refused
    with pytest.raises(SignatureError, match="outside the 300 s tolerance"):
        verify_stripe(STRIPE_SECRET, STRIPE_BODY, {"stripe-signature": header}, now=t + 301)
    # several v1 (secret rolling): any may match; v0 (test mode) is ignored
    rolled = f"{header},v1={'0' * 64},v0={'1' * 64}"
    verify_stripe(STRIPE_SECRET, STRIPE_BODY, {"stripe-signature": rolled}, now=t)
    # the docs' header is well formed, but not signed with our secret
    with pytest.raises(SignatureError, match="no v1 signature .* matches"):
        verify_stripe(STRIPE_SECRET, STRIPE_BODY, {"stripe-signature": STRIPE_DOC_HEADER},
                      now=t)
    for bad, why in [("v1=abc", "exactly one t="), (f"t={t}", "no v1"),
                     (f"t={t},t={t},v1=00", "exactly one t=")]:
        with pytest.raises(SignatureError, match=why):
            verify_stripe(STRIPE_SECRET, STRIPE_BODY, {"stripe-signature": bad}, now=t)


def test_generic_hmac_in_a_named_header():
    sig = hmac.new(b"k", b"body", hashlib.sha256).hexdigest()
    verify_hmac_sha256(b"k", b"body", {"x-sig": sig}, header="X-Sig")
    verify_hmac_sha256(b"k", b"body", {"x-sig": "sha256=" + sig.upper()}, header="X-Sig")
    with pytest.raises(SignatureError):
        verify_hmac_sha256(b"k", b"body!", {"x-sig": sig}, header="X-Sig")


# -- the route end to end ----------------------------------------------------------------


def make_app() -> App:
    app = App("hooks")

    @app.webhook("/hooks/github", verify="github", secret_env="GH_SECRET")
    def on_push(event, ctx):
        print("push", event["headers"].get("x-github-event"), event["body"])

    @app.webhook("/hooks/stripe", verify="stripe", secret_env="STRIPE_SECRET")
    def on_payment(event, ctx):
        print("stripe", event["json"]["id"])

    @app.webhook("/hooks/slack", verify="slack", secret_env="SLACK_SECRET",
                 environment={"SLACK_SECRET": SLACK_SECRET.decode()})
    def on_command(event, ctx):
        print("slack", event["form"]["command"])

    @app.webhook("/hooks/generic", verify="hmac-sha256", secret_env="NOT_SET_ANYWHERE")
    def generic(event, ctx):
        pass

    @app.http("GET", "/hooks/github")
    def hello(request):
        return {"ordinary": True}

    return app


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setenv("GH_SECRET", GITHUB_SECRET.decode())
    monkeypatch.setenv("STRIPE_SECRET", STRIPE_SECRET.decode())
    with TestClient(make_app()) as c:
        yield c


def queued(client, function: str) -> int:
    return client.queue_stats(f"_async.{function}").visible


def test_a_good_github_delivery_is_durable_and_202_before_the_function_runs(client):
    r = client.post("/hooks/github", data=GITHUB_BODY, headers={
        "X-Hub-Signature-256": GITHUB_SIG, "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "d-1"})
    assert r.status_code == 202, r.text
    assert r.json()["message"] == "Accepted" and r.json()["id"]
    assert client.invocations("on_push") == []  # answered before it ran
    assert queued(client, "on_push") == 1  # ...because it is on the queue, durably
    client.drain()
    assert "push push Hello, World!" in client.logs("on_push")


@pytest.mark.parametrize("headers,reason", [
    ({}, "missing X-Hub-Signature-256"),
    ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, "does not match"),
    ({"X-Hub-Signature-256": GITHUB_SIG.upper()}, "must start with 'sha256='"),
])
def test_a_bad_or_missing_signature_is_401_and_nothing_is_enqueued(client, headers, reason):
    r = client.post("/hooks/github", data=GITHUB_BODY, headers=headers)
    assert r.status_code == 401
    body = r.json()
    assert body["code"] == "invalid_signature" and reason in body["errorMessage"]
    assert queued(client, "on_push") == 0
    assert client.drain().succeeded == 0 and client.invocations() == []


def test_a_tampered_body_is_refused(client):
    r = client.post("/hooks/github", data=b"Hello, World?",
                    headers={"X-Hub-Signature-256": GITHUB_SIG})
    assert r.status_code == 401 and queued(client, "on_push") == 0


def test_a_redelivery_is_enqueued_once(client):
    headers = {"X-Hub-Signature-256": GITHUB_SIG, "X-GitHub-Delivery": "same-id"}
    first = client.post("/hooks/github", data=GITHUB_BODY, headers=headers)
    again = client.post("/hooks/github", data=GITHUB_BODY, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert client.drain().succeeded == 1


def test_stripe_fresh_is_accepted_and_stale_is_refused(client):
    now = int(time.time())
    ok = client.post("/hooks/stripe", data=STRIPE_BODY,
                     headers={"Stripe-Signature": stripe_header(STRIPE_BODY, now),
                              "Content-Type": "application/json"})
    assert ok.status_code == 202, ok.text
    stale = client.post("/hooks/stripe", data=STRIPE_BODY,
                        headers={"Stripe-Signature": stripe_header(STRIPE_BODY, now - 301),
                                 "Content-Type": "application/json"})
    assert stale.status_code == 401 and "tolerance" in stale.json()["errorMessage"]
    assert client.drain().succeeded == 1
    assert "stripe evt_test_webhook" in client.logs("on_payment")


def test_slack_with_the_secret_in_the_functions_environment(client):
    ts = str(int(time.time()))
    sig = "v0=" + hmac.new(SLACK_SECRET, f"v0:{ts}:".encode() + SLACK_BODY,
                           hashlib.sha256).hexdigest()
    r = client.post("/hooks/slack", data=SLACK_BODY, headers={
        "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig,
        "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 202, r.text
    client.drain()
    assert "slack /webhook-collect" in client.logs("on_command")


def test_an_unset_secret_refuses_everything(client):
    r = client.post("/hooks/generic", data=b"x", headers={"X-Signature-256": "00"})
    assert r.status_code == 503 and "set NOT_SET_ANYWHERE" in r.json()["errorMessage"]
    assert queued(client, "generic") == 0


def test_ordinary_routes_beside_webhooks_are_unaffected(client):
    assert client.get("/hooks/github").json() == {"ordinary": True}
    assert client.request("PUT", "/hooks/github").status_code == 405


def test_webhook_declarations_are_checked():
    app = App("badhooks")
    with pytest.raises(ConfigError, match="function 'h': verify must be one of"):
        app.webhook("/h", verify="gitlab", secret_env="S", name="h")(lambda event, ctx: None)
    with pytest.raises(ConfigError, match="function 'h': secret_env must name"):
        app.webhook("/h", verify="github", secret_env="not a name", name="h")(
            lambda event, ctx: None)

    @app.http("POST", "/taken")
    def taken(request):
        return {}

    with pytest.raises(ConfigError, match="route POST /taken is already served"):
        app.webhook("/taken", verify="github", secret_env="S", name="h")(
            lambda event, ctx: None)


def test_the_event_shape(client):
    body = json.dumps({"zen": "Keep it logically awesome."}).encode()
    sig = "sha256=" + hmac.new(GITHUB_SECRET, body, hashlib.sha256).hexdigest()
    assert client.post("/hooks/github?x=1", data=body, headers={
        "X-Hub-Signature-256": sig, "Content-Type": "application/json"}).status_code == 202
    (msg,) = client.call(lambda: client.broker.peek("_async.on_push", 10))
    event = json.loads(msg.body)
    assert event["json"] == {"zen": "Keep it logically awesome."}
    assert event["verified_by"] == "github" and event["query"] == "x=1"
    assert event["path"] == "/hooks/github" and event["method"] == "POST"
    assert event["is_base64"] is False and event["received_at"].endswith("Z")
