"""A test app for asynchronous invocation: retries, event age, destinations."""

from squall import App

app = App("asyncinv")
ATTEMPTS = {}


@app.function(on_success="function:audit", on_failure="queue:failures")
def flaky(event, ctx):
    n = ATTEMPTS[ctx.request_id] = ATTEMPTS.get(ctx.request_id, 0) + 1
    print(f"flaky attempt {n} for {event}")
    if event.get("fail_times", 0) >= n or event.get("always_fail"):
        raise RuntimeError(f"failure {n}")
    return {"done": event}


@app.function(retries=1)
def no_destination(event, ctx):
    raise ValueError("never works")


@app.function()
def audit(event, ctx):
    print("audit", event["requestContext"]["condition"], event["responsePayload"])


@app.queue("failures")
def failures(batch, ctx):
    for m in batch:
        rec = m.data
        print("failure record", rec["requestContext"]["condition"],
              rec["requestContext"]["approximateInvokeCount"],
              rec.get("responsePayload", {}).get("errorType"))


@app.function()
def starter(event, ctx):
    return app.invoke_async("flaky", {"from": "starter"})


@app.function(retries=1)
def held_elsewhere(event, ctx):
    """Raises IdempotencyInProgress (another run holds the key) a few times, then works."""
    from squall.idempotency import IdempotencyInProgress

    n = ATTEMPTS[event["key"]] = ATTEMPTS.get(event["key"], 0) + 1
    print(f"held attempt {n}")
    if n <= event["held_times"]:
        raise IdempotencyInProgress("key 'k' is being processed by another run")
    return n
