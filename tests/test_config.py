"""The declarative registry: `App`, its decorators and `FunctionConfig`.

Decorators only record. Every bad declaration is a `ConfigError` raised while the user's
module is being imported, and its message names the function and the setting, so the
traceback alone says what to fix. Nothing here starts a process or touches a file,
except the last tests, which import an app module from disk the way the zygote does.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import FrozenInstanceError

import pytest

from squall import App, ConfigError, FunctionConfig, NotRunning
from squall.config import HTTP_FORMATS, FUNCTION_FORMATS, Route
from squall.runtime.loader import load_app


def event_handler(event, ctx):
    return event


def request_handler(request):
    return "ok"


# -- settings ------------------------------------------------------------------------

VALID_SETTINGS = [
    {"memory_mb": 128},
    {"memory_mb": 10240},
    {"memory_mb": 1769},
    {"timeout_s": 900},
    {"timeout_s": 900.0},
    {"timeout_s": 0.001},
    {"timeout_s": 3},
    {"concurrency": 1},
    {"concurrency": None},
    {"concurrency": 1000},
    {"provisioned": 0},
    {"provisioned": 5},  # no reserved concurrency: any number may be kept warm
    {"provisioned": 2, "concurrency": 2},
    {"keep_warm_s": 0},
    {"keep_warm_s": 0.5},
    {"keep_warm_s": 86400},
    {"max_wait_s": 0},
    {"max_wait_s": 2.5},
    {"environment": {}},
    {"environment": {"A": "1", "EMPTY": ""}},
    {"description": "prices a basket"},
]


@pytest.mark.parametrize("settings", VALID_SETTINGS, ids=lambda s: repr(s))
def test_valid_settings_are_recorded(settings):
    app = App("settings")
    app.function(**settings)(event_handler)
    cfg = app.functions["event_handler"].config
    for key, value in settings.items():
        assert getattr(cfg, key) == value


INVALID_SETTINGS = [
    # (settings, the setting the message must name)
    ({"memory_mb": 127}, "memory_mb"),
    ({"memory_mb": 10241}, "memory_mb"),
    ({"memory_mb": 0}, "memory_mb"),
    ({"memory_mb": -256}, "memory_mb"),
    ({"memory_mb": 256.0}, "memory_mb"),  # whole numbers only, even when integral
    ({"memory_mb": 256.5}, "memory_mb"),
    ({"memory_mb": "256"}, "memory_mb"),
    ({"memory_mb": True}, "memory_mb"),
    ({"memory_mb": None}, "memory_mb"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"timeout_s": 0.0}, "timeout_s"),
    ({"timeout_s": -1}, "timeout_s"),
    ({"timeout_s": 900.001}, "timeout_s"),
    ({"timeout_s": 901}, "timeout_s"),
    ({"timeout_s": math.inf}, "timeout_s"),
    ({"timeout_s": math.nan}, "timeout_s"),
    ({"timeout_s": "3"}, "timeout_s"),
    ({"timeout_s": True}, "timeout_s"),
    ({"timeout_s": None}, "timeout_s"),
    ({"concurrency": 0}, "concurrency"),
    ({"concurrency": -1}, "concurrency"),
    ({"concurrency": 1.0}, "concurrency"),
    ({"concurrency": "2"}, "concurrency"),
    ({"concurrency": True}, "concurrency"),
    ({"provisioned": -1}, "provisioned"),
    ({"provisioned": 1.0}, "provisioned"),
    ({"provisioned": "1"}, "provisioned"),
    ({"provisioned": True}, "provisioned"),
    ({"provisioned": None}, "provisioned"),
    ({"provisioned": 3, "concurrency": 2}, "provisioned"),
    ({"provisioned": 1, "concurrency": 0}, "concurrency"),
    ({"keep_warm_s": -0.001}, "keep_warm_s"),
    ({"keep_warm_s": -1}, "keep_warm_s"),
    ({"keep_warm_s": "300"}, "keep_warm_s"),
    ({"keep_warm_s": True}, "keep_warm_s"),
    ({"keep_warm_s": None}, "keep_warm_s"),
    ({"max_wait_s": -0.5}, "max_wait_s"),
    ({"max_wait_s": "1"}, "max_wait_s"),
    ({"max_wait_s": False}, "max_wait_s"),
    ({"max_wait_s": None}, "max_wait_s"),
    ({"environment": None}, "environment"),
    ({"environment": "A=1"}, "environment"),
    ({"environment": ["A=1"]}, "environment"),
    ({"environment": [("A", "1")]}, "environment"),
    ({"environment": {"A": 1}}, "environment"),
    ({"environment": {"A": None}}, "environment"),
    ({"environment": {1: "a"}}, "environment"),
]


@pytest.mark.parametrize("settings, setting", INVALID_SETTINGS,
                         ids=[repr(s) for s, _ in INVALID_SETTINGS])
def test_invalid_setting_raises_at_decoration_naming_function_and_setting(settings, setting):
    app = App("settings")
    with pytest.raises(ConfigError) as info:
        @app.function(**settings)
        def price_basket(event, ctx):
            return event

    message = str(info.value)
    assert "'price_basket'" in message
    assert setting in message
    assert app.functions == {}  # a rejected declaration leaves nothing behind


@pytest.mark.parametrize("settings, setting", [
    ({"memory_mb": 64}, "memory_mb"),
    ({"timeout_s": 1000}, "timeout_s"),
    ({"environment": {"A": 2}}, "environment"),
])
def test_invalid_setting_on_an_http_function(settings, setting):
    app = App("settings")
    with pytest.raises(ConfigError, match=rf"'get_order'.*{setting}"):
        app.http("GET", "/orders/{id}", **settings)(request_handler_named("get_order"))
    assert app.functions == {}


def request_handler_named(name):
    def handler(request):
        return name

    handler.__name__ = name
    return handler


@pytest.mark.parametrize("setting", ["keep_warm_s", "max_wait_s"])
def test_nan_durations_are_rejected(setting):
    app = App("settings")
    with pytest.raises(ConfigError, match=setting):
        app.function(**{setting: math.nan})(event_handler)


def test_error_message_says_what_is_allowed():
    app = App("settings")
    with pytest.raises(ConfigError) as info:
        app.function(memory_mb=64)(event_handler)
    assert "128" in str(info.value) and "10240" in str(info.value) and "64" in str(info.value)
    with pytest.raises(ConfigError) as info:
        app.function(provisioned=3, concurrency=2)(event_handler)
    assert "(3)" in str(info.value) and "(2)" in str(info.value)


# -- unknown settings ------------------------------------------------------------------

def test_unknown_setting_is_rejected_with_the_known_ones_listed():
    app = App("settings")
    with pytest.raises(ConfigError) as info:
        @app.function(memroy_mb=256)
        def quote(event, ctx):
            return event

    message = str(info.value)
    assert "'quote'" in message and "'memroy_mb'" in message
    assert "memory_mb" in message.split("known settings are", 1)[1]
    assert app.functions == {}


def test_unknown_settings_are_all_named_on_an_http_function():
    app = App("settings")
    with pytest.raises(ConfigError, match=r"'authz', 'corz'"):
        app.http("GET", "/x", corz=True, authz="api_key")(request_handler)


@pytest.mark.parametrize("setting", ["kind", "routes", "name_", "takes_context"])
def test_internal_fields_are_not_settings(setting):
    app = App("settings")
    with pytest.raises(ConfigError, match="unknown setting"):
        app.function(**{setting: "x"})(event_handler)


# -- formats ---------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", HTTP_FORMATS)
def test_http_formats(fmt):
    app = App("formats")
    handler = request_handler if fmt == "native" else event_handler
    app.http("GET", "/x", format=fmt)(handler)
    assert app.functions[handler.__name__].config.format == fmt


@pytest.mark.parametrize("fmt", FUNCTION_FORMATS)
def test_function_formats(fmt):
    app = App("formats")
    app.function(format=fmt)(event_handler)
    assert app.functions["event_handler"].config.format == fmt


@pytest.mark.parametrize("kind, fmt", [
    ("http", "aws"),  # an invoke-only format on a route
    ("http", "aws-sqs"),
    ("http", "AWS-HTTP-V2"),
    ("http", ""),
    ("function", "aws-http-v2"),  # a route format on an invoke-only function
    ("function", "aws-rest-v1"),
    ("function", "json"),
])
def test_format_must_suit_the_kind(kind, fmt):
    app = App("formats")
    with pytest.raises(ConfigError, match=r"'event_handler': format must be one of"):
        if kind == "http":
            app.http("GET", "/x", format=fmt)(event_handler)
        else:
            app.function(format=fmt)(event_handler)


# -- methods and paths -----------------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
                                    "ANY", "get", "Post"])
def test_methods_are_upper_cased(method):
    app = App("routes")
    app.http(method, "/x")(request_handler)
    assert app.functions["request_handler"].config.routes == (Route(method.upper(), "/x"),)


@pytest.mark.parametrize("method", ["FETCH", "", " GET", "GET,POST", None, 1])
def test_bad_method(method):
    app = App("routes")
    with pytest.raises(ConfigError, match=r"'request_handler': method must be one of"):
        app.http(method, "/x")(request_handler)


VALID_PATHS = ["/", "/orders", "/orders/", "/orders/{id}", "/orders/{id}/lines/{line}",
               "/{proxy+}", "/legacy/{proxy+}", "/a/{b}/{rest+}", "/v1.0/items-x_y",
               "/{_private}", "/{A9}"]


@pytest.mark.parametrize("path", VALID_PATHS)
def test_valid_paths(path):
    app = App("routes")
    app.http("GET", path)(request_handler)
    assert app.functions["request_handler"].config.routes[0].path == path


INVALID_PATHS = [
    ("orders", "must start with '/'"),
    ("", "must start with '/'"),
    ("orders/{id}", "must start with '/'"),
    ("/orders/{", "malformed segment"),
    ("/orders/}", "malformed segment"),
    ("/orders/{}", "malformed segment"),
    ("/orders/{+}", "malformed segment"),
    ("/orders/{1id}", "malformed segment"),
    ("/orders/{order-id}", "malformed segment"),
    ("/orders/{id}.json", "malformed segment"),
    ("/orders/x{id}", "malformed segment"),
    ("/orders/{{id}}", "malformed segment"),
    ("/orders/{id}/{id}", "repeats the parameter 'id'"),
    ("/{id}/x/{id+}", "repeats the parameter 'id'"),
    ("/{proxy+}/tail", "must be the last segment"),
    ("/a/{p+}/{q}", "must be the last segment"),
    ("/a/{p+}/{q+}", "must be the last segment"),
]


@pytest.mark.parametrize("path, problem", INVALID_PATHS, ids=[p for p, _ in INVALID_PATHS])
def test_invalid_paths(path, problem):
    app = App("routes")
    with pytest.raises(ConfigError) as info:
        app.http("GET", path)(request_handler)
    message = str(info.value)
    assert "'request_handler'" in message and "path" in message
    assert problem in message
    assert app.functions == {}


def test_non_string_path():
    app = App("routes")
    with pytest.raises(ConfigError, match=r"'request_handler': path must start with '/'"):
        app.http("GET", None)(request_handler)


# -- names -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a", "quote", "Quote", "create_order", "orders.v2",
                                  "a-b", "9lives", "x" * 64])
def test_valid_function_names(name):
    app = App("names")
    app.function(name=name)(event_handler)
    assert list(app.functions) == [name]
    assert app.functions[name].name == name


@pytest.mark.parametrize("name", ["has space", "x" * 65, "a/b", "crème", "a:b", "<lambda>",
                                  "tab\there"])
def test_invalid_function_names(name):
    app = App("names")
    with pytest.raises(ConfigError, match="function name .* is invalid"):
        app.function(name=name)(event_handler)
    assert app.functions == {}


def test_a_lambda_needs_an_explicit_name():
    app = App("names")
    with pytest.raises(ConfigError, match=r"'<lambda>' is invalid"):
        app.function()(lambda event, ctx: event)
    app.function(name="anon")(lambda event, ctx: event)
    assert list(app.functions) == ["anon"]


def test_function_name_with_a_trailing_newline_is_invalid():
    app = App("names")
    with pytest.raises(ConfigError):
        app.function(name="quote\n")(event_handler)


@pytest.mark.parametrize("name", ["shop", "a", "my-shop_2", "0day", "x" * 63])
def test_valid_app_names(name):
    assert App(name).name == name


@pytest.mark.parametrize("name", ["", "Shop", "-shop", "_shop", "my shop", "shop.v2",
                                  "x" * 64, "shöp", None, 5])
def test_invalid_app_names(name):
    with pytest.raises(ConfigError, match="app name .* is invalid"):
        App(name)


def test_app_name_with_a_trailing_newline_is_invalid():
    with pytest.raises(ConfigError):
        App("shop\n")


@pytest.mark.parametrize("value", [0, -1, 1.5, "10", None])
def test_max_body_bytes_must_be_a_positive_int(value):
    with pytest.raises(ConfigError, match=r"app 'shop': max_body_bytes"):
        App("shop", max_body_bytes=value)


def test_max_body_bytes_rejects_bool():
    with pytest.raises(ConfigError, match="max_body_bytes"):
        App("shop", max_body_bytes=True)


# -- duplicates and overlaps -------------------------------------------------------------

def test_duplicate_function_name():
    app = App("shop")

    @app.function()
    def quote(event, ctx):
        return 1

    def other(event, ctx):
        return 2

    with pytest.raises(ConfigError) as info:
        app.function(name="quote")(other)
    message = str(info.value)
    assert "'quote'" in message and "'shop'" in message and "name=" in message
    assert app.functions["quote"].handler is quote  # the first registration stands


def test_duplicate_name_across_kinds():
    app = App("shop")
    app.function()(event_handler)
    with pytest.raises(ConfigError, match="already registered"):
        app.http("GET", "/e", name="event_handler")(request_handler)
    # and the same callable, once invoke-only, cannot also be a route under its name
    with pytest.raises(ConfigError, match="already registered"):
        app.http("GET", "/e")(event_handler)


def test_the_same_route_twice_is_rejected_naming_the_holder():
    app = App("shop")
    app.http("GET", "/orders")(request_handler_named("list_orders"))
    with pytest.raises(ConfigError) as info:
        app.http("GET", "/orders")(request_handler_named("all_orders"))
    message = str(info.value)
    assert "'all_orders'" in message and "GET /orders" in message and "'list_orders'" in message
    assert list(app.functions) == ["list_orders"]


@pytest.mark.parametrize("first, second", [("ANY", "GET"), ("GET", "ANY"), ("ANY", "ANY"),
                                           ("POST", "post")])
def test_any_overlaps_every_method_on_the_same_path(first, second):
    app = App("shop")
    app.http(first, "/orders/{id}")(request_handler_named("one"))
    with pytest.raises(ConfigError, match="already served by function 'one'"):
        app.http(second, "/orders/{id}")(request_handler_named("two"))


def test_different_methods_on_one_path_are_separate_functions():
    app = App("shop")
    app.http("GET", "/orders")(request_handler_named("list_orders"))
    app.http("POST", "/orders")(request_handler_named("create_order"))
    app.http("GET", "/orders/{id}")(request_handler_named("get_order"))
    assert list(app.functions) == ["list_orders", "create_order", "get_order"]


def test_a_trailing_slash_does_not_make_a_new_route():
    app = App("shop")
    app.http("GET", "/orders")(request_handler_named("list_orders"))
    with pytest.raises(ConfigError, match="already served"):
        app.http("GET", "/orders/")(request_handler_named("shadow"))


@pytest.mark.parametrize("first, second", [
    ("/orders/{id}", "/orders/{id}/lines"),
    ("/orders/{id}", "/orders/{rest+}"),  # one segment vs. several: both reachable
    ("/orders/{id}", "/orders/latest"),
    ("/orders", "/orders/{id}"),
    ("/", "/{proxy+}"),
])
def test_routes_that_match_different_requests_do_not_conflict(first, second):
    app = App("shop")
    app.http("GET", first)(request_handler_named("one"))
    app.http("GET", second)(request_handler_named("two"))
    assert list(app.functions) == ["one", "two"]


def test_renaming_a_parameter_does_not_make_a_new_route():
    app = App("shop")
    app.http("GET", "/orders/{id}")(request_handler_named("get_order"))
    with pytest.raises(ConfigError, match="already served"):
        app.http("GET", "/orders/{order_id}")(request_handler_named("shadow"))


# -- handlers ----------------------------------------------------------------------------

def test_native_http_handler_takes_request_or_request_and_ctx():
    app = App("arity")

    @app.http("GET", "/a")
    def one(request):
        return 1

    @app.http("GET", "/b")
    def two(request, ctx):
        return 2

    @app.http("GET", "/c")
    def defaulted(request, ctx=None):
        return 3

    @app.http("GET", "/d")
    def star(*args):
        return 4

    assert app.functions["one"].takes_context is False
    assert app.functions["two"].takes_context is True
    assert app.functions["defaulted"].takes_context is True
    assert app.functions["star"].takes_context is True


def test_native_http_handler_without_arguments_is_rejected():
    app = App("arity")
    with pytest.raises(ConfigError) as info:
        @app.http("GET", "/a")
        def nothing():
            return 1

    message = str(info.value)
    assert "'nothing'" in message and "(request) or (request, ctx)" in message


def test_native_functions_take_event_or_event_and_ctx():
    app = App("arity")

    @app.function()
    def only_event(event):
        return event

    app.function()(event_handler)
    assert app.functions["only_event"].takes_context is False
    assert app.functions["event_handler"].takes_context is True
    with pytest.raises(ConfigError, match=r"'nothing': .*\(event\) or \(event, ctx\)"):
        @app.function()
        def nothing():
            return 1


@pytest.mark.parametrize("register", [
    lambda app, h: app.function(format="aws")(h),
    lambda app, h: app.http("GET", "/a", format="aws-http-v2")(h),
    lambda app, h: app.http("GET", "/a", format="aws-rest-v1")(h),
], ids=["function-aws", "aws-http-v2", "aws-rest-v1"])
def test_lambda_style_handlers_must_take_event_and_context(register):
    app = App("arity")

    def only_event(event):
        return event

    with pytest.raises(ConfigError, match=r"'only_event': .*\(event, context\)"):
        register(app, only_event)
    assert app.functions == {}
    register(app, event_handler)
    assert app.functions["event_handler"].takes_context is True


def test_keyword_only_parameters_do_not_count():
    app = App("arity")

    def kw(event, *, context=None):
        return event

    with pytest.raises(ConfigError, match=r"'kw': .*\(event, context\)"):
        app.function(format="aws")(kw)


def test_callable_objects_and_builtins_are_accepted():
    app = App("arity")

    class Handler:
        def __call__(self, event, ctx):
            return event

    h = Handler()
    assert app.function(name="obj")(h) is h
    assert app.functions["obj"].takes_context is True
    assert app.function(name="builtin")(max) is max  # no signature: assumed (event, ctx)


def test_a_non_callable_handler_is_rejected():
    app = App("arity")
    with pytest.raises(ConfigError, match="must be callable"):
        app.function(name="x")("not a function")


@pytest.mark.parametrize("source", ["def h(event, ctx, extra): pass",
                                    "def h(event, ctx, *, extra): pass"])
def test_handler_needing_more_arguments_than_it_is_given_is_rejected(source):
    namespace: dict = {}
    exec(source, namespace)
    app = App("arity")
    with pytest.raises(ConfigError, match="'h'"):
        app.function()(namespace["h"])


def test_async_handlers_are_recorded_as_async():
    app = App("arity")

    @app.function()
    async def later(event, ctx):
        return event

    @app.http("GET", "/later")
    async def later_http(request):
        return "ok"

    app.function()(event_handler)
    assert app.functions["later"].is_async and app.functions["later_http"].is_async
    assert not app.functions["event_handler"].is_async


# -- decorators only record --------------------------------------------------------------

def test_decorators_return_the_callable_unchanged():
    app = App("record")

    def quote(event, ctx):
        return event

    async def later(event, ctx):
        return event

    def hello(request):
        return "hi"

    assert app.function()(quote) is quote
    assert app.function(later, name="later") is later  # the bare `@app.function` form
    assert app.http("GET", "/hello")(hello) is hello
    assert quote({"a": 1}, None) == {"a": 1}  # still an ordinary function
    assert app.functions["quote"].handler is quote
    assert app.functions["hello"].handler is hello


def test_bare_function_decorator():
    app = App("record")

    @app.function
    def quote(event, ctx):
        return event

    assert callable(quote) and quote(1, None) == 1
    assert list(app.functions) == ["quote"]


def test_the_same_callable_on_a_second_route():
    app = App("record")

    def orders(request):
        return []

    app.http("GET", "/orders", timeout_s=5)(orders)
    again = app.http("HEAD", "/orders", timeout_s=5)(orders)
    assert again is orders
    cfg = app.functions["orders"].config
    assert cfg.routes == (Route("GET", "/orders"), Route("HEAD", "/orders"))
    assert cfg.timeout_s == 5
    assert [f["routes"] for f in app.manifest()["functions"]] == [
        [["GET", "/orders"], ["HEAD", "/orders"]]
    ]


def test_the_same_callable_on_a_second_route_with_other_settings_needs_a_name():
    app = App("record")

    def orders(request):
        return []

    app.http("GET", "/orders")(orders)
    with pytest.raises(ConfigError, match=r"'orders': registered again with other settings"):
        app.http("POST", "/orders", memory_mb=512)(orders)
    assert app.functions["orders"].config.routes == (Route("GET", "/orders"),)
    # with a name of its own it is a separate function
    app.http("POST", "/orders", name="orders_big", memory_mb=512)(orders)
    assert app.functions["orders_big"].config.memory_mb == 512
    assert app.functions["orders_big"].handler is orders


def test_the_same_callable_on_the_same_route_twice_is_a_conflict():
    app = App("record")
    app.http("GET", "/orders")(request_handler)
    with pytest.raises(ConfigError, match="already served by function 'request_handler'"):
        app.http("GET", "/orders")(request_handler)
    assert app.functions["request_handler"].config.routes == (Route("GET", "/orders"),)


def test_the_app_remembers_where_it_was_defined():
    app = App("record")
    assert app.module == __name__
    assert app.file == __file__


def test_functionconfig_is_frozen_and_validates_itself():
    cfg = FunctionConfig(name="quote")
    with pytest.raises(FrozenInstanceError):
        cfg.memory_mb = 512  # type: ignore[misc]
    with pytest.raises(ConfigError, match=r"'quote': kind must be one of"):
        FunctionConfig(name="quote", kind="cron")
    with pytest.raises(ConfigError, match=r"'orders': routes must hold at least one route"):
        FunctionConfig(name="orders", kind="http")


# -- the manifest --------------------------------------------------------------------------

def build_shop() -> App:
    app = App("shop", max_body_bytes=1024)

    @app.http("GET", "/products", provisioned=1, description="the catalogue")
    def list_products(request):
        return []

    app.http("HEAD", "/products", provisioned=1, description="the catalogue")(list_products)

    @app.function(memory_mb=256, timeout_s=2.5, concurrency=4, provisioned=2, keep_warm_s=0,
                  max_wait_s=0.25, environment={"CURRENCY": "EUR"})
    def quote(event, ctx):
        return event

    @app.http("ANY", "/legacy/{proxy+}", format="aws-http-v2", name="legacy")
    def handler(event, context):
        return {}

    @app.function(format="aws")
    def raw(event, context):
        return event

    return app


def test_manifest_is_plain_data():
    app = build_shop()
    manifest = app.manifest()
    assert json.loads(json.dumps(manifest)) == manifest
    assert manifest["app"] == "shop" and manifest["max_body_bytes"] == 1024
    assert [f["name"] for f in manifest["functions"]] == ["list_products", "quote", "legacy",
                                                          "raw"]
    quote = manifest["functions"][1]
    expected = {
        "name": "quote", "kind": "function", "format": "native", "memory_mb": 256,
        "timeout_s": 2.5, "concurrency": 4, "provisioned": 2, "keep_warm_s": 0,
        "max_wait_s": 0.25, "environment": {"CURRENCY": "EUR"}, "routes": [],
        "description": "",
    }
    assert {k: quote[k] for k in expected} == expected
    assert manifest["functions"][2]["routes"] == [["ANY", "/legacy/{proxy+}"]]


def test_manifest_round_trips_through_from_manifest():
    app = build_shop()
    wire = json.loads(json.dumps(app.manifest()))  # as the zygote sends it
    for data in wire["functions"]:
        assert FunctionConfig.from_manifest(data) == app.functions[data["name"]].config


def test_manifest_environment_is_a_copy():
    app = build_shop()
    manifest = app.manifest()
    manifest["functions"][1]["environment"]["CURRENCY"] = "GBP"
    assert app.functions["quote"].config.environment == {"CURRENCY": "EUR"}


def test_from_manifest_validates():
    data = build_shop().manifest()["functions"][1]
    with pytest.raises(ConfigError, match=r"'quote': memory_mb"):
        FunctionConfig.from_manifest({**data, "memory_mb": 1})
    with pytest.raises(ConfigError, match=r"'quote': path"):
        FunctionConfig.from_manifest({**data, "kind": "http", "routes": [["GET", "nope"]]})


# -- many apps, no global state ------------------------------------------------------------

def test_many_apps_coexist_in_one_process():
    apps = [App(f"app-{i}") for i in range(3)]
    for i, app in enumerate(apps):
        # the same function name and route in every app, with different settings
        app.function(name="quote", memory_mb=128 * (i + 1))(event_handler)
        app.http("GET", "/orders")(request_handler)
    assert [a.functions["quote"].config.memory_mb for a in apps] == [128, 256, 384]
    assert all(list(a.functions) == ["quote", "request_handler"] for a in apps)
    apps[0].function(name="only_in_first")(event_handler)
    assert "only_in_first" not in apps[1].functions
    # two apps may even share a name: nothing is registered globally
    twin = App("app-0")
    assert twin.functions == {}


# -- calling without a runtime -------------------------------------------------------------

def test_invoke_without_a_runtime_raises_not_running():
    app = App("shop")
    app.function()(event_handler)
    with pytest.raises(NotRunning) as info:
        app.invoke("event_handler", {"a": 1})
    message = str(info.value)
    assert "'shop'" in message
    assert "squall.testing" in message and "squall invoke" in message
    assert isinstance(info.value, RuntimeError)


def test_invoke_goes_to_the_bound_invoker_until_unbound():
    class FakeInvoker:
        def __init__(self):
            self.calls = []

        def invoke(self, function, data):
            self.calls.append((function, data))
            return {"echo": data}

    app = App("shop")
    fake = FakeInvoker()
    app.bind(fake)
    assert app.invoke("quote", {"n": 1}) == {"echo": {"n": 1}}
    assert app.invoke("quote") == {"echo": None}
    assert fake.calls == [("quote", {"n": 1}), ("quote", None)]
    app.bind(None)
    with pytest.raises(NotRunning):
        app.invoke("quote", {})


# -- importing an app module ---------------------------------------------------------------

@pytest.fixture
def import_from(tmp_path, monkeypatch):
    """Write a module into tmp_path and load it as the zygote does; undo sys.path/modules."""
    monkeypatch.syspath_prepend(str(tmp_path))  # restored afterwards, with load_app's insert
    before = set(sys.modules)

    def load(name: str, source: str) -> App:
        path = tmp_path / f"{name}.py"
        path.write_text(source)
        return load_app(str(path))

    yield load
    for name in set(sys.modules) - before:
        if name.startswith("_squall_app_"):
            del sys.modules[name]


GOOD_MODULE = """
from squall import App

app = App("imported")

@app.function(memory_mb=512)
def quote(event, ctx):
    return event
"""


def test_loading_a_good_module(import_from, tmp_path):
    app = import_from("cfg_good_app", GOOD_MODULE)
    assert app.name == "imported"
    assert app.file == str(tmp_path / "cfg_good_app.py")
    assert app.functions["quote"].config.memory_mb == 512


BAD_MODULE = """
from squall import App

app = App("imported")
REACHED = []

@app.function()
def fine(event, ctx):
    return event

@app.function(timeout_s=1800)
def too_slow(event, ctx):
    return event

REACHED.append("after the bad declaration")  # never runs
"""


def test_a_bad_setting_fails_the_import(import_from):
    with pytest.raises(ConfigError) as info:
        import_from("cfg_bad_app", BAD_MODULE)
    message = str(info.value)
    assert "'too_slow'" in message and "timeout_s" in message and "1800" in message
    # the failure points at the user's decorator line
    frames = [f for f in _frames(info.value.__traceback__) if f.endswith("cfg_bad_app.py")]
    assert frames, "the traceback should pass through the user's module"


def test_an_unknown_setting_fails_the_import(import_from):
    source = GOOD_MODULE.replace("memory_mb=512", "memory=512")
    with pytest.raises(ConfigError, match=r"'quote': unknown setting 'memory'"):
        import_from("cfg_unknown_app", source)


def _frames(tb):
    while tb is not None:
        yield tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
