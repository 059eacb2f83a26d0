"""An app with one of everything the dashboard shows: routes, a queue with a DLQ, bus
rules, a schedule and a workflow."""

import os
from pathlib import Path

from squall import App, RetryPolicy

app = App("shop")


@app.http("POST", "/orders")
def create_order(request):
    order = request.json()
    print(f"order {order['id']} received")
    app.publish("shop.orders", "OrderCreated", order)
    app.send("emails", order)
    return 201, {"id": order["id"], "workflow": app.start_workflow("fulfil", order)}


@app.http("GET", "/orders/{id}")
def get_order(request):
    return {"id": request.path_params["id"]}


@app.on_event(source=["shop.orders"], detail_type=["OrderCreated"], rule="charge-on-order")
def charge(event, ctx):
    print("charging order", event["detail"]["id"])


@app.queue("emails", batch_size=5, max_receive=1, retry=RetryPolicy(base_s=0, jitter=False))
def send_email(batch, ctx):
    fixed = Path(os.environ.get("DASH_FIXED", "/nonexistent")).exists()  # the bug is fixed
    for m in batch:
        if m.data.get("poison") and not fixed:
            raise ValueError(f"cannot email order {m.data['id']}: no address")
        print("email sent for order", m.data["id"])


@app.schedule("rate(1 hour)")
def nightly_report(event, ctx):
    print("report")


@app.function()
def reserve(order):
    return {"reserved": order["id"]}


@app.function()
def ship(reservation):
    return {"shipped": reservation["reserved"]}


@app.workflow()
def fulfil(wf, order):
    reservation = wf.step("reserve", order)
    return wf.step("ship", reservation)
