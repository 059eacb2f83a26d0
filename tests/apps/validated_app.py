"""Routes whose pydantic models have Python-side validators (run in the worker before
the handler), a plain JSON Schema route, and ANY routes with and without CORS
(tests/security/test_models_cors_extra.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from squall import App
from squall.security import Cors

app = App("validated")


def _sku(value: str) -> str:
    if not value.startswith("SKU-"):
        raise ValueError("a SKU starts with 'SKU-'")
    return value


class Line(BaseModel):
    sku: Annotated[str, AfterValidator(_sku)]  # a custom type: not in the JSON Schema
    qty: int = Field(ge=1)


class Order(BaseModel):
    id: str
    lines: list[Line]
    discount: int = 0

    @field_validator("id")
    @classmethod
    def lower_case(cls, value: str) -> str:
        assert value == value.lower(), "the id must be lower case"
        return value

    @model_validator(mode="after")
    def discount_needs_lines(self) -> Order:
        if self.discount and len(self.lines) < 2:
            raise ValueError("a discount needs at least two lines")
        return self


class Buggy(BaseModel):
    n: int

    @field_validator("n")
    @classmethod
    def divide(cls, value: int) -> int:
        return 100 // value  # a bug: n=0 raises ZeroDivisionError, not a ValueError


@app.http("POST", "/orders", model=Order)
def create_order(request):
    print("handled")
    return 201, {"id": request.json()["id"]}


@app.http("POST", "/v2/orders", format="aws-http-v2", model=Order)
def create_order_v2(event, context):
    print("handled")
    return {"statusCode": 201, "body": "created"}


@app.http("POST", "/buggy", model=Buggy)
def buggy(request):
    print("handled")
    return {"ok": True}


@app.http("POST", "/plain", model={"type": "object", "required": ["name"],
                                   "properties": {"name": {"type": "string"}}})
def plain(request):
    print("handled")
    return {"name": request.json()["name"]}


@app.http("ANY", "/api/{proxy+}", cors=Cors(origins=["https://shop.example"]))
def api(request):
    print("handled")
    return {"method": request.method}


@app.http("OPTIONS", "/api/special")  # an explicit OPTIONS route: the user answers
def special_options(request):
    print("handled")
    return 200, {"mine": True}


@app.http("ANY", "/open")
def open_route(request):
    print("handled")
    return {"method": request.method}
