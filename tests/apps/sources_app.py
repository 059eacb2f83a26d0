"""A test app with every outside-world source, run by a real supervisor."""

import os

from squall import App

PREFIX = os.environ.get("SOURCES_PREFIX", "squall-test/sources")

app = App("sourcesapp", strict=True)
seen = app.table("seen", key="id")


@app.queue("private", uses={})
def private(batch, ctx):
    pass


@app.on_mqtt(f"{PREFIX}/+/temperature", uses={"seen": "write"})
def on_reading(event, ctx):
    seen.put({"id": "mqtt", "payload": event["payload"]})
    return event["payload"]


@app.on_email(to="support@example.com", uses={"email": "read"})
def on_mail(mail, ctx):
    (att,) = mail["attachments"]
    return [mail["subject"], app.buckets["email"].get(att["key"]).body.decode()]


@app.webhook("/hooks/in", verify="hmac-sha256", secret_env="HOOK_SECRET",
             uses={"seen": "write"})
def on_hook(event, ctx):
    try:
        app.send("private", {"leak": event["body"]})
    except PermissionError as exc:
        return {"body": event["body"], "denied": str(exc)}
    return {"body": event["body"], "denied": None}
