"""A test app for trace propagation across HTTP, queues, async invocation and the bus."""

from squall import App

app = App("tracing")


@app.http("POST", "/start")
def start(request, ctx):
    app.send("steps", {"from": "http"})
    app.invoke_async("later", {})
    app.publish("tracing", "Started", {})
    return {"trace": ctx.trace_parent, "inner": app.invoke("inner", {})}


@app.function()
def inner(event, ctx):
    return ctx.trace_parent


@app.queue("steps")
def steps(batch, ctx):
    for m in batch:
        print("queue-msg", m.trace, "ctx", ctx.trace_parent)


@app.function()
def later(event, ctx):
    print("async", ctx.trace_parent)


@app.on_event(source=["tracing"])
def on_started(event, ctx):
    print("bus", ctx.trace_parent)
