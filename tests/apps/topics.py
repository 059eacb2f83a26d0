"""A test app for topics: fan-out with filter policies, SNS shapes."""

from squall import App

app = App("topics")


@app.subscribe("orders", filter_policy={"kind": ["retail"], "total": [{"numeric": [">=", 100]}]})
def big_retail(event, ctx):
    print("big retail", event["message"]["id"], event["attributes"]["kind"], event["subject"])


@app.subscribe("orders", format="aws-sns")
def every_order(event, context):
    sns = event["Records"][0]["Sns"]
    print("every", sns["Message"], sns["MessageAttributes"]["kind"]["Value"], sns["TopicArn"])


@app.subscribe("orders", filter_policy={"country": [{"prefix": "D"}]}, filter_scope="MessageBody",
               name="body_filtered")
def body_filtered(event, ctx):
    print("body", event["message"]["country"])


app.subscribe_queue("orders", "order-copies", filter_policy={"kind": [{"anything-but": "test"}]})
app.subscribe_queue("orders", "raw-copies", raw=True)


@app.queue("order-copies")
def copies(batch, ctx):
    for m in batch:
        print("copy", m.data["Type"], m.data["Message"])


@app.queue("raw-copies")
def raw_copies(batch, ctx):
    for m in batch:
        print("raw", m.body)


@app.function()
def notifier(event, ctx):
    return app.notify("orders", event, attributes={"kind": "retail", "total": event["total"]})
