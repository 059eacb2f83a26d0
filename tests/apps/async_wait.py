"""Asynchronous invocations of executions that wait longer than their worker's timeout,
for the kill -9 test of tests/test_async_long_wait.py: their destinations are queues
whose consumer counts each record, with its request id, in a side database."""

import os
import sqlite3

from squall import App

app = App("asyncwait")
DESTINATIONS = {"on_success": "queue:done", "on_failure": "queue:failed", "timeout_s": 1}


@app.function()
def inc(x):
    return x + 1


@app.function()
def boom(x):
    raise RuntimeError(f"boom {x}")


def wait_then(task: str) -> dict:
    return {"StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": 3, "Next": "T"},
        "T": {"Type": "Task", "Resource": task, "End": True}}}


app.state_machine("nap", wait_then("inc"), **DESTINATIONS)
app.state_machine("doomed", wait_then("boom"), **DESTINATIONS)


@app.workflow(**DESTINATIONS)
def doze(wf, x):
    wf.sleep(3)
    return wf.step("inc", x)


def record(kind: str, batch) -> None:
    db = sqlite3.connect(os.environ["WF_EFFECTS"], timeout=30)
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS got (kind TEXT, rid TEXT)")
        db.executemany("INSERT INTO got VALUES (?, ?)",
                       [(kind, m.data["requestContext"]["requestId"]) for m in batch])
    db.close()


@app.queue("done")
def done(batch, ctx):
    record("done", batch)


@app.queue("failed")
def failed(batch, ctx):
    record("failed", batch)


@app.http("POST", "/async/{name}")
def start(request):
    return {"id": app.invoke_async(request.path_params["name"], request.json())}
