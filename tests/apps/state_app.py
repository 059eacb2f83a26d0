"""A test app for tables, change streams, the cache, buckets and object events."""

from squall import App, BatchResult, ConditionFailed, LifecycleRule

app = App("stateapp")
orders = app.table("orders", key="id", ttl_attribute="expires")
events = app.table("events", key="user", sort_key="ts")
sessions = app.cache("sessions")
uploads = app.bucket("uploads", lifecycle=[
    LifecycleRule(prefix="logs/", archive_after_days=30, expire_after_days=90)])


@app.function()
def place(order, ctx):
    """Insert an order once (conditional put), then count it atomically."""
    try:
        orders.put(order, expected_version=0)
    except ConditionFailed as exc:
        return {"duplicate": str(exc)}
    return {"version": orders.increment(order["id"], "revision")}


@app.function()
def visits(event, ctx):
    return sessions.incr(event["user"], ttl_s=60)


@app.function()
def store(event, ctx):
    info = uploads.put(event["key"], event["text"].encode(), metadata={"by": ctx.function_name})
    got = uploads.get(event["key"], range=(0, 1))
    return {"etag": info.etag, "head": got.body.decode(), "size": got.size}


@app.function()
def bad_key(event, ctx):
    uploads.put(event["key"], b"x")


@app.on_change("orders", batch_size=10)
def audit(changes, ctx):
    failed = []
    for c in changes:
        if c.new and c.new.get("poison"):
            failed.append(c.sequence)
            continue
        print("change", c.event, c.keys["id"], (c.old or {}).get("revision"),
              (c.new or {}).get("revision"), "ttl" if c.by_ttl else "")
    return BatchResult(failed=failed)


@app.on_change("orders", format="aws-dynamodb", events=["insert", "remove"])
def ddb(event, context):
    for r in event["Records"]:
        print("ddb", r["eventName"], r["dynamodb"]["Keys"]["id"]["S"],
              r.get("userIdentity", {}).get("principalId", "-"))


@app.on_object("uploads", prefix="in/", suffix=".txt", events=["created", "deleted"])
def on_text(event, ctx):
    print("object", event.event, event.key, event.size, event.op)


@app.on_object("uploads", format="aws-s3", events=["created", "deleted", "archived"])
def s3(event, context):
    r = event["Records"][0]
    print("s3", r["eventName"], r["s3"]["object"]["key"])
