"""`app.state_machine` end to end: declared on an App, run with `invoke` like a function,
its Task states calling the app's functions (in-process, and in the real runtime)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from squall import App
from squall.asl import StatesError, TaskRequest
from squall.asl.runner import FunctionRunner
from squall.config import ConfigError
from squall.testing import TestClient

from .asl_app import app as orders_app
from .fakes import FakeClock

ORDER = {"items": [{"price": 10, "qty": 2}, {"price": 5, "qty": 1}]}
BIG = {"items": [{"price": 100, "qty": 2}]}


def test_state_machine_runs_tasks_through_app_functions() -> None:
    with TestClient(orders_app) as client:
        result = client.invoke("checkout", ORDER)
        assert result.ok, result.error_message
        assert result.output["bill"] == {"total": 25}
        assert result.output["payment"] == {"charged": 25}
        called = [r.function for r in client.invocations()]
        assert {"price", "charge", "checkout"} <= set(called)


def test_a_failed_execution_fails_the_invocation_with_the_asl_error() -> None:
    with TestClient(orders_app) as client:
        result = client.invoke("checkout", BIG)
        assert not result.ok
        assert result.error_type == "PaymentRefused"
        assert json.loads(result.error_message)["errorMessage"] == "card declined for 200"


def test_app_invoke_from_another_function_returns_the_output() -> None:
    app = App("nested")

    @app.function
    def inc(event, ctx):
        return event + 1

    app.state_machine("twice", {"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "inc", "Next": "B"},
        "B": {"Type": "Task", "Resource": "inc", "End": True}}})

    @app.function
    def caller(event, ctx):
        return app.invoke("twice", event)

    with TestClient(app) as client:
        assert client.invoke("caller", 1, check=True).output == 3


def test_wait_uses_the_injected_sleeper() -> None:
    app = App("waits")
    clock = FakeClock()
    app.state_machine("pause", {"StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": 3600, "End": True}}}, now=clock.now, sleep=clock.sleep)
    with TestClient(app) as client:
        assert client.invoke("pause", {"a": 1}, check=True).output == {"a": 1}
    assert clock.slept == [3600]


def test_invalid_definition_is_a_config_error_naming_state_and_field() -> None:
    app = App("bad")
    with pytest.raises(ConfigError, match=r"state 'A' \(Task\): Next 'Nowhere' is not a state"):
        app.state_machine("sm", {"StartAt": "A", "States": {
            "A": {"Type": "Task", "Resource": "f", "Next": "Nowhere"}}})
    with pytest.raises(ConfigError, match="duplicate field"):
        app.state_machine("sm", '{"StartAt": "A", "StartAt": "B", "States": {}}')


def test_strict_app_gets_least_privilege_uses_from_the_definition() -> None:
    app = App("strict", strict=True)

    @app.function(uses={})
    def f(event, ctx):
        return "ok"

    app.state_machine("sm", {"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "f", "End": True}}})
    assert app.functions["sm"].config.uses is not None
    with TestClient(app) as client:
        assert client.invoke("sm", {}, check=True).output == "ok"


@pytest.mark.slow
def test_in_the_real_runtime_tasks_run_in_their_own_workers() -> None:
    with TestClient(orders_app, isolated=True) as client:
        ok = client.invoke("checkout", ORDER)
        assert ok.ok and ok.output["payment"] == {"charged": 25}
        refused = client.invoke("checkout", BIG)
        assert not refused.ok and refused.error_type == "PaymentRefused"


def test_a_function_timeout_is_states_timeout() -> None:
    """What the supervisor answers when a step's function runs past its timeout_s (the
    isolated runtime is not used here: killing a worker currently leaves a socket for the
    garbage collector, which pytest's warnings-as-errors would pin on a later test)."""
    class Timedout(Exception):
        payload = {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after "
                   "0.20 seconds", "requestId": "r-1"}

    def invoke(name: str, data: object) -> object:
        raise Timedout()

    runner = FunctionRunner(invoke)
    with pytest.raises(StatesError) as info:
        runner.run(TaskRequest("slow", {}, "S", None, None, {}))
    assert info.value.error == "States.Timeout"
    assert json.loads(info.value.cause or "")["errorType"] == "Sandbox.Timedout"


@pytest.mark.slow
def test_squall_invoke_runs_a_state_machine(tmp_path: Path) -> None:
    app_file = Path(__file__).with_name("asl_app.py")
    proc = subprocess.run(
        [sys.executable, "-m", "squall.cli.main", "invoke", str(app_file), "checkout",
         "--data", json.dumps(ORDER), "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=50, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["payment"] == {"charged": 25}


def test_the_docs_example_runs() -> None:
    """docs/asl.md's first example, executed as written."""
    import re

    doc = (Path(__file__).parents[2] / "docs" / "asl.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)  # type: ignore[union-attr]
    namespace: dict[str, object] = {}
    exec(compile(code, "docs/asl.md", "exec"), namespace)
    with TestClient(namespace["app"]) as client:  # type: ignore[arg-type]
        assert client.invoke("checkout", ORDER, check=True).output["payment"] == {
            "charged": 25}
        refused = client.invoke("checkout", BIG)
        assert refused.error_type == "PaymentRefused"
