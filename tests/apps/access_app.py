"""A test app for least privilege: `limited` declares uses=, `free` does not."""

from squall import App

app = App("accessapp")
orders = app.table("orders", key="id")
uploads = app.bucket("uploads")
sessions = app.cache("sessions")


@app.queue("emails")
def mailer(batch, ctx):
    pass


@app.queue("audit")
def auditor(batch, ctx):
    pass


@app.function()
def helper(event, ctx):
    return "helped"


@app.function(uses={"orders": "read", "emails": "send", "helper": "invoke",
                    "uploads": ["read", "write"]})
def limited(event, ctx):
    do = event["do"]
    if do == "read":
        return orders.get("o1")
    if do == "write":
        orders.put({"id": "o1"})
    elif do == "send":
        return app.send("emails", {"to": "a@b.c"}) is not None
    elif do == "send_other":
        app.send("audit", {"x": 1})
    elif do == "invoke":
        return app.invoke("helper", {})
    elif do == "invoke_async_other":
        app.invoke_async("free", {})
    elif do == "publish":
        app.publish("shop", "Thing", {})
    elif do == "cache":
        sessions.get("k")
    elif do == "upload":
        return uploads.put("k.txt", b"x").size
    elif do == "catch":
        try:
            orders.put({"id": "o1"})
        except PermissionError as exc:  # AccessDenied is a PermissionError
            return {"denied": str(exc), "type": type(exc).__name__}
    elif do == "bypass_state":  # straight to the supervisor, past the handle
        return app._invoker.state("table", "orders", "put", [{"id": "o2"}])
    elif do == "bypass_send":
        return app._invoker.send("audit", [{"body": "{}"}])
    return None


@app.function()
def free(event, ctx):
    orders.put({"id": "free"})
    app.send("audit", {"x": 1})
    return sessions.incr("n")
