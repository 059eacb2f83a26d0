"""The workflow crash-resume scenario's app: a workflow of five steps, each applying its
effect through the idempotency helper (keyed by execution and step) and recording it in
the side ledger (chaos_effects.py), as app.py does for messages."""

import time

from chaos_effects import done, effect

from squall import App
from squall.workflows.retry import StepRetry

app = App("chaoswf")
STEPS = 5


@app.idempotent(key="n", expires_s=24 * 3600, lock_s=2)
def apply_effect(n: int) -> int:
    time.sleep(0.01)  # the step's work: long enough for a kill to land inside it
    effect(n)
    return n


# a step whose worker was killed failed with Runtime.ExitError (or, retried while the dead
# run's claim holds, IdempotencyInProgress): the step's retry policy runs it again
@app.step(retry=StepRetry(interval_s=0.2, max_attempts=8, backoff_rate=1.5), timeout_s=5)
def step(x):
    n = x["wf"] * 10 + x["step"]  # one effect per (workflow, step)
    apply_effect(n)
    done(n)
    return x["acc"] + [x["step"]]


@app.workflow()
def five_steps(wf, i):
    acc = []
    for s in range(1, STEPS + 1):
        acc = step({"wf": i, "step": s, "acc": acc})
    return acc


@app.http("POST", "/start", timeout_s=60)
def start(request):
    body = request.json()
    ids = [app.start_workflow("five_steps", i, id=f"wf-{i}")
           for i in range(body["start"], body["start"] + body["n"])]
    return 202, {"ids": ids}
