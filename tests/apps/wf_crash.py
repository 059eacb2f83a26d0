"""A workflow for the crash test: each step counts its effect in a side database; step
"slow" waits for a release file, so the test can kill the server while it runs."""

import os
import sqlite3
import time
from pathlib import Path

from squall import App

app = App("wfcrash")


def effect(name: str) -> None:
    db = sqlite3.connect(os.environ["WF_EFFECTS"], timeout=30)
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS effects (step TEXT)")
        db.execute("INSERT INTO effects VALUES (?)", (name,))
    db.close()


@app.function()
def first(x):
    effect("first")
    return x + 1


@app.function(timeout_s=60)
def slow(x):
    effect("slow-started")
    release = Path(os.environ["WF_RELEASE"])
    while not release.exists():
        time.sleep(0.02)
    effect("slow")
    return x * 10


@app.function()
def last(x):
    effect("last")
    return x - 1


@app.workflow()
def pipeline(wf, x):
    a = wf.step("first", x)
    b = wf.step("slow", a)
    return wf.step("last", b)


@app.http("POST", "/start")
def start(request):
    return {"id": app.start_workflow("pipeline", request.json())}
