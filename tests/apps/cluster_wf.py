"""The distributed workflows test's app: a three-step workflow whose steps count their
effects in a side database (EFFECTS_DB, shared by the nodes on this machine); step
"slow" waits for a release file, so the test can kill a node while it runs. A state
machine over the same steps. An event store with a projection that counts its runs
there too."""

import os
import sqlite3
import time
from pathlib import Path

from squall import App

app = App("clusterwf")
notes = app.event_store()


def effect(what: str) -> None:
    db = sqlite3.connect(os.environ["EFFECTS_DB"], timeout=30)
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS effects (what TEXT, node TEXT)")
        db.execute("INSERT INTO effects VALUES (?, ?)",
                   (what, os.environ.get("SQUALL_NODE_ID", "")))
    db.close()


@app.function()
def first(x):
    effect(f"first:{x}")
    return x


@app.function(timeout_s=60)
def slow(x):
    effect(f"slow-started:{x}")
    release = Path(os.environ["RELEASE_FILE"])
    while not release.exists():
        time.sleep(0.02)
    effect(f"slow:{x}")
    return x


@app.function()
def last(x):
    effect(f"last:{x}")
    return x


@app.workflow()
def pipeline(wf, x):
    return wf.step("last", wf.step("slow", wf.step("first", x)))


@app.workflow()
def gate(wf, x):
    """A timer, then a signal (sent through the node that does not drive it)."""
    wf.sleep(0.2)
    return wf.step("last", f"{x}-{wf.wait_for_signal('go')}")


app.state_machine("pipeline_sm", {"StartAt": "First", "States": {
    "First": {"Type": "Task", "Resource": "first", "Next": "Slow"},
    "Slow": {"Type": "Task", "Resource": "slow", "Next": "Last"},
    "Last": {"Type": "Task", "Resource": "last", "End": True}}})


@app.projection("notes", types=["Noted"])
def project(view, event):
    effect(f"projected:{event.data['key']}")
    view.put(event.data["key"], {"text": event.data["text"], "node": event.metadata.get("node")})


@app.http("POST", "/workflows")
def start(request):
    return {"id": app.start_workflow("pipeline", request.json()["x"])}


@app.http("POST", "/machines", timeout_s=60)
def run_machine(request):
    return {"output": app.invoke("pipeline_sm", request.json()["x"])}


@app.http("POST", "/gates")
def start_gate(request):
    return {"id": app.start_workflow("gate", request.json()["x"])}


@app.http("POST", "/signals/{id}")
def signal(request):
    app.signal(request.path_params["id"], "go", request.json()["data"])
    return {"sent": True}


@app.http("POST", "/notes")
def note(request):
    body = request.json()
    (e,) = notes.append(f"note-{body['key']}", [("Noted", body)])
    return {"position": e.position}


@app.http("GET", "/notes/{key}")
def read_note(request):
    row = app.read_model("notes").get(request.path_params["key"])
    return {"note": row}
