"""The demo app (examples/shop/app.py) end to end on the real runtime: an HTTP API whose
order handler prices baskets by invoking another function, an app-owned SQLite file, and
an unchanged AWS Lambda handler behind a greedy route."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from squall.testing import TestClient

SHOP = str(Path(__file__).resolve().parents[1] / "examples" / "shop" / "app.py")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def shop_db(tmp_path_factory):
    return tmp_path_factory.mktemp("shop") / "orders.db"


@pytest.fixture(scope="module")
def client(shop_db):
    # the zygote inherits this process's environment: set SHOP_DB before it starts
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHOP_DB", str(shop_db))
        with TestClient(SHOP, isolated=True) as c:
            yield c


def create(client, customer="ada", items=None):
    items = items if items is not None else [{"sku": "tea", "qty": 2}, {"sku": "mug"}]
    return client.post("/orders", json={"customer": customer, "items": items})


def test_list_products(client):
    r = client.get("/products")
    assert r.status_code == 200
    products = {p["sku"]: p for p in r.json()}
    assert set(products) == {"tea", "mug", "kettle"}
    assert products["tea"] == {"sku": "tea", "name": "Assam tea, 250 g", "price": "6.50"}


def test_create_order_prices_it_through_the_quote_function(client, shop_db):
    # Given a basket of 2 tea (6.50) and 1 mug (12.00)
    # When it is ordered
    r = create(client)
    # Then the order is created, priced, and points at itself
    assert r.status_code == 201, r.text
    body = r.json()
    order_id = body["id"]
    assert isinstance(order_id, int)
    assert r.headers["location"] == f"/orders/{order_id}"
    assert body["total"] == "25.00" and body["currency"] == "EUR"
    assert body["lines"] == [{"sku": "tea", "qty": 2, "amount": "13.00"},
                             {"sku": "mug", "qty": 1, "amount": "12.00"}]
    # ... by create_order calling quote with app.invoke, which ran as its own invocation
    quote = client.invocations("quote")[-1]
    assert quote.ok and quote.output == {"lines": body["lines"], "total": "25.00",
                                         "currency": "EUR"}
    order = client.invocations("create_order")[-1]
    assert order.request_id == r.request_id and quote.request_id != order.request_id
    assert f"order {order_id} created for ada: 25.00 EUR" in order.logs
    assert shop_db.is_file()  # the app's own file, where SHOP_DB said


def test_get_the_order_back(client):
    created = create(client, customer="grace", items=[{"sku": "kettle", "qty": 1}]).json()
    r = client.get(f"/orders/{created['id']}")
    assert r.status_code == 200
    assert r.json() == {"id": created["id"], "customer": "grace",
                        "lines": [{"sku": "kettle", "qty": 1, "amount": "39.90"}],
                        "total": "39.90"}


def test_list_orders_newest_first(client):
    first = create(client, customer="first").json()["id"]
    second = create(client, customer="second").json()["id"]
    r = client.get("/orders")
    assert r.status_code == 200
    ids = [o["id"] for o in r.json()["orders"]]
    assert ids[:2] == [second, first]
    assert r.json()["orders"][0] == {"id": second, "customer": "second", "total": "25.00"}
    limited = client.get("/orders", params={"limit": 1}).json()["orders"]
    assert [o["id"] for o in limited] == [second]


@pytest.mark.parametrize("payload, message", [
    ({"customer": "ada"}, "an order needs a customer and at least one item"),
    ({"items": [{"sku": "tea"}]}, "an order needs a customer and at least one item"),
    ({"customer": "ada", "items": []}, "an order needs a customer and at least one item"),
    ([1, 2], "an order needs a customer and at least one item"),
    ({"customer": "ada", "items": [{"sku": "caviar"}]},
     "cannot price the order: ValueError: unknown sku 'caviar'"),
    ({"customer": "ada", "items": [{"sku": "tea", "qty": 0}]},
     "cannot price the order: ValueError: qty for 'tea' must be a positive whole number"),
])
def test_a_bad_order_is_a_400(client, payload, message):
    r = client.post("/orders", json=payload)
    assert r.status_code == 400
    assert r.json() == {"message": message}


def test_a_malformed_body_is_a_400(client):
    r = client.post("/orders", data="{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["message"].startswith("the request body is not valid JSON")


def test_a_missing_order_is_a_404(client):
    r = client.get("/orders/999999")
    assert r.status_code == 404
    assert r.json() == {"message": "no order 999999"}


@pytest.mark.parametrize("limit", ["ten", "0", "101", "-1", "1.5"])
def test_a_bad_limit_is_a_400(client, limit):
    r = client.get("/orders", params={"limit": limit})
    assert r.status_code == 400
    assert r.json() == {"message": f"limit must be a whole number from 1 to 100, got {limit!r}"}


def test_wrong_method_is_a_405(client):
    r = client.delete("/products")
    assert r.status_code == 405 and r.headers["allow"] == "GET"


def test_legacy_lambda_handler(client):
    r = client.get("/legacy/stock/tea?warehouse=north")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert [v for k, v in r.header_list if k == "set-cookie"] == ["last_sku=tea"]
    body = r.json()
    assert body["sku"] == "tea" and body["stock"] == 40
    assert UUID.match(body["requestId"]) and body["requestId"] == r.request_id
    assert 0 < body["remainingMs"] <= 3000  # the route's default 3 s timeout
    assert "legacy GET /legacy/stock/tea" in client.invocations("lambda_handler")[-1].logs


def test_legacy_handler_without_a_warehouse_and_an_unknown_resource(client):
    r = client.get("/legacy/stock/mug")
    assert r.status_code == 200 and r.json()["stock"] == {"north": 5, "south": 0}
    missing = client.get("/legacy/prices/tea")
    assert missing.status_code == 404
    assert missing.json() == {"message": "no such resource"}


def test_quote_invoked_directly(client):
    r = client.invoke("quote", {"items": [{"sku": "tea", "qty": 3}]})
    assert r.ok, r.error_message
    assert r.output == {"lines": [{"sku": "tea", "qty": 3, "amount": "19.50"}],
                        "total": "19.50", "currency": "EUR"}
    assert r.memory_mb == 256
    bad = client.invoke("quote", {"items": [{"sku": "caviar"}]})
    assert not bad.ok and bad.error_type == "ValueError"
    assert bad.error_message == "unknown sku 'caviar'"
