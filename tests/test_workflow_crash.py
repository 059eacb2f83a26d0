"""Acceptance: a workflow killed (kill -9 of `squall run`, with its zygote and workers)
in the middle of a step resumes after a restart without repeating the finished step."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
from servers import wait_until

APP = str(Path(__file__).parent / "apps" / "wf_crash.py")


def start(data: Path, env: dict, log: Path) -> tuple[subprocess.Popen, int]:
    mark = log.stat().st_size if log.exists() else 0
    with open(log, "a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "squall.cli.main", "run", APP, "--port", "0",
             "--data-dir", str(data)], stderr=out, stdout=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the "listening" log line carries the port
        for line in (log.read_text()[mark:] if log.exists() else "").splitlines():
            if '"msg": "listening"' in line:
                return proc, int(json.loads(line)["url"].rsplit(":", 1)[1])
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"squall run did not start:\n{log.read_text()[-2000:]}")


def effects(path: Path) -> list[str]:
    if not path.exists():
        return []
    c = sqlite3.connect(path, timeout=30)
    try:
        return [r[0] for r in c.execute("SELECT step FROM effects ORDER BY rowid")]
    except sqlite3.OperationalError:
        return []
    finally:
        c.close()


def execution(data: Path, eid: str) -> tuple[str, str | None]:
    c = sqlite3.connect(data / "workflows.db", timeout=30)
    try:
        row = c.execute("SELECT status, output FROM wf_executions WHERE id = ?", (eid,)).fetchone()
        return row if row else ("missing", None)
    finally:
        c.close()


def kill_tree(proc: subprocess.Popen) -> None:
    tree = [proc.pid] + [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(10)
    for pid in tree[1:]:
        try:
            psutil.Process(pid).wait(10)
        except psutil.NoSuchProcess:
            pass


def test_killed_workflow_resumes_without_repeating_finished_steps(tmp_path: Path) -> None:
    data, log, fx = tmp_path / "data", tmp_path / "server.log", tmp_path / "effects.db"
    release = tmp_path / "release"
    env = {**os.environ, "WF_EFFECTS": str(fx), "WF_RELEASE": str(release)}
    # Given a workflow whose first step finished and whose second step is running
    proc, port = start(data, env, log)
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/start", data=b"1",
                                     headers={"content-type": "application/json"})
        eid = json.loads(urllib.request.urlopen(req, timeout=30).read())["id"]
        wait_until(lambda: "slow-started" in effects(fx), 30, "the slow step to start")
        # When the server is killed with SIGKILL, and started again
        kill_tree(proc)
        assert execution(data, eid)[0] == "running"
        proc, port = start(data, env, log)
        release.touch()
        wait_until(lambda: execution(data, eid)[0] == "succeeded", 30, "the workflow to finish")
    finally:
        proc.kill()
        proc.wait(10)
    # Then the finished step ran once, the interrupted one again, and the output is right
    done = effects(fx)
    assert done.count("first") == 1
    assert done.count("slow") == 1 and done.count("slow-started") == 2
    assert done.count("last") == 1
    assert json.loads(execution(data, eid)[1]) == (1 + 1) * 10 - 1
    # and the CLI shows it
    out = subprocess.run([sys.executable, "-m", "squall.cli.main", "workflows", "show", APP,
                          eid, "--data-dir", str(data)], capture_output=True, text=True,
                         check=True, env=env)
    doc = json.loads(out.stdout)
    assert doc["status"] == "succeeded"
    assert [e["type"] for e in doc["history"]].count("StepCompleted") == 3
