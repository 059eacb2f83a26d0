"""Least privilege: a function that declares `uses=` gets exactly that, enforced where the
supervisor serves its calls (in-process and through real workers alike); strict apps;
the declarations checked when the app loads."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from squall import App, ConfigError
from squall.state import AccessDenied
from squall.testing import TestClient

APP = Path(__file__).parent / "apps" / "access_app.py"


def _load_access_app():
    from squall.runtime.loader import load_app

    return load_app(str(APP))


DENIALS = [
    ("write", "may not write table 'orders'"),
    ("send_other", "may not send queue 'audit'"),
    ("invoke_async_other", "may not invoke function 'free'"),
    ("publish", "may not publish bus 'bus'"),
    ("cache", "may not read cache 'sessions'"),
]


@pytest.fixture(scope="module")
def local():
    with TestClient(_load_access_app()) as c:
        yield c


@pytest.fixture(scope="module")
def isolated():
    with TestClient(str(APP), isolated=True) as c:
        yield c


@pytest.mark.parametrize("mode", ["local", "isolated"])
def test_declared_access_is_allowed(mode, request):
    client = request.getfixturevalue(mode)
    assert client.invoke("limited", {"do": "read"}, check=True).output is None
    assert client.invoke("limited", {"do": "send"}, check=True).output is True
    assert client.invoke("limited", {"do": "invoke"}, check=True).output == "helped"
    assert client.invoke("limited", {"do": "upload"}, check=True).output == 1


@pytest.mark.parametrize("mode", ["local", "isolated"])
@pytest.mark.parametrize("do,message", DENIALS)
def test_undeclared_access_is_denied_naming_function_resource_and_action(mode, do, message,
                                                                          request):
    client = request.getfixturevalue(mode)
    r = client.invoke("limited", {"do": do})
    assert not r.ok
    assert r.error_type == "AccessDenied"
    assert f"function 'limited' {message}" in r.error_message
    assert "uses=" in r.error_message  # and what to do about it


@pytest.mark.parametrize("mode", ["local", "isolated"])
def test_the_denial_is_a_permission_error_in_the_handler(mode, request):
    client = request.getfixturevalue(mode)
    out = client.invoke("limited", {"do": "catch"}, check=True).output
    assert out["type"] == "AccessDenied"
    assert "may not write table 'orders'" in out["denied"]


@pytest.mark.parametrize("mode", ["local", "isolated"])
@pytest.mark.parametrize("do", ["bypass_state", "bypass_send"])
def test_calls_past_the_handles_are_denied_by_the_supervisor(mode, do, request):
    # Given a handler that talks to the runtime binding directly (in a worker: a raw CALL
    # frame), When it asks for something it did not declare, Then the supervisor refuses.
    client = request.getfixturevalue(mode)
    r = client.invoke("limited", {"do": do})
    assert r.error_type == "AccessDenied", r.error_message


@pytest.mark.parametrize("mode", ["local", "isolated"])
def test_a_function_without_uses_is_unrestricted(mode, request):
    client = request.getfixturevalue(mode)
    assert client.invoke("free", {}, check=True).output >= 1


def test_a_denial_is_logged_as_structured_fields(local, caplog):
    with caplog.at_level(logging.WARNING, logger="squall"):
        local.invoke("limited", {"do": "write"})
    denied = [r for r in caplog.records if r.getMessage() == "access denied"]
    assert denied and denied[-1].fields == {"function": "limited", "kind": "table",
                                            "resource": "orders", "action": "write"}


def test_the_test_harness_itself_is_not_restricted(local):
    # calls from outside any function (tests, the CLI) have no caller to restrict
    local.send("audit", {"from": "test"})
    assert local.invoke("limited", {"do": "read"}, check=True).output is None


def test_access_denied_is_a_permission_error():
    assert issubclass(AccessDenied, PermissionError)


# -- declarations ------------------------------------------------------------------------


def test_a_strict_app_requires_uses_on_every_function():
    app = App("strictapp", strict=True)
    with pytest.raises(ConfigError, match=r"function 'f': app 'strictapp' is strict: declare"):
        @app.function()
        def f(event, ctx):
            return None

    @app.function(uses={})  # nothing at all is a declaration too
    def g(event, ctx):
        return None

    assert app.manifest()["strict"] is True


@pytest.mark.parametrize("uses,problem", [
    ("orders", "must be a dict"),
    ({"orders": "delete"}, "unknown action 'delete'"),
    ({"orders": []}, "give an action"),
    ({"queue:orders": "read"}, "a queue cannot be granted 'read'"),
    ({"thing:orders": "read"}, "the kind before ':' must be one of"),
    ({"bad name": "read"}, "is not a resource name"),
])
def test_bad_uses_is_a_config_error_naming_the_function(uses, problem):
    app = App("badapp")
    with pytest.raises(ConfigError, match=r"function 'f': uses.*" + problem):
        @app.function(uses=uses)
        def f(event, ctx):
            return None


def test_uses_must_name_declared_resources_when_the_app_loads():
    app = App("namesapp")

    @app.function(uses={"ordrs": "read"})
    def f(event, ctx):
        return None

    app.table("orders", key="id")  # declared after the function: still fine
    with pytest.raises(ConfigError, match=r"uses names 'ordrs', which app 'namesapp' does "
                       r"not declare; it has: .*orders"):
        app.manifest()


def test_kind_prefixed_grants_tell_same_named_resources_apart():
    app = App("kinds")
    orders = app.table("orders", key="id")

    @app.queue("orders")
    def consume(batch, ctx):
        pass

    @app.function(uses={"queue:orders": "send"})
    def f(event, ctx):
        if event == "send":
            return app.send("orders", {}) is not None
        return orders.get("x")

    with TestClient(app) as client:
        assert client.invoke("f", "send", check=True).output is True
        r = client.invoke("f", "get")
        assert r.error_type == "AccessDenied" and "read table 'orders'" in r.error_message


def test_uses_round_trips_through_the_manifest():
    app = App("manifests")
    app.table("orders", key="id")

    @app.function(uses={"orders": "read,write"})
    def f(event, ctx):
        return None

    (fn,) = app.manifest()["functions"]
    assert fn["uses"] == {"orders": ["read", "write"]}
    from squall.config import FunctionConfig

    assert FunctionConfig.from_manifest(json.loads(json.dumps(fn))) == app.functions["f"].config


def test_the_docs_example_runs():
    # docs/sources.md's first example, executed: a strict app whose functions do what
    # they declare
    text = (Path(__file__).resolve().parents[1] / "docs" / "sources.md").read_text()
    source = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {"__name__": "docs_sources_example"}
    exec(compile(source, "docs/sources.md", "exec"), namespace)
    app = namespace["app"]
    assert app.manifest()["strict"] is True
    with TestClient(app) as client:
        client.invoke("reading", {"topic": "sensors/k1/temperature", "payload": "21.5",
                                  "received_at": "2025-01-01T00:00:00Z"}, check=True)
        mail = {"subject": "hi", "attachments": [{"key": "a/1-x.txt"}]}
        client.invoke("support", mail, check=True)
        assert client.drain().succeeded == 1  # the ticket
        assert client.app.tables["readings"].get(("k1", "2025-01-01T00:00:00Z"))["celsius"] \
            == 21.5
