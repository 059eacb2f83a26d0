"""Helpers of the kill -9 tests: start `squall run APP` on a free port, kill its whole
process tree with SIGKILL, read the effects a test app counted in a side database."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil

# the `squall` command as installed (its entry point), on this interpreter
SQUALL = [sys.executable, "-c", "from squall.cli.main import main; main()"]


def start(app: str, data: Path, env: dict, log: Path) -> tuple[subprocess.Popen, int]:
    mark = log.stat().st_size if log.exists() else 0
    with open(log, "a") as out:
        proc = subprocess.Popen(
            [*SQUALL, "run", app, "--port", "0",
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
