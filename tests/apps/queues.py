"""A test app for queues: load levelling, partial failures, DLQ, AWS SQS format."""

import os

from squall import App, BatchResult, RetryPolicy

app = App("queues")


@app.http("POST", "/orders")
def accept(request):
    mid = app.send("orders", request.json())
    return 202, {"messageId": mid}


@app.queue("orders", batch_size=5, max_receive=3, retry=RetryPolicy(base_s=2, jitter=False))
def handle_orders(batch, ctx):
    failed = []
    for m in batch:
        if m.data.get("poison"):
            failed.append(m.id)
        else:
            print(f"order {m.data['n']} attempt {m.receive_count} pid {os.getpid()}")
    return BatchResult(failed=failed)


@app.queue("aws-orders", format="aws-sqs", max_receive=2)
def sqs_handler(event, context):
    failures = []
    for record in event["Records"]:
        if "bad" in record["body"]:
            failures.append({"itemIdentifier": record["messageId"]})
        else:
            print("sqs", record["body"], record["attributes"]["ApproximateReceiveCount"])
    return {"batchItemFailures": failures}


@app.queue("explodes", max_receive=2, retry=RetryPolicy(base_s=1, jitter=False))
def explodes(batch, ctx):
    raise ValueError(f"cannot handle {len(batch)} messages")


@app.queue("ageing", max_age_s=60)
def ageing(batch, ctx):
    print("aged ok", [m.data for m in batch])


@app.function()
def fan_out(event, ctx):
    return app.send_batch("orders", [{"n": i} for i in range(event["count"])])
