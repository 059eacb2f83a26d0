"""The platform CLI against a real `squall server`: deploy, versions, alias, rollback, apps,
quota, grant, delete; clear errors with exit code 2; and a restarted server serving the same
apps from its registry."""

from __future__ import annotations

import json

import httpx
import pytest
from platform_fixtures import TOKEN, RunningPlatform, venv_cache, write_app
from typer.testing import CliRunner

from squall.cli.main import cli

APP = """
from squall import App

app = App("notes")

@app.http("GET", "/v")
def v(request):
    return 200, {{"v": {version}}}
"""


@pytest.fixture
def run(monkeypatch):
    monkeypatch.setenv("SQUALL_ADMIN_TOKEN", TOKEN)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, list(args), catch_exceptions=False)
    return invoke


@pytest.mark.slow
def test_cli_workflow_and_a_restart_keeps_the_apps(tmp_path, tmp_path_factory, run):
    data = tmp_path / "data"
    apps = tmp_path / "apps"
    with RunningPlatform(data, venv_cache(tmp_path_factory)) as plat:
        server = ["--server", plat.url]
        for n in (1, 2):
            write_app(apps / f"notes{n}", APP.format(version=n))
            out = run("deploy", str(apps / f"notes{n}"), "--name", "notes", *server)
            assert out.exit_code == 0, out.output
            assert f"notes version {n}" in out.output
        assert "dependencies" in out.output and "import" in out.output  # what it costs
        out = run("versions", "notes", "--json", *server)
        rows = json.loads(out.output)
        assert [r["version"] for r in rows] == [1, 2] and rows[1]["aliases"] == {"prod": 100}
        assert json.loads(run("alias", "notes", "prod", "1:50,2:50", *server).output)[
            "weights"] == {"1": 50, "2": 50}
        out = run("rollback", "notes", "1", *server)
        assert json.loads(out.output)["weights"] == {"1": 100}
        assert httpx.get(plat.url + "/notes/v").json() == {"v": 1}
        out = run("quota", "notes", "--concurrency", "5", *server)
        assert json.loads(out.output)["concurrency"] == 5
        out = run("grant", "notes", "other-app", "v", *server)
        assert json.loads(out.output)["functions"] == ["v"]
        assert json.loads(run("grant", "notes", "other-app", "--revoke", *server).output)[
            "functions"] == []
        out = run("apps", "--json", *server)
        (notes,) = json.loads(out.output)
        assert notes["aliases"]["prod"]["weights"] == "1:100"
        assert [r["version"] for r in notes["node"]["running"]] == [1]
        table = run("apps", *server)
        assert table.exit_code == 0 and "prod=1:100" in table.output
        # errors: a message and exit code 2
        bad = run("rollback", "nope", *server)
        assert bad.exit_code == 2 and "no app named 'nope'" in bad.output
        bad = run("alias", "notes", "prod", "1:70", *server)
        assert bad.exit_code == 2 and "add up to 70" in bad.output
        bad = run("deploy", str(tmp_path / "missing"), *server)
        assert bad.exit_code == 2 and "no such app directory" in bad.output
        bad = run("apps", "--server", "http://127.0.0.1:9")
        assert bad.exit_code == 2 and "cannot reach the squall server" in bad.output
    # the registry outlives the process: a new server runs what the aliases say
    with RunningPlatform(data, venv_cache(tmp_path_factory)) as plat:
        assert httpx.get(plat.url + "/notes/v").json() == {"v": 1}
        out = run("delete", "notes", "--yes", "--server", plat.url)
        assert out.exit_code == 0 and httpx.get(plat.url + "/notes/v").status_code == 404


def test_cli_refuses_a_wrong_token(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SQUALL_ADMIN_TOKEN", "a-wrong-token-of-length")
    with RunningPlatform(tmp_path / "data", venv_cache(tmp_path_factory)) as plat:
        out = CliRunner().invoke(cli, ["apps", "--server", plat.url])
        assert out.exit_code == 2 and "valid admin token" in out.output
    monkeypatch.delenv("SQUALL_ADMIN_TOKEN")
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(cli, ["apps"])
    assert out.exit_code == 2 and "no admin token" in out.output


def test_sigterm_stops_the_server_gracefully(tmp_path):
    """uvicorn re-raises the SIGTERM it caught; the server must still run its shutdown
    (stop every version's stack) rather than die at that point."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SQUALL_ADMIN_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "squall.cli.main", "server", "--port", str(port),
         "--data-dir", str(tmp_path / "data")],
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, text=True)
    try:
        assert proc.stderr is not None
        for _ in range(50):  # bounded: the first lines are the start-up log
            line = proc.stderr.readline()
            if "platform listening" in line or not line:
                break
        assert "platform listening" in line
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=20)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "platform stopped" in rest
