"""examples/ecommerce: the checkout as a choreography on the event bus and as an
orchestrated workflow (saga), each with a declined card that compensates. Emails go to a
real SMTP sink (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtp_sink import SmtpSink
from squall.backends.workflow_store import COMPENSATED, SUCCEEDED
from squall.runtime.loader import load_app
from squall.testing import TestClient
from squall.testing.conformance import FakeClock

APP = Path(__file__).resolve().parents[1] / "examples" / "ecommerce"
CART = {"email": "ada@example.com", "card": "tok_visa",
        "items": [{"sku": "tea", "qty": 2}, {"sku": "mug"}]}


@pytest.fixture(scope="module")
def sink():
    with SmtpSink() as s:
        yield s


@pytest.fixture
def client(sink, monkeypatch):
    monkeypatch.setenv("SMTP_PORT", str(sink.port))
    sink.messages.clear()
    with TestClient(load_app(str(APP)), clock=FakeClock()) as c:
        yield c


def stock(client, sku):
    return {p["sku"]: p["available"] for p in client.get("/products").json()}[sku]


def test_choreography_carries_an_order_from_checkout_to_the_email(client, sink):
    # Given a valid cart
    r = client.post("/checkout", json=CART)
    assert r.status_code == 202, r.text
    order_id = r.json()["id"]
    assert r.json()["total"] == "25.00"
    # the stock is held at checkout, before anything else runs
    assert stock(client, "tea") == 98
    assert client.get(f"/orders/{order_id}").json()["status"] == "created"
    # When the services react to each other's events
    client.drain()
    # Then each service ran once, in the order of the events
    for fn in ("payment", "inventory", "shipping", "notification"):
        assert len(client.invocations(fn)) == 1, fn
    order = client.get(f"/orders/{order_id}").json()
    assert order["status"] == "shipped" and order["tracking"] == f"TRK-{order_id.upper()}"
    assert "card" not in order
    (mail,) = sink.wait_for(1, 10)
    assert mail["To"] == "ada@example.com" and order_id in mail["Subject"]
    assert order["tracking"] in mail.get_content()
    assert client.get("/analytics").json() == {
        "checkouts": 1, "conversions": 1, "cancellations": 0, "conversion_rate": 1.0}
    assert stock(client, "tea") == 98  # taken for good
    assert client.invocations("compensation") == []


def test_choreography_a_declined_card_releases_the_stock_and_cancels(client, sink):
    r = client.post("/checkout", json={**CART, "card": "tok_declined"})
    order_id = r.json()["id"]
    assert stock(client, "tea") == 98
    client.drain()
    # Then the compensation ran: the stock is back, the order cancelled, the customer told
    assert stock(client, "tea") == 100
    order = client.get(f"/orders/{order_id}").json()
    assert order["status"] == "cancelled"
    assert client.invocations("inventory") == [] and client.invocations("shipping") == []
    (mail,) = sink.wait_for(1, 10)
    assert "cancelled" in mail["Subject"] and "declined" in mail.get_content()
    stats = client.get("/analytics").json()
    assert stats["checkouts"] == 1 and stats["conversions"] == 0
    assert stats["cancellations"] == 1
    # a redelivered failure (at least once) releases nothing twice and mails no one again
    client.publish("ecommerce", "PaymentFailed", {**CART, "id": order_id, "flow": "events",
                                                  "lines": [{"sku": "tea", "qty": 2}]})
    client.drain()
    assert len(client.invocations("compensation")) == 2
    assert stock(client, "tea") == 100 and len(sink.messages) == 1


def test_a_redelivered_payment_confirmation_takes_the_stock_once(client, sink):
    order_id = client.post("/checkout", json=CART).json()["id"]
    client.drain()
    order = {**CART, "id": order_id, "flow": "events", "lines": [{"sku": "tea", "qty": 2}]}
    client.publish("ecommerce", "PaymentConfirmed", order)  # the same event, again
    client.drain()
    assert len(client.invocations("inventory")) == 2
    (tea,) = [p for p in client.get("/products").json() if p["sku"] == "tea"]
    assert (tea["available"], tea["reserved"]) == (98, 0)  # not -2: taken once


def checkout_by_workflow(client, cart):
    """POST the cart to the orchestrated flow, run it: (response body, execution, history)."""
    r = client.post("/checkout?flow=workflow", json=cart)
    assert r.status_code == 202, r.text
    body = r.json()
    client.drain()
    ex = client.call(lambda: client.workflows.result(body["execution"], 10))
    return body, ex, client.workflows.history(body["execution"])


def test_the_workflow_runs_the_same_steps_in_order(client, sink):
    body, ex, history = checkout_by_workflow(client, CART)
    assert ex.status == SUCCEEDED
    steps = [e["data"]["name"] for e in history if e["type"] == "StepCompleted"]
    assert steps == ["record_order", "reserve_stock", "charge_card", "commit_stock",
                     "create_shipment", "send_confirmation"]
    assert client.get(f"/orders/{body['id']}").json()["status"] == "shipped"
    (mail,) = sink.wait_for(1, 10)
    assert body["id"] in mail["Subject"] and "on its way" in mail["Subject"]
    # the choreography's services ignore the workflow's orders; analytics counts them
    assert client.invocations("payment") == [] and client.invocations("notification") == []
    assert client.get("/analytics").json()["conversions"] == 1


def test_the_workflow_compensates_a_declined_card_newest_first(client, sink):
    body, ex, history = checkout_by_workflow(client, {**CART, "card": "tok_declined"})
    assert ex.status == COMPENSATED
    comps = [e["data"]["function"] for e in history if e["type"] == "CompensationCompleted"]
    assert comps == ["release_stock", "cancel_order"]  # charge_card never completed
    assert stock(client, "tea") == 100
    assert client.get(f"/orders/{body['id']}").json()["status"] == "cancelled"
    (mail,) = sink.wait_for(1, 10)
    assert "cancelled" in mail["Subject"]
    assert client.get("/analytics").json()["cancellations"] == 1


@pytest.mark.parametrize("cart, message", [
    ({"email": "nobody", "card": "tok_visa", "items": [{"sku": "tea"}]}, "email"),
    ({**CART, "items": []}, "items must be a list"),
    ({**CART, "items": [{"sku": "caviar"}]}, "unknown sku 'caviar'"),
    ({**CART, "items": [{"sku": "tea", "qty": 0}]}, "qty for 'tea'"),
    ({**CART, "card": ""}, "card must be a payment token"),
])
def test_a_bad_cart_is_refused_with_a_reason(client, cart, message):
    r = client.post("/checkout", json=cart)
    assert r.status_code == 400 and message in r.json()["message"]
    assert client.post("/checkout?flow=carrier-pigeon", json=CART).status_code == 400


def test_out_of_stock_is_409_and_holds_nothing(client):
    r = client.post("/checkout", json={**CART, "items": [{"sku": "tea", "qty": 60}]})
    assert r.status_code == 202
    r = client.post("/checkout", json={**CART, "items": [{"sku": "mug", "qty": 1},
                                                        {"sku": "tea", "qty": 60}]})
    assert r.status_code == 409 and "not enough 'tea'" in r.json()["message"]
    assert stock(client, "mug") == 100  # the mug held before the tea failed was released
    assert client.get("/orders/nope").status_code == 404
