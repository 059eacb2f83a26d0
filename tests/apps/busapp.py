"""A test app for the event bus: rules, several targets, input transformation."""

from squall import App

app = App("busapp")


@app.http("POST", "/orders")
def create(request):
    order = request.json()
    event_id = app.publish("shop.orders", "OrderCreated", order)
    return 201, {"event": event_id}


@app.on_event(source=["shop.orders"], detail_type=["OrderCreated"])
def charge(event, ctx):
    print("charge", event["detail"]["id"], event["detail-type"], event.get("replay-name"))


@app.on_event(pattern={"source": ["shop.orders"], "detail": {"total": [{"numeric": [">", 100]}]}},
              input_path="$.detail")
def big_order(event, ctx):
    print("big order", event)


@app.on_event(source=["shop.orders"], detail={"country": [{"prefix": "D"}]},
              input_transformer={"input_paths": {"id": "$.detail.id", "c": "$.detail.country"},
                                 "template": '{"order": <id>, "where": "in <c>", "rule": "<aws.events.rule-name>"}'},
              rule="german-orders")
def german(event, ctx):
    print("german", event)


app.rule("audit-everything", {"source": [{"prefix": "shop."}]},
         targets=["queue:audit", "function:count"])


@app.function()
def count(event, ctx):
    print("count", event["id"])


@app.queue("audit")
def audit(batch, ctx):
    for m in batch:
        print("audit", m.data["detail-type"], m.data["detail"].get("id"))
