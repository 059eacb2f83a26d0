"""State machines with Map and Parallel states over slow functions, for the real-server
tests of concurrent and durable branches (tests/test_asl_fanout.py). Every call of
`work` counts itself in a side database (FANOUT_DB): how many run at this moment and the
most that ever ran at once, and an effect row per call; `held` waits for a release file
(FANOUT_RELEASE) for items >= 3, so a test can kill the server in the middle of a Map."""

import os
import sqlite3
import time
from pathlib import Path

from squall import App

app = App("smfanout")


def _db() -> sqlite3.Connection:
    db = sqlite3.connect(os.environ["FANOUT_DB"], timeout=30, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS gauge (k INTEGER PRIMARY KEY, cur INT, peak INT)")
    db.execute("CREATE TABLE IF NOT EXISTS effects (step TEXT, t REAL)")
    db.execute("INSERT OR IGNORE INTO gauge VALUES (0, 0, 0)")
    return db


def effect(step: str) -> None:
    db = _db()
    db.execute("INSERT INTO effects VALUES (?, ?)", (step, time.time()))
    db.close()


def _gauge(delta: int) -> None:
    db = _db()
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE gauge SET cur = cur + ?, peak = max(peak, cur + ?) WHERE k = 0",
               (delta, delta))
    db.execute("COMMIT")
    db.close()


@app.function(timeout_s=30)
def work(x):
    """Takes x["s"] seconds (0.2 by default); fails if x["fail"]."""
    _gauge(1)
    try:
        effect(f"work-{x['tag']}")
        if x.get("fail"):
            raise ValueError(f"item {x['tag']} is bad")
        time.sleep(x.get("s", 0.2))
        return x.get("n", 0) * x.get("n", 0)
    finally:
        _gauge(-1)


@app.function(timeout_s=60)
def held(x):
    effect(f"held-{x}-started")
    if x >= 3:
        release = Path(os.environ["FANOUT_RELEASE"])
        while not release.exists():
            time.sleep(0.02)
    effect(f"held-{x}")
    return x * 10


def _map(items_path: str, concurrency: int, params: dict, **extra) -> dict:
    return {"StartAt": "Each", "States": {"Each": {
        "Type": "Map", "ItemsPath": items_path, "MaxConcurrency": concurrency,
        "ItemSelector": params, "End": True, **extra,
        "ItemProcessor": {"StartAt": "Work", "States": {
            "Work": {"Type": "Task", "Resource": "work", "End": True}}}}}}


# 20 items, 5 at a time: ~4 rounds of 0.2 s, not 20
app.state_machine("fan", _map("$.items", 5, {"n.$": "$$.Map.Item.Value",
                                             "tag.$": "States.Format('{}', $$.Map.Item.Index)"}))

# the second item fails at once while the first takes 1 s, two at a time
app.state_machine("fanfail", _map("$.items", 2, {"tag.$": "$$.Map.Item.Value.tag",
                                                 "fail.$": "$$.Map.Item.Value.fail",
                                                 "s.$": "$$.Map.Item.Value.s"}))


def _branch(tag: str, n: int, then: str | None = None, **extra) -> dict:
    # (state names are unique in the whole machine: named after the branch)
    first = {"Type": "Task", "Resource": "work", "Parameters": {"tag": tag, "n": n, **extra}}
    states = {tag: {**first, "End": True} if then is None else {**first, "Next": then}}
    if then is not None:
        states[then] = {"Type": "Task", "Resource": "work", "Parameters": {"tag": then},
                        "End": True}
    return {"StartAt": tag, "States": states}


# three branches of 0.2 s each: together, not one after the other
app.state_machine("par", {"StartAt": "P", "States": {"P": {
    "Type": "Parallel", "End": True,
    "Branches": [_branch("p1", 1), _branch("p2", 2), _branch("p3", 3)]}}})

# a branch fails while another is in its first Task: the other never starts its second
app.state_machine("parfail", {"StartAt": "P", "States": {"P": {
    "Type": "Parallel", "End": True,
    "Branches": [_branch("slow", 1, then="after", s=1.0), _branch("bad", 2, fail=True)]}}})

# items 0-2 finish at once, 3-5 wait for the release file (killed meanwhile)
app.state_machine("heldmap", {"StartAt": "Each", "States": {"Each": {
    "Type": "Map", "End": True,
    "ItemProcessor": {"StartAt": "Held", "States": {
        "Held": {"Type": "Task", "Resource": "held", "End": True}}}}}})


@app.function(timeout_s=60)
def flaky(x):
    """Item 1 always fails; an attempt after the first ($$.State.RetryCount >= 1) waits
    for the release file before it counts itself, so a test can kill the server there."""
    i, n = x["i"], x["try"]
    if n >= 1:
        effect(f"flaky-{i}-waiting")
        release = Path(os.environ["FANOUT_RELEASE"])
        while not release.exists():
            time.sleep(0.02)
    effect(f"flaky-{i}-try{n}")
    if i == 1:
        raise RuntimeError(f"item {i} is not ready")
    return i * 10


# each item's Task retries twice (1 s apart), then is caught; killed between attempts
app.state_machine("retrymap", {"StartAt": "Each", "States": {"Each": {
    "Type": "Map", "End": True,
    "ItemProcessor": {"StartAt": "Try", "States": {
        "Try": {"Type": "Task", "Resource": "flaky", "Next": "Done",
                "Parameters": {"i.$": "$", "try.$": "$$.State.RetryCount"},
                "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1,
                           "MaxAttempts": 2, "BackoffRate": 1}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "GaveUp"}]},
        "Done": {"Type": "Pass", "End": True},
        "GaveUp": {"Type": "Pass", "Result": "gave-up", "End": True}}}}}})


@app.http("POST", "/invoke/{name}", timeout_s=60)
def invoke(request):
    try:
        return {"output": app.invoke(request.path_params["name"], request.json())}
    except Exception as exc:
        return {"error": getattr(exc, "payload", None) or str(exc)}
