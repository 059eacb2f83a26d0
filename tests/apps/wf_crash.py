"""A workflow and a state machine for the crash test: each step counts its effect in a
side database; step "slow" waits for a release file, so the test can kill the server
while it runs. The workflow passes numbers, the state machine {"n": number} (its effects
are counted as "sm-…")."""

import os
import sqlite3
import time
from pathlib import Path

from squall import App

app = App("wfcrash")


def effect(name: str, x) -> None:
    db = sqlite3.connect(os.environ["WF_EFFECTS"], timeout=30)
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS effects (step TEXT)")
        db.execute("INSERT INTO effects VALUES (?)",
                   (("sm-" if isinstance(x, dict) else "") + name,))
    db.close()


def apply(x, fn):
    return {"n": fn(x["n"])} if isinstance(x, dict) else fn(x)


@app.function()
def first(x):
    effect("first", x)
    return apply(x, lambda n: n + 1)


@app.function(timeout_s=60)
def slow(x):
    effect("slow-started", x)
    release = Path(os.environ["WF_RELEASE"])
    while not release.exists():
        time.sleep(0.02)
    effect("slow", x)
    return apply(x, lambda n: n * 10)


@app.function()
def last(x):
    effect("last", x)
    return apply(x, lambda n: n - 1)


@app.workflow()
def pipeline(wf, x):
    a = wf.step("first", x)
    b = wf.step("slow", a)
    return wf.step("last", b)


app.state_machine("orders", {
    "StartAt": "First",
    "States": {
        "First": {"Type": "Task", "Resource": "first", "Next": "Slow"},
        "Slow": {"Type": "Task", "Resource": "slow", "Next": "Pause"},
        "Pause": {"Type": "Wait", "Seconds": 0, "Next": "Last"},
        "Last": {"Type": "Task", "Resource": "last", "End": True},
    },
})


@app.http("POST", "/start")
def start(request):
    return {"id": app.start_workflow("pipeline", request.json())}


@app.http("POST", "/start-sm", timeout_s=60)
def start_sm(request):
    return app.invoke("orders", request.json())  # the caller dies with the server
