"""A test app for ordered streams."""

from squall import App, BatchResult

app = App("streams")


@app.stream("clicks", batch_size=10, shards=2, max_retries=1)
def per_user(records, ctx):
    for r in records:
        if r.data.get("bad"):
            raise ValueError(f"bad record {r.sequence}")
    for r in records:
        print("rec", r.partition_key, r.data["n"])


@app.stream("clicks", batch_size=5, shards=2, format="aws-kinesis", name="kinesis_reader")
def kinesis_reader(event, context):
    import base64
    import json

    failures = []
    for rec in event["Records"]:
        data = json.loads(base64.b64decode(rec["kinesis"]["data"]))
        if data.get("retry_me") and rec["kinesis"]["sequenceNumber"] not in SEEN:
            SEEN.add(rec["kinesis"]["sequenceNumber"])
            failures.append({"itemIdentifier": rec["kinesis"]["sequenceNumber"]})
            break
        print("kin", rec["kinesis"]["partitionKey"], data.get("n"))
    return {"batchItemFailures": failures}


SEEN: set = set()


@app.stream("events", starting_position="latest", shards=1)
def latest_only(records, ctx):
    for r in records:
        print("latest", r.data)


@app.function()
def writer(event, ctx):
    return app.put_records("clicks", [(f"user{i % 2}", {"n": i}) for i in range(event["n"])])
