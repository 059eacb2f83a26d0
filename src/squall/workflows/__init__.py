"""Durable Python workflows (see docs/workflows.md).

    context.py  the `wf` object and deterministic replay (pure, runs in workers)
    engine.py   the engine in the supervisor: drives executions from their history
    steps.py    running steps (retries, recorded attempts) and sagas: an engine mixin
    machines.py durable state-machine (ASL) executions: checkpoints, recovery, and
                the timers of parked ones (long Waits and Retry back-offs)
    timers.py   the durable-timer loop both fire due timers with
    retry.py    the Step Functions-shaped step retry policy
    declare.py  `@app.workflow` and `@app.step` (an App mixin: records only)
    wiring.py   the stores, the engine and the services of a running app
"""

from .context import Pending, SignalTimeout, StepFailed, WorkflowContext
from .engine import WorkflowEngine, WorkflowFailed
from .retry import StepRetry

__all__ = ["Pending", "SignalTimeout", "StepFailed", "StepRetry", "WorkflowContext",
           "WorkflowEngine", "WorkflowFailed"]
