"""The app behind tests/security: every kind of route security, limits and a store whose
contents the hostile-input tests check afterwards (nothing lost, nothing corrupted)."""

import os

from pydantic import BaseModel, Field

from squall import App, BadRequest, NotFound
from squall.events.patterns import InvalidPattern, compile_pattern
from squall.events.schedule import InvalidSchedule, parse_schedule
from squall.security import JWT, Cors, Limits, Throttle

app = App("secure", max_body_bytes=64 * 1024)
app.gateway(limits=Limits(max_header_bytes=8 * 1024, max_url_bytes=2048, max_json_depth=32,
                          body_timeout_s=1.0))
orders = app.table("orders", key="id")
files = app.bucket("files")


class Line(BaseModel):
    sku: str = Field(min_length=1, max_length=40)
    qty: int = Field(ge=1, le=1000)


class Order(BaseModel):
    id: str = Field(pattern=r"^[a-z0-9-]{1,40}$")
    lines: list[Line] = Field(min_length=1, max_length=50)
    note: str = Field(default="", max_length=500)


@app.authorizer(identity="header:x-token", ttl_s=60)
def token_check(info, ctx):
    token = info["identity"]
    if token.startswith("good-"):
        return {"allow": True, "claims": {"user": token[5:]}, "scopes": ["orders:read"]}
    return False


@app.http("POST", "/orders", auth="api_key", model=Order, summary="Create an order",
          cors=Cors(origins=["https://shop.example"]))
def create_order(request):
    order = request.json()  # valid against Order here: the gateway checked it
    orders.put({"id": order["id"], "lines": [{"sku": ln["sku"], "qty": ln["qty"]}
                                             for ln in order["lines"]],
                "note": order.get("note", ""), "key": request.authorizer["keyId"]})
    return 201, {"id": order["id"]}


@app.http("GET", "/orders/{id}")
def get_order(request):
    item = orders.get(request.path_params["id"])
    if item is None:
        raise NotFound(f"no order {request.path_params['id']!r}")
    return item


@app.http("POST", "/echo")
def echo(request):
    return {"json": request.json()}


@app.http("GET", "/me", auth=JWT(secret_env="SECURE_TEST_JWT_SECRET", algorithms=["HS256"],
                                 issuer="https://id.test", audience="secure"),
          scopes=["me:read"])
def me(request):
    return {"sub": request.claims.get("sub"), "scopes": request.authorizer["scopes"]}


if os.environ.get("SECURE_TEST_JWKS"):
    @app.http("GET", "/rs", auth=JWT(jwks_file=os.environ["SECURE_TEST_JWKS"],
                                     algorithms=["RS256", "ES256"], audience="secure"))
    def rs(request):
        return {"sub": request.claims.get("sub")}


@app.http("GET", "/custom", auth="token_check", scopes=["orders:read"])
def custom(request):
    return {"user": request.claims["user"]}


@app.http("GET", "/limited", throttle=Throttle(rate=5, burst=5))
def limited(request):
    return {"ok": True}


@app.http("GET", "/files/{key+}")
def get_file(request):
    obj = files.get(request.path_params["key"])
    if obj is None:
        raise NotFound("no such file")
    return obj.body


@app.http("POST", "/validate/pattern")
def validate_pattern(request):
    try:
        compile_pattern(request.json())
    except InvalidPattern as exc:
        raise BadRequest(f"invalid event pattern: {exc}") from None
    return {"valid": True}


@app.http("POST", "/validate/schedule")
def validate_schedule(request):
    body = request.json()
    if not isinstance(body, dict) or not isinstance(body.get("expression"), str):
        raise BadRequest('send {"expression": "..."}')
    try:
        parse_schedule(body["expression"], "UTC")
    except InvalidSchedule as exc:
        raise BadRequest(f"invalid schedule: {exc.reason or exc.message}") from None
    return {"valid": True}


@app.webhook("/hooks/github", verify="github", secret_env="SECURE_TEST_HOOK_SECRET")
def on_push(event, ctx):
    delivery = event["headers"].get("x-github-delivery", "none")
    files.put(f"hooks/{delivery}/{ctx.request_id}", b"1")


@app.http("GET", "/secret", secrets=["SECURE_TEST_TOKEN"])
def secret(request):
    value = app.secret("SECURE_TEST_TOKEN")
    print(f"the token is {value}")  # must be redacted in the invocation log
    return {"length": len(value)}


@app.http("GET", "/hooks/count/{delivery}")
def hook_count(request):
    return {"count": len(list(files.list_all(f"hooks/{request.path_params['delivery']}/")))}


@app.http("POST", "/notes/{id}")
def put_note(request):
    orders.put({"id": f"note-{request.path_params['id']}", "data": request.json()})
    return 201, {"stored": True}
