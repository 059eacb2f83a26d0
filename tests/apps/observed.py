"""A test app for observability: one HTTP request fans out over the bus to a queue
function and a workflow; another appends to a stream read by a stream consumer
(tests/test_observe_trace.py follows both traces through)."""

from squall import App, logger

app = App("observed")
app.alert("errors", error_rate=0.5, window_s=60)


@app.http("POST", "/orders")
def create_order(request):
    order = request.json()
    app.publish("shop.orders", "OrderCreated", order)
    return 201, {"id": order["id"]}


@app.on_event(source=["shop.orders"], detail_type=["OrderCreated"])
def route_order(event, ctx):
    order = event["detail"]
    app.send("emails", {"order": order["id"]})
    app.start_workflow("fulfil", order)


@app.queue("emails")
def send_email(batch, ctx):
    for m in batch:
        print("email for order", m.data["order"])
        logger.warning("slow mail server", order=m.data["order"], retry_in_s=5)


@app.function()
def pack(order):
    return {"packed": order["id"]}


@app.function()
def ship(parcel):
    return {"shipped": parcel["packed"]}


@app.workflow()
def fulfil(wf, order):
    return wf.step("ship", wf.step("pack", order))


@app.http("POST", "/clicks")
def record_click(request):
    click = request.json()
    (sequence,) = app.put_records("clicks", [(click["user"], click)])
    return 202, {"sequence": sequence}


@app.stream("clicks", batch_size=10)
def count_clicks(records, ctx):
    for r in records:
        print("click by", r.partition_key)
