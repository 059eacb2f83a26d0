"""A small shop: an HTTP API in front of functions, one of them an unchanged AWS Lambda
handler. Run it with `squall dev examples/shop/app.py` and try:

    curl -s localhost:8080/products
    curl -s -XPOST localhost:8080/orders -d '{"customer": "ada", "items": [{"sku": "tea", "qty": 2}]}'
    curl -s localhost:8080/orders/1
    curl -s localhost:8080/legacy/stock/tea?warehouse=north
    squall invoke examples/shop/app.py quote --data '{"items": [{"sku": "tea", "qty": 3}]}'
    squall logs shop

Orders are kept in a SQLite file of the app's own (SHOP_DB, default .squall/shop-orders.db);
Squall's own tables and buckets arrive with the state layer.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from decimal import Decimal

from legacy_handlers import lambda_handler

from squall import App, BadRequest, NotFound, Response

app = App("shop")
log = logging.getLogger("shop")
log.setLevel(logging.INFO)

CATALOGUE = {
    "tea": {"name": "Assam tea, 250 g", "price": "6.50"},
    "mug": {"name": "Stoneware mug", "price": "12.00"},
    "kettle": {"name": "Stovetop kettle", "price": "39.90"},
}


def _db() -> sqlite3.Connection:
    # opened per call, never at import: the module is imported once and forked
    path = os.environ.get("SHOP_DB", os.path.join(".squall", "shop-orders.db"))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    db = sqlite3.connect(path, timeout=5)
    db.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, customer TEXT, "
               "items TEXT, total TEXT, created REAL)")
    return db


@app.http("GET", "/products", provisioned=1)
def list_products(request):
    return [{"sku": sku, **item} for sku, item in CATALOGUE.items()]


@app.function(memory_mb=256, timeout_s=2)
def quote(event, ctx):
    """Price a basket: invoked by create_order, or directly with `squall invoke`."""
    total = Decimal("0")
    lines = []
    for item in event.get("items", []):
        sku, qty = item.get("sku"), item.get("qty", 1)
        if sku not in CATALOGUE:
            raise ValueError(f"unknown sku {sku!r}")
        if not isinstance(qty, int) or qty < 1:
            raise ValueError(f"qty for {sku!r} must be a positive whole number")
        line = Decimal(CATALOGUE[sku]["price"]) * qty
        lines.append({"sku": sku, "qty": qty, "amount": str(line)})
        total += line
    return {"lines": lines, "total": str(total), "currency": "EUR"}


@app.http("POST", "/orders", timeout_s=5)
def create_order(request):
    order = request.json()
    if not isinstance(order, dict) or not order.get("customer") or not order.get("items"):
        raise BadRequest("an order needs a customer and at least one item")
    try:
        priced = app.invoke("quote", {"items": order["items"]})
    except Exception as exc:
        raise BadRequest(f"cannot price the order: {exc}") from None
    with _db() as db:
        cur = db.execute("INSERT INTO orders (customer, items, total, created) VALUES (?,?,?,?)",
                         (order["customer"], json.dumps(priced["lines"]), priced["total"],
                          time.time()))
        order_id = cur.lastrowid
    log.info("order %s created for %s: %s EUR", order_id, order["customer"], priced["total"])
    return Response(201, {"id": order_id, **priced}, headers={"location": f"/orders/{order_id}"})


@app.http("GET", "/orders/{order_id}")
def get_order(request):
    with _db() as db:
        row = db.execute("SELECT id, customer, items, total FROM orders WHERE id = ?",
                         (request.path_params["order_id"],)).fetchone()
    if row is None:
        raise NotFound(f"no order {request.path_params['order_id']}")
    return {"id": row[0], "customer": row[1], "lines": json.loads(row[2]), "total": row[3]}


@app.http("GET", "/orders")
def list_orders(request):
    raw = request.query.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise BadRequest(f"limit must be a whole number from 1 to 100, got {raw!r}")
    limit = int(raw)
    with _db() as db:
        rows = db.execute("SELECT id, customer, total FROM orders ORDER BY id DESC LIMIT ?",
                          (limit,)).fetchall()
    return {"orders": [{"id": r[0], "customer": r[1], "total": r[2]} for r in rows]}


# an existing AWS Lambda handler, unchanged, behind an HTTP API (payload v2.0) route
app.http("ANY", "/legacy/{proxy+}", format="aws-http-v2")(lambda_handler)
