"""State machines whose Waits outlast their 1 s timeout, for the real-server tests of
durable Waits (tests/test_asl_crash.py). Each Task counts its effect, with the
time it ran, in a side database; "flaky" fails every attempt of its Task."""

import os
import sqlite3
import time

from squall import App

app = App("smwait")


@app.function()
def mark(x):
    db = sqlite3.connect(os.environ["WF_EFFECTS"], timeout=30)
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS effects (step TEXT, t REAL)")
        db.execute("INSERT INTO effects VALUES (?, ?)", (x["step"], time.time()))
    db.close()
    return x["n"] + 1


def machine(seconds: int) -> dict:
    return {"StartAt": "Before", "States": {
        "Before": {"Type": "Task", "Resource": "mark", "Next": "Pause",
                   "Parameters": {"step.$": "States.Format('{}-before', $.name)",
                                  "n.$": "$.n"}, "ResultPath": "$.n"},
        "Pause": {"Type": "Wait", "Seconds": seconds, "Next": "After"},
        "After": {"Type": "Task", "Resource": "mark", "End": True,
                  "Parameters": {"step.$": "States.Format('{}-after', $.name)",
                                 "n.$": "$.n"}}}}


app.state_machine("nap", machine(2), timeout_s=1)     # a Wait twice its timeout
app.state_machine("sleep", machine(6), timeout_s=1)   # killed and restarted during it


@app.function()
def fails(x):
    mark({"step": "flaky-attempt", "n": 0})
    raise RuntimeError("not yet")


# every attempt fails; 2 retries 2 s apart (durable timers), killed between attempts
app.state_machine("flaky", {"StartAt": "T", "States": {
    "T": {"Type": "Task", "Resource": "fails", "Next": "Caught",
          "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "MaxAttempts": 2,
                     "BackoffRate": 1}],
          "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]},
    "Caught": {"Type": "Pass", "Result": "caught", "End": True}}}, timeout_s=1)


@app.http("POST", "/invoke/{name}", timeout_s=60)
def invoke(request):
    return {"output": app.invoke(request.path_params["name"], request.json())}
