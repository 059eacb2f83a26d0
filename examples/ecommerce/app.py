"""E-commerce checkout, twice: as a choreography of services on the event bus, and as
one orchestrated workflow (a saga) that runs the same business steps.

Choreography (POST /checkout): nobody is in charge; each service reacts to an event and
publishes the next one.

    checkout      validates the cart, reserves stock        -> OrderCreated
    payment       on OrderCreated: charges the card         -> PaymentConfirmed | PaymentFailed
    compensation  on PaymentFailed: releases the stock,
                  cancels, emails the customer              -> OrderCancelled
    inventory     on PaymentConfirmed: takes the stock      -> InventoryUpdated
    shipping      on InventoryUpdated: books a courier      -> ShipmentCreated
    notification  on ShipmentCreated: emails the confirmation (SMTP)
    analytics     on OrderCreated, ShipmentCreated, OrderCancelled (both flows): counts

Orchestration (POST /checkout?flow=workflow): the workflow `place_order` calls the same
steps in order and declares each one's compensation; a declined card makes Squall run
the compensations of the finished steps, newest first (release the stock, cancel the
order and tell the customer), and the execution ends `compensated`.

Run it with an SMTP sink for the emails (any will do, e.g. aiosmtpd's own):

    python -m aiosmtpd -n -l 127.0.0.1:8025 &
    squall dev examples/ecommerce
    curl -s -XPOST localhost:8080/checkout -d '{"email": "ada@example.com", "card": "tok_visa", "items": [{"sku": "tea", "qty": 2}]}'
    curl -s localhost:8080/orders/<id>
    curl -s localhost:8080/analytics

SMTP_HOST / SMTP_PORT (default 127.0.0.1:8025) say where the emails go.
"""

from __future__ import annotations

import logging
import os
import smtplib
import uuid
from decimal import Decimal
from email.message import EmailMessage

from squall import App, BadRequest, ConditionFailed, HTTPError, NotFound, Response

app = App("ecommerce")
products = app.table("products", key="sku")  # stock: available, reserved
orders = app.table("orders", key="id")
payments = app.table("payments", key="order")
shipments = app.table("shipments", key="order")
analytics = app.table("analytics", key="metric")
log = logging.getLogger("ecommerce")
log.setLevel(logging.INFO)

SOURCE = "ecommerce"
CATALOGUE = {"tea": "6.50", "mug": "12.00", "kettle": "39.90"}
INITIAL_STOCK = 100
MAX_LINES = 50
MAX_QTY = 100
DECLINED_CARDS = {"tok_declined", "tok_insufficient_funds"}


class OutOfStock(HTTPError):
    status = 409


class PaymentDeclined(Exception):
    pass


# -- the business steps, shared by both flows ------------------------------------------

def validate_cart(cart: object) -> dict:
    """A priced order from a cart, or BadRequest saying what is wrong."""
    if not isinstance(cart, dict):
        raise BadRequest("the cart must be a JSON object")
    email, card, items = cart.get("email"), cart.get("card"), cart.get("items")
    if not isinstance(email, str) or "@" not in email:
        raise BadRequest("email must be an email address")
    if not isinstance(card, str) or not card:
        raise BadRequest("card must be a payment token, e.g. 'tok_visa'")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_LINES:
        raise BadRequest(f"items must be a list of 1 to {MAX_LINES} lines")
    lines, total = [], Decimal("0")
    for item in items:
        sku, qty = (item.get("sku"), item.get("qty", 1)) if isinstance(item, dict) else (None, 0)
        if sku not in CATALOGUE:
            raise BadRequest(f"unknown sku {sku!r}; known: {', '.join(CATALOGUE)}")
        if not isinstance(qty, int) or isinstance(qty, bool) or not 1 <= qty <= MAX_QTY:
            raise BadRequest(f"qty for {sku!r} must be a whole number from 1 to {MAX_QTY}")
        amount = Decimal(CATALOGUE[sku]) * qty
        lines.append({"sku": sku, "qty": qty, "amount": str(amount)})
        total += amount
    return {"id": uuid.uuid4().hex[:12], "email": email, "card": card, "lines": lines,
            "total": str(total), "status": "created"}


def _stock(sku: str) -> None:
    try:  # first use of a product: stock it (a real shop would load its catalogue)
        products.put({"sku": sku, "available": INITIAL_STOCK, "reserved": 0},
                     expected_version=0)
    except ConditionFailed:
        pass


@app.function()
def record_order(order):
    orders.put(order, expected_version=0)
    app.publish(SOURCE, "OrderCreated", order)
    return order["id"]


@app.function()
def reserve_stock(order):
    """Hold the stock of every line; all or nothing."""
    done = []
    for line in order["lines"]:
        _stock(line["sku"])
        try:
            products.update(line["sku"], increment={"available": -line["qty"],
                                                    "reserved": line["qty"]},
                            condition={"available": {">=": line["qty"]}})
        except ConditionFailed:
            release_stock({"lines": done})
            raise OutOfStock(f"not enough {line['sku']!r} in stock for {line['qty']}",
                             sku=line["sku"]) from None
        done.append(line)
    return len(done)


@app.function()
def release_stock(order):
    """Compensation of reserve_stock: give the held stock back."""
    for line in order["lines"]:
        products.update(line["sku"], increment={"available": line["qty"],
                                                "reserved": -line["qty"]})


@app.function()
def charge_card(order):
    """The payment provider (a fake one): some cards are declined. Idempotent per order:
    a redelivered event or a retried step never charges twice."""
    if order["card"] in DECLINED_CARDS:
        raise PaymentDeclined(f"card {order['card']} was declined for order {order['id']}")
    try:
        payments.put({"order": order["id"], "amount": order["total"], "status": "captured"},
                     expected_version=0)
    except ConditionFailed:
        pass
    orders.update(order["id"], set={"status": "paid"})
    return {"order": order["id"], "amount": order["total"]}


@app.function()
def refund_card(order):
    """Compensation of charge_card."""
    payments.update(order["id"], set={"status": "refunded"})


@app.function()
def commit_stock(order):
    """The reserved stock leaves the warehouse, once: the order's status moves first, so
    a redelivered event finds it packed and takes nothing twice."""
    try:
        orders.update(order["id"], set={"status": "packed"}, condition={"status": "paid"})
    except ConditionFailed:
        return
    for line in order["lines"]:
        products.update(line["sku"], increment={"reserved": -line["qty"]})


@app.function()
def create_shipment(order):
    tracking = f"TRK-{order['id'].upper()}"
    shipments.put({"order": order["id"], "tracking": tracking, "to": order["email"]})
    orders.update(order["id"], set={"status": "shipped", "tracking": tracking})
    shipment = {"order": order["id"], "tracking": tracking, "email": order["email"],
                "flow": order["flow"]}
    app.publish(SOURCE, "ShipmentCreated", shipment)
    return shipment


@app.function()
def cancel_order(order):
    """Compensation of record_order: the order is cancelled and the customer told, once."""
    try:
        orders.update(order["id"], set={"status": "cancelled"},
                      condition={"status": {"!=": "cancelled"}})
    except ConditionFailed:
        return
    app.publish(SOURCE, "OrderCancelled", {"id": order["id"], "flow": order["flow"]})
    send_email(order["email"], f"Order {order['id']} cancelled",
               "Your payment was declined, so we cancelled the order. Nothing was charged.")


@app.function()
def send_confirmation(shipment):
    send_email(shipment["email"], f"Order {shipment['order']} is on its way",
               f"Thank you! Tracking number: {shipment['tracking']}.")


def send_email(to: str, subject: str, body: str) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "shop@example.com", to, subject
    msg.set_content(body)
    host, port = os.environ.get("SMTP_HOST", "127.0.0.1"), int(os.environ.get("SMTP_PORT", "8025"))
    with smtplib.SMTP(host, port, timeout=10) as smtp:
        smtp.send_message(msg)
    log.info("emailed %s: %s", to, subject)


# -- the front door --------------------------------------------------------------------

@app.http("POST", "/checkout")
def checkout(request):
    flow = request.query.get("flow", "events")
    if flow not in ("events", "workflow"):
        raise BadRequest(f"flow must be 'events' or 'workflow', got {flow!r}")
    order = {**validate_cart(request.json()), "flow": flow}
    body = {"id": order["id"], "flow": flow, "total": order["total"]}
    if flow == "workflow":
        body["execution"] = app.start_workflow("place_order", order)
    else:
        reserve_stock(order)  # out of stock: 409 at once, nothing recorded
        record_order(order)   # publishes OrderCreated: the services take it from there
    return Response(202, body, headers={"location": f"/orders/{order['id']}"})


@app.http("GET", "/orders/{order_id}")
def get_order(request):
    order = orders.get(request.path_params["order_id"])
    if order is None:
        raise NotFound(f"no order {request.path_params['order_id']!r}")
    return {k: v for k, v in order.items() if k != "card"}


@app.http("GET", "/products")
def list_products(request):
    stocked = {p["sku"]: p for p in products.scan_all()}
    return [{"sku": sku, "price": price,
             "available": stocked.get(sku, {}).get("available", INITIAL_STOCK),
             "reserved": stocked.get(sku, {}).get("reserved", 0)}
            for sku, price in CATALOGUE.items()]


@app.http("GET", "/analytics")
def conversions(request):
    counts = {m: (analytics.get(m) or {}).get("count", 0) for m in METRICS.values()}
    rate = counts["conversions"] / counts["checkouts"] if counts["checkouts"] else 0.0
    return {**counts, "conversion_rate": round(rate, 4)}


# -- choreography: each service reacts to the previous event ---------------------------
# (only orders of this flow: the workflow publishes the same facts, for analytics)

def _on(detail_type: str):
    return app.on_event(source=[SOURCE], detail_type=[detail_type],
                        detail={"flow": ["events"]})


@_on("OrderCreated")
def payment(event, ctx):
    order = event["detail"]
    try:
        charge_card(order)
    except PaymentDeclined as exc:
        app.publish(SOURCE, "PaymentFailed", {**order, "reason": str(exc)})
        return
    app.publish(SOURCE, "PaymentConfirmed", order)


@_on("PaymentFailed")
def compensation(event, ctx):
    order = event["detail"]
    if (orders.get(order["id"]) or {}).get("status") == "cancelled":
        return  # a redelivered event: the stock was released already
    release_stock(order)
    cancel_order(order)


@_on("PaymentConfirmed")
def inventory(event, ctx):
    commit_stock(event["detail"])
    app.publish(SOURCE, "InventoryUpdated", event["detail"])


@_on("InventoryUpdated")
def shipping(event, ctx):
    create_shipment(event["detail"])  # publishes ShipmentCreated


@_on("ShipmentCreated")
def notification(event, ctx):
    send_confirmation(event["detail"])


METRICS = {"OrderCreated": "checkouts", "ShipmentCreated": "conversions",
           "OrderCancelled": "cancellations"}


@app.on_event(source=[SOURCE], detail_type=list(METRICS))
def analytics_counter(event, ctx):
    """Counts both flows' facts. At least once: a redelivery may count twice."""
    analytics.increment(METRICS[event["detail-type"]], "count")


# -- orchestration: the same steps, one workflow in charge -----------------------------

@app.workflow()
def place_order(wf, order):
    wf.step("record_order", order, compensate="cancel_order")
    wf.step("reserve_stock", order, compensate="release_stock")
    wf.step("charge_card", order, compensate="refund_card")
    wf.step("commit_stock", order)
    shipment = wf.step("create_shipment", order)
    wf.step("send_confirmation", shipment)
    return shipment
