"""A test app exercising the runtime: one function per behaviour under test."""

import asyncio
import ctypes
import logging
import os
import sys
import time

from squall import App, Response

app = App("basic")
IMPORTED_IN_PID = os.getpid()


@app.function()
def echo(event, ctx):
    return {"event": event, "pid": os.getpid(), "cold": ctx.cold_start}


@app.function()
def whoami(event, ctx):
    return {
        "pid": os.getpid(),
        "imported_in": IMPORTED_IN_PID,
        "request_id": ctx.request_id,
        "aws_request_id": ctx.aws_request_id,
        "function_name": ctx.function_name,
        "memory_limit_in_mb": ctx.memory_limit_in_mb,
        "remaining_ms": ctx.get_remaining_time_in_millis(),
        "arn": ctx.invoked_function_arn,
        "log_group_name": ctx.log_group_name,
        "env": {k: os.environ.get(k) for k in ("GREETING", "AWS_LAMBDA_FUNCTION_NAME",
                                                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE")},
    }


@app.function(memory_mb=512, timeout_s=7, environment={"GREETING": "hi"})
def configured(event, ctx):
    return whoami(event, ctx)


@app.function(timeout_s=0.5)
def sleepy(event, ctx):
    print("going to sleep", flush=True)
    time.sleep(event.get("s", 10) if event else 10)
    return "woke"


@app.function()
def fails(event, ctx):
    raise KeyError("missing thing")


@app.function()
def exits(event, ctx):
    os._exit(7)


@app.function()
def segfaults(event, ctx):
    ctypes.string_at(0)


@app.function()
def sys_exit(event, ctx):
    sys.exit(4)


@app.function(memory_mb=128)
def hog_fast(event, ctx):
    block = bytearray(event["mb"] * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block)


@app.function(memory_mb=128, timeout_s=20)
def hog_slow(event, ctx):
    blocks = []
    for _ in range(400):
        b = bytearray(4 * 1024 * 1024)
        for i in range(0, len(b), 4096):
            b[i] = 1
        blocks.append(b)
        time.sleep(0.005)
    return len(blocks)


@app.function(concurrency=1, max_wait_s=0.1, timeout_s=5)
def single(event, ctx):
    time.sleep(event.get("s", 0.5))
    return "done"


@app.function(concurrency=1, max_wait_s=3, timeout_s=5)
def single_patient(event, ctx):
    time.sleep(event.get("s", 0.2))
    return os.getpid()


@app.function(provisioned=2)
def provisioned(event, ctx):
    return os.getpid()


@app.function(keep_warm_s=0.2)
def short_lived(event, ctx):
    return os.getpid()


@app.function()
def chatty(event, ctx):
    print("to stdout")
    print("to stderr", file=sys.stderr)
    logging.getLogger("chatty").warning("a warning from logging")
    os.write(1, b"raw fd write\n")
    return "ok"


@app.function()
async def async_fn(event, ctx):
    await asyncio.sleep(0.01)
    return {"async": True, "n": event["n"] * 2}


@app.function()
def caller(event, ctx):
    return {"inner": app.invoke("echo", {"from": "caller"}), "outer_pid": os.getpid()}


@app.function()
def caller_of_failure(event, ctx):
    try:
        app.invoke("fails", {})
    except Exception as exc:
        return {"caught": str(exc)}


@app.function()
def not_json(event, ctx):
    return {1, 2, 3}


@app.http("GET", "/hello/{name}")
def hello(request):
    return {"hello": request.path_params["name"], "q": dict(request.query)}


@app.http("POST", "/echo")
def http_echo(request):
    return request.json()


@app.http("GET", "/status/{code}")
def status(request):
    return int(request.path_params["code"]), {"status": request.path_params["code"]}


@app.http("GET", "/binary")
def binary(request):
    return Response(200, bytes(range(256)), content_type="application/octet-stream")


@app.http("GET", "/slow", timeout_s=0.3)
def slow_http(request):
    time.sleep(5)


@app.http("GET", "/boom")
def boom_http(request):
    raise RuntimeError("kaboom")


@app.http("GET", "/crash")
def crash_http(request):
    os._exit(1)


@app.http("GET", "/limited", concurrency=1, max_wait_s=0.05)
def limited_http(request):
    time.sleep(0.5)
    return "ok"


@app.http("ANY", "/v2/{proxy+}", format="aws-http-v2")
def v2_handler(event, context):
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-route": event["routeKey"]},
        "cookies": ["a=1", "b=2"],
        "body": __import__("json").dumps({
            "rawPath": event["rawPath"],
            "proxy": event["pathParameters"]["proxy"],
            "query": event.get("queryStringParameters"),
            "method": event["requestContext"]["http"]["method"],
            "body": event.get("body"),
            "b64": event["isBase64Encoded"],
            "request_id": context.aws_request_id,
        }),
    }


@app.http("GET", "/v2plain", format="aws-http-v2")
def v2_plain(event, context):
    return {"just": "a dict"}


@app.http("POST", "/v1/items/{item}", format="aws-rest-v1")
def v1_handler(event, context):
    import base64
    import json

    return {
        "statusCode": 201,
        "multiValueHeaders": {"x-multi": ["1", "2"]},
        "headers": {"content-type": "application/json"},
        "body": base64.b64encode(json.dumps({
            "resource": event["resource"],
            "item": event["pathParameters"]["item"],
            "method": event["httpMethod"],
            "mvq": event["multiValueQueryStringParameters"],
        }).encode()).decode(),
        "isBase64Encoded": True,
    }


@app.http("GET", "/v1bad", format="aws-rest-v1")
def v1_bad(event, context):
    return "not a proxy response"
