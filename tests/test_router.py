"""Route matching with API Gateway's rules: literal paths, `{param}` segments, a greedy
`{proxy+}` last segment, `ANY` as a method, and the most specific route first."""

from __future__ import annotations

import pytest

from squall.gateway.router import Match, MethodNotAllowed, Router, Target


def route(router: Router, method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The function and params a request reaches, or None."""
    m = router.match(method, path)
    return None if m is None else (m.target.function, m.params)


# -- literal paths -----------------------------------------------------------------------

def test_static_route():
    router = Router([("GET", "/products", "list_products")])
    m = router.match("GET", "/products")
    assert m == Match(Target("list_products", "GET /products"), {})


def test_static_routes_do_not_match_prefixes_or_extensions():
    router = Router([("GET", "/products", "list_products")])
    for path in ("/product", "/products/1", "/productsx", "/", "/PRODUCTS"):
        assert router.match("GET", path) is None, path


def test_literal_characters_are_not_regex():
    router = Router([("GET", "/v1.0/{id}", "dotted"), ("GET", "/a+b/{id}", "plus")])
    assert route(router, "GET", "/v1.0/7") == ("dotted", {"id": "7"})
    assert route(router, "GET", "/v1x0/7") is None
    assert route(router, "GET", "/a+b/7") == ("plus", {"id": "7"})
    assert route(router, "GET", "/aab/7") is None


def test_root_path():
    router = Router([("GET", "/", "home"), ("GET", "/about", "about")])
    assert route(router, "GET", "/") == ("home", {})
    assert route(router, "GET", "//") == ("home", {})
    assert route(router, "GET", "/about") == ("about", {})


def test_no_routes_at_all():
    assert Router([]).match("GET", "/") is None


# -- parameters --------------------------------------------------------------------------

def test_path_parameters():
    router = Router([("GET", "/orders/{order_id}/lines/{line}", "get_line")])
    m = router.match("GET", "/orders/42/lines/a-b.c")
    assert m is not None
    assert m.params == {"order_id": "42", "line": "a-b.c"}
    assert m.target.route_key == "GET /orders/{order_id}/lines/{line}"


def test_a_parameter_is_one_non_empty_segment():
    router = Router([("GET", "/orders/{id}", "get_order")])
    assert route(router, "GET", "/orders/1/2") is None
    assert route(router, "GET", "/orders/") is None  # "/orders" after normalising
    assert route(router, "GET", "/orders") is None
    assert route(router, "GET", "/orders//") is None


def test_greedy_parameter_takes_the_rest_without_the_leading_slash():
    router = Router([("ANY", "/legacy/{proxy+}", "legacy")])
    assert route(router, "GET", "/legacy/stock") == ("legacy", {"proxy": "stock"})
    assert route(router, "GET", "/legacy/stock/tea") == ("legacy", {"proxy": "stock/tea"})
    assert route(router, "GET", "/legacy/a/b/c/d.json") == ("legacy", {"proxy": "a/b/c/d.json"})


def test_greedy_parameter_needs_at_least_one_segment():
    router = Router([("ANY", "/legacy/{proxy+}", "legacy")])
    assert router.match("GET", "/legacy") is None
    assert router.match("GET", "/legacy/") is None
    assert router.match("GET", "/legacyx/a") is None


def test_greedy_at_the_root():
    router = Router([("ANY", "/{proxy+}", "catch_all")])
    assert route(router, "GET", "/a") == ("catch_all", {"proxy": "a"})
    assert route(router, "DELETE", "/a/b/c") == ("catch_all", {"proxy": "a/b/c"})
    assert router.match("GET", "/") is None  # as in API Gateway: the root needs its own route


def test_params_before_a_greedy_param():
    router = Router([("GET", "/files/{bucket}/{key+}", "get_file")])
    assert route(router, "GET", "/files/photos/2024/05/cat.jpg") == (
        "get_file", {"bucket": "photos", "key": "2024/05/cat.jpg"})


# -- trailing slashes ----------------------------------------------------------------------

@pytest.mark.parametrize("declared, requested", [
    ("/orders", "/orders/"),
    ("/orders/", "/orders"),
    ("/orders/", "/orders/"),
    ("/orders/{id}", "/orders/7/"),
    ("/orders/{id}/", "/orders/7"),
])
def test_trailing_slash_is_ignored(declared, requested):
    router = Router([("GET", declared, "fn")])
    m = router.match("GET", requested)
    assert m is not None and m.target.function == "fn"
    assert m.target.route_key == f"GET {declared}"  # the key stays as declared


def test_greedy_value_loses_the_trailing_slash():
    router = Router([("ANY", "/legacy/{proxy+}", "legacy")])
    assert route(router, "GET", "/legacy/a/b/") == ("legacy", {"proxy": "a/b"})


# -- methods -----------------------------------------------------------------------------

def test_specific_method_beats_any_on_the_same_path():
    router = Router([
        ("ANY", "/orders", "orders_any"),
        ("POST", "/orders", "create_order"),
        ("ANY", "/orders/{id}", "order_any"),
        ("GET", "/orders/{id}", "get_order"),
    ])
    assert route(router, "POST", "/orders") == ("create_order", {})
    assert route(router, "GET", "/orders") == ("orders_any", {})
    assert route(router, "GET", "/orders/1") == ("get_order", {"id": "1"})
    assert route(router, "PATCH", "/orders/1") == ("order_any", {"id": "1"})


def test_specific_method_beats_any_whatever_the_declaration_order():
    router = Router([("POST", "/orders", "create_order"), ("ANY", "/orders", "orders_any")])
    assert route(router, "POST", "/orders") == ("create_order", {})
    assert route(router, "DELETE", "/orders") == ("orders_any", {})


def test_any_route_key_keeps_any():
    router = Router([("ANY", "/legacy/{proxy+}", "legacy")])
    m = router.match("PUT", "/legacy/x")
    assert m is not None and m.target.route_key == "ANY /legacy/{proxy+}"


def test_method_not_allowed_lists_the_allowed_methods_sorted():
    router = Router([
        ("PUT", "/orders/{id}", "replace_order"),
        ("GET", "/orders/{id}", "get_order"),
        ("DELETE", "/orders/{id}", "delete_order"),
    ])
    with pytest.raises(MethodNotAllowed) as info:
        router.match("POST", "/orders/1")
    assert info.value.allowed == ["DELETE", "GET", "PUT"]
    assert str(info.value) == "DELETE, GET, PUT"


def test_method_not_allowed_on_a_static_path():
    router = Router([("POST", "/orders", "create_order"), ("GET", "/orders", "list_orders")])
    with pytest.raises(MethodNotAllowed) as info:
        router.match("DELETE", "/orders")
    assert info.value.allowed == ["GET", "POST"]


def test_method_not_allowed_collects_every_route_that_matches_the_path():
    router = Router([
        ("POST", "/orders/new", "draft_order"),
        ("PUT", "/orders/{id}", "replace_order"),
        ("PUT", "/orders/{id}/", "replace_order_again"),  # the same path, normalised
    ])
    with pytest.raises(MethodNotAllowed) as info:
        router.match("GET", "/orders/new")
    assert info.value.allowed == ["POST", "PUT"]


def test_a_less_specific_route_with_the_method_wins_over_405():
    router = Router([("POST", "/orders/{id}", "update_order"), ("GET", "/{proxy+}", "catch_all")])
    assert route(router, "GET", "/orders/1") == ("catch_all", {"proxy": "orders/1"})
    router = Router([("POST", "/orders", "create_order"), ("GET", "/{thing}", "get_thing")])
    assert route(router, "GET", "/orders") == ("get_thing", {"thing": "orders"})


def test_no_match_is_none_not_405():
    router = Router([("GET", "/orders/{id}", "get_order")])
    assert router.match("POST", "/customers/1") is None


# -- specificity -------------------------------------------------------------------------

def test_literal_beats_param_beats_greedy():
    routes = [
        ("GET", "/orders/{proxy+}", "greedy"),
        ("GET", "/orders/{id}", "param"),
        ("GET", "/orders/latest", "literal"),
    ]
    for order in (routes, routes[::-1]):  # declaration order does not matter
        router = Router(order)
        assert route(router, "GET", "/orders/latest") == ("literal", {})
        assert route(router, "GET", "/orders/7") == ("param", {"id": "7"})
        assert route(router, "GET", "/orders/7/lines") == ("greedy", {"proxy": "7/lines"})


def test_more_literal_segments_win():
    routes = [
        ("GET", "/{a}/{b}/{c}", "all_params"),
        ("GET", "/orders/{id}/{sub}", "one_literal"),
        ("GET", "/orders/{id}/lines", "two_literals"),
    ]
    for order in (routes, routes[::-1]):
        router = Router(order)
        assert route(router, "GET", "/orders/7/lines")[0] == "two_literals"
        assert route(router, "GET", "/orders/7/notes")[0] == "one_literal"
        assert route(router, "GET", "/customers/7/notes")[0] == "all_params"


def test_a_greedy_route_is_tried_after_every_non_greedy_one():
    routes = [
        ("GET", "/api/v1/{rest+}", "greedy_with_literals"),
        ("GET", "/{a}/{b}/{c}", "params_only"),
    ]
    for order in (routes, routes[::-1]):
        router = Router(order)
        assert route(router, "GET", "/api/v1/x")[0] == "params_only"
        assert route(router, "GET", "/api/v1/x/y")[0] == "greedy_with_literals"


def test_the_longer_greedy_prefix_wins():
    routes = [("ANY", "/{proxy+}", "root"), ("ANY", "/legacy/{proxy+}", "legacy")]
    for order in (routes, routes[::-1]):
        router = Router(order)
        assert route(router, "GET", "/legacy/stock/tea") == ("legacy", {"proxy": "stock/tea"})
        assert route(router, "GET", "/other/stock") == ("root", {"proxy": "other/stock"})


def test_static_route_beats_a_greedy_one_at_the_root():
    router = Router([("ANY", "/{proxy+}", "catch_all"), ("GET", "/health", "health")])
    assert route(router, "GET", "/health") == ("health", {})
    assert route(router, "POST", "/health") == ("catch_all", {"proxy": "health"})
