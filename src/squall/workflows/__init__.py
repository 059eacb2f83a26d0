"""Durable Python workflows (see docs/workflows.md).

    context.py  the `wf` object and deterministic replay (pure, runs in workers)
    engine.py   the engine in the supervisor: drives executions from their history
    retry.py    the Step Functions-shaped step retry policy
    declare.py  `@app.workflow` (an App mixin: records only)
"""

from .context import Pending, SignalTimeout, StepFailed, WorkflowContext
from .engine import WorkflowEngine, WorkflowFailed
from .retry import StepRetry

__all__ = ["Pending", "SignalTimeout", "StepFailed", "StepRetry", "WorkflowContext",
           "WorkflowEngine", "WorkflowFailed"]
