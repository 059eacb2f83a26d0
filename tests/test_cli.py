"""The `squall` command, run as a subprocess the way a person or a script runs it.

Contract: results on stdout (JSON, for scripts), everything for people on stderr; a bad
argument or an app that cannot load is a message and exit code 2; a function that failed
is exit code 1. Every `invoke` boots a zygote (~0.3 s), so invocations whose output
several tests read are made once per module.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from squall import FunctionConfig
from squall.config import Route

BASIC = str(Path(__file__).parent / "apps" / "basic.py")
SHOP = str(Path(__file__).resolve().parents[1] / "examples" / "shop" / "app.py")

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
REPORT = re.compile(
    rf"^REPORT RequestId: (?P<rid>{UUID})\tDuration: (?P<duration>\d+\.\d{{2}}) ms\t"
    r"Billed Duration: (?P<billed>\d+) ms\tMemory Size: (?P<memory>\d+) MB\t"
    r"Max Memory Used: (?P<used>\d+) MB(?:\tInit Duration: (?P<init>\d+\.\d{2}) ms)?$"
)


def squall(*args: str, cwd: Path, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS=str(columns))  # rich wraps people's text at this width
    env.pop("SHOP_DB", None)
    return subprocess.run([sys.executable, "-m", "squall.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=50)


def flat(text: str) -> str:
    """stderr with rich's line wrapping undone."""
    return " ".join(text.split())


def report(proc: subprocess.CompletedProcess[str]) -> re.Match[str]:
    last = proc.stderr.rstrip("\n").rsplit("\n", 1)[-1]
    m = REPORT.match(last)
    assert m, f"the last stderr line is not a REPORT line: {last!r}"
    return m


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def ran(workdir):
    """A few invocations recorded in one data dir, read by several tests."""
    data = str(workdir / "state")
    out = {
        "echo": squall("invoke", BASIC, "echo", "--data", '{"n": 1}', "--data-dir", data,
                       cwd=workdir),
        "chatty": squall("invoke", BASIC, "chatty", "--data-dir", data, cwd=workdir),
        "fails": squall("invoke", BASIC, "fails", "--data", "{}", "--data-dir", data,
                        cwd=workdir),
        "http_echo": squall("invoke", BASIC, "http_echo", "--data",
                            '{"method": "POST", "path": "/echo", "body": {"x": [1, 2]}}',
                            "--data-dir", data, cwd=workdir),
    }
    out["data_dir"] = data
    return out


# -- invoke ------------------------------------------------------------------------------

def test_invoke_prints_the_result_and_a_cold_report(ran):
    proc = ran["echo"]
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert proc.stdout.count("\n") == 1  # one JSON document on one line
    assert out["event"] == {"n": 1} and out["cold"] is True
    m = report(proc)
    assert m["init"] is not None  # a fresh process: the first call is cold
    assert int(m["memory"]) == 128
    assert int(m["billed"]) == max(1, math.ceil(float(m["duration"])))
    assert 0 < int(m["used"]) < 128


def test_invoke_sends_the_functions_output_to_stderr_not_stdout(ran):
    proc = ran["chatty"]
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == "ok"
    for text in ("to stdout", "to stderr", "a warning from logging", "raw fd write"):
        assert text in proc.stderr
    report(proc)


def test_invoke_reports_the_functions_memory_size(workdir):
    proc = squall("invoke", BASIC, "configured", "--data-dir", str(workdir / "state2"),
                  cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["env"]["GREETING"] == "hi"
    assert report(proc)["memory"] == "512"


def test_a_failing_function_exits_1_with_the_lambda_error_payload(ran):
    proc = ran["fails"]
    assert proc.returncode == 1
    payload = json.loads(proc.stdout)
    assert payload["errorType"] == "KeyError"
    assert payload["errorMessage"] == "'missing thing'"
    assert payload["requestId"] == report(proc)["rid"]
    assert any("in fails" in frame for frame in payload["stackTrace"])
    assert "[ERROR] KeyError: 'missing thing'" in proc.stderr


def test_invoke_reads_the_event_from_a_file(workdir):
    event = workdir / "event.json"
    event.write_text('{"from": "file"}')
    proc = squall("invoke", BASIC, "echo", "--data-file", str(event), "--data-dir",
                  str(workdir / "state3"), cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["event"] == {"from": "file"}


def test_invoke_native_http_function(ran):
    proc = ran["http_echo"]
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": '{"x":[1,2]}',
        "isBase64Encoded": False,
    }
    report(proc)


def test_invoke_native_http_function_with_status_and_binary_body(workdir):
    data = str(workdir / "state4")
    proc = squall("invoke", BASIC, "status", "--data",
                  '{"path": "/status/201", "path_params": {"code": "201"}}',
                  "--data-dir", data, cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["statusCode"] == 201 and json.loads(out["body"]) == {"status": "201"}
    proc = squall("invoke", BASIC, "binary", "--data", '{"path": "/binary"}', "--data-dir", data,
                  cwd=workdir)
    out = json.loads(proc.stdout)
    assert out["statusCode"] == 200 and out["isBase64Encoded"] is True
    assert base64.b64decode(out["body"]) == bytes(range(256))


def test_invoke_native_http_function_fills_path_params_from_the_path(workdir):
    proc = squall("invoke", BASIC, "hello", "--data", '{"path": "/hello/ada", "query": "x=1"}',
                  "--data-dir", str(workdir / "state5"), cwd=workdir)
    assert proc.returncode == 0, proc.stdout
    assert json.loads(json.loads(proc.stdout)["body"]) == {"hello": "ada", "q": {"x": "1"}}


def test_invoke_native_http_function_on_a_path_it_does_not_serve(workdir):
    proc = squall("invoke", BASIC, "hello", "--data", '{"path": "/goodbye/ada"}',
                  "--data-dir", str(workdir / "state5"), cwd=workdir)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "GET /hello/{name}" in flat(proc.stderr)  # says which paths it does serve


def test_invoke_native_http_function_without_data_uses_its_route(workdir):
    # the method and path default to the function's own (single, literal) route
    data = str(workdir / "state6")
    proc = squall("invoke", BASIC, "binary", "--data-dir", data, cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["statusCode"] == 200
    proc = squall("invoke", BASIC, "http_echo", "--data", '{"body": {"k": 1}}', "--data-dir",
                  data, cwd=workdir)  # POST /echo
    assert proc.returncode == 0, proc.stderr
    assert json.loads(json.loads(proc.stdout)["body"]) == {"k": 1}


def test_invoke_parameterised_route_without_a_path(workdir):
    proc = squall("invoke", BASIC, "hello", "--data-dir", str(workdir / "state6"), cwd=workdir)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "serves /hello/{name}: give the request path" in flat(proc.stderr)


# -- invoke: usage errors ----------------------------------------------------------------

def test_unknown_function(workdir):
    proc = squall("invoke", BASIC, "nope", "--data-dir", str(workdir / "state"), cwd=workdir)
    assert proc.returncode == 2
    assert proc.stdout == ""
    message = flat(proc.stderr)
    assert "app 'basic' has no function 'nope'" in message
    assert "echo, whoami" in message  # the known functions are listed


def test_bad_json_in_data(workdir):
    proc = squall("invoke", BASIC, "echo", "--data", "{oops", cwd=workdir)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--data is not valid JSON" in flat(proc.stderr)


def test_missing_app_file(workdir):
    proc = squall("invoke", "no_such_app.py", "echo", cwd=workdir)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "no such app file: no_such_app.py" in flat(proc.stderr)
    assert "Traceback" not in proc.stderr


def test_data_and_data_file_together(workdir):
    event = workdir / "both.json"
    event.write_text("{}")
    proc = squall("invoke", BASIC, "echo", "--data", "{}", "--data-file", str(event),
                  cwd=workdir)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "give --data or --data-file, not both" in flat(proc.stderr)


def test_missing_data_file(workdir):
    proc = squall("invoke", BASIC, "echo", "--data-file", str(workdir / "absent.json"),
                  cwd=workdir)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "cannot read --data-file" in flat(proc.stderr)


BAD_APP = """
from squall import App

app = App("bad")

@app.function(memory_mb=64)
def tiny(event, ctx):
    return event
"""


@pytest.mark.parametrize("command", [["invoke", "bad_app.py", "tiny", "--data-dir", "bad-state"],
                                     ["functions", "bad_app.py"]], ids=["invoke", "functions"])
def test_an_app_with_an_invalid_setting(workdir, command):
    (workdir / "bad_app.py").write_text(BAD_APP)
    proc = squall(*command, cwd=workdir)
    assert proc.returncode == 2 and proc.stdout == ""
    message = flat(proc.stderr)
    assert "the app could not be loaded: ConfigError: function 'tiny': memory_mb" in message
    assert "got 64" in message


# -- functions -----------------------------------------------------------------------------

def test_functions_lists_every_function_with_its_trigger(workdir):
    proc = squall("functions", SHOP, cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in proc.stdout.splitlines() if line.startswith("│")}
    assert set(rows) == {"list_products", "quote", "create_order", "get_order", "list_orders",
                         "lambda_handler"}
    assert rows["list_products"][0] == "GET /products"
    assert rows["quote"][0] == "invoke"
    assert rows["get_order"][0] == "GET /orders/{order_id}"
    assert rows["lambda_handler"][:2] == ["ANY /legacy/{proxy+}", "aws-http-v2"]
    assert rows["quote"][2:4] == ["256 MB", "2 s"]
    assert rows["list_products"][5] == "1"  # provisioned


def test_functions_names_are_never_cut_in_a_narrow_terminal(workdir):
    proc = squall("functions", SHOP, cwd=workdir, columns=80)
    assert proc.returncode == 0, proc.stderr
    for name in ("list_products", "create_order", "lambda_handler"):
        assert name in proc.stdout


MINI_APP = """
from squall import App

app = App("mini", max_body_bytes=2048)

@app.http("POST", "/items/{id}", memory_mb=256, environment={"K": "v"})
def put_item(request):
    return 201, {}

@app.function(timeout_s=2.5, concurrency=3, provisioned=1)
def work(event, ctx):
    return event
"""


def test_functions_json_prints_the_manifest(workdir):
    (workdir / "mini_app.py").write_text(MINI_APP)
    proc = squall("functions", "mini_app.py", "--json", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    # the whole registry as data; other top-level keys (queues, rules, ...) may join these
    assert manifest["app"] == "mini" and manifest["max_body_bytes"] == 2048
    assert manifest["functions"] == [
        FunctionConfig(name="put_item", kind="http", memory_mb=256, environment={"K": "v"},
                       routes=(Route("POST", "/items/{id}"),)).to_manifest(),
        FunctionConfig(name="work", timeout_s=2.5, concurrency=3, provisioned=1).to_manifest(),
    ]


# -- logs ------------------------------------------------------------------------------------

def test_logs_shows_output_and_report_data(ran, workdir):
    proc = squall("logs", "basic", "--data-dir", ran["data_dir"], cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for fn in ("echo", "chatty", "fails", "http_echo"):
        assert report(ran[fn])["rid"] in out
    assert "to stdout" in out and "a warning from logging" in out
    assert "KeyError: 'missing thing'" in out
    assert out.count("REPORT Duration:") == 4
    assert out.count("Init Duration:") == 4
    assert "Memory Size: 128 MB" in out


def test_logs_for_one_function(ran, workdir):
    proc = squall("logs", "basic", "chatty", "--data-dir", ran["data_dir"], cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert report(ran["chatty"])["rid"] in proc.stdout
    assert report(ran["echo"])["rid"] not in proc.stdout
    assert proc.stdout.count("REPORT Duration:") == 1


def test_logs_json_is_one_object_per_invocation(ran, workdir):
    proc = squall("logs", "basic", "--json", "--data-dir", ran["data_dir"], cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    by_fn = {r["function"]: r for r in rows}
    assert [r["function"] for r in rows] == ["echo", "chatty", "fails", "http_echo"]  # oldest first
    for fn, row in by_fn.items():
        m = report(ran[fn])
        assert row["request_id"] == m["rid"] and row["app"] == "basic"
        assert row["memory_mb"] == int(m["memory"]) and row["billed_ms"] == int(m["billed"])
        assert row["cold"] is True and row["init_ms"] == pytest.approx(float(m["init"]), abs=0.01)
    assert by_fn["echo"]["status"] == "ok" and by_fn["echo"]["trigger"] == "event"
    assert by_fn["http_echo"]["trigger"] == "http"
    assert by_fn["fails"]["status"] == "error" and by_fn["fails"]["error_type"] == "KeyError"
    assert any("to stdout" in line for line in by_fn["chatty"]["logs"])
    assert any("[ERROR] KeyError" in line for line in by_fn["fails"]["logs"])
    assert by_fn["echo"]["logs"] == []


def test_logs_filters_and_limits(ran, workdir):
    rid = report(ran["fails"])["rid"]
    proc = squall("logs", "basic", "--json", "--request-id", rid, "--data-dir", ran["data_dir"],
                  cwd=workdir)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["request_id"] for r in rows] == [rid]
    proc = squall("logs", "basic", "--json", "--limit", "2", "--data-dir", ran["data_dir"],
                  cwd=workdir)
    assert [json.loads(line)["function"] for line in proc.stdout.splitlines()] == [
        "fails", "http_echo"]


def test_logs_by_app_file(ran, workdir):
    proc = squall("logs", BASIC, "echo", "--json", "--data-dir", ran["data_dir"], cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["request_id"] for line in proc.stdout.splitlines()] == [
        report(ran["echo"])["rid"]]


def test_logs_for_an_app_with_no_invocations(ran, workdir):
    proc = squall("logs", "other-app", "--data-dir", ran["data_dir"], cwd=workdir)
    assert proc.returncode == 0 and proc.stdout == ""
    assert "no invocations of any function in app 'other-app'" in flat(proc.stderr)


def test_logs_without_a_store(workdir):
    proc = squall("logs", "basic", "--data-dir", str(workdir / "never-used"), cwd=workdir)
    assert proc.returncode == 2 and proc.stdout == ""
    message = flat(proc.stderr)
    assert "no invocation log at" in message and "never-used" in message
    assert not (workdir / "never-used").exists()  # reading creates nothing


# -- squall worker (distributed mode) --------------------------------------------------------

@pytest.mark.parametrize("flag,url,expected", [
    ("--broker", "redis://127.0.0.1:6379", "--broker 'redis://127.0.0.1:6379' is not a URL"),
    ("--broker", "127.0.0.1:4222", "expected one of sqlite://, postgresql://, nats://"),
    ("--store", "nats://127.0.0.1:4222", "--store 'nats://127.0.0.1:4222' is not a URL"),
])
def test_worker_refuses_a_malformed_url(tmp_path, flag, url, expected):
    good = {"--broker": f"sqlite:///{tmp_path}/b.db", "--store": f"sqlite:///{tmp_path}/s.db"}
    good[flag] = url
    r = squall("worker", SHOP, "--broker", good["--broker"], "--store", good["--store"],
               cwd=tmp_path)
    assert r.returncode == 2
    assert expected in " ".join(r.stderr.split())


@pytest.mark.parametrize("url,expected", [
    ("postgresql://postgres@127.0.0.1:1/test",
     "cannot connect to PostgreSQL at 127.0.0.1:1/test"),
    ("nats://127.0.0.1:1", "cannot reach NATS at 127.0.0.1:1"),
])
def test_worker_says_which_server_is_unreachable(tmp_path, url, expected):
    store = url if url.startswith("postgresql") else f"sqlite:///{tmp_path}/s.db"
    r = squall("worker", SHOP, "--broker", url, "--store", store, cwd=tmp_path)
    assert r.returncode == 2
    text = " ".join(r.stderr.split())
    assert expected in text and "start" in text  # and how to start it
    assert "Traceback" not in r.stderr
