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

from typing import Any

from .context import Pending, SignalTimeout, StepFailed, WorkflowContext
from .retry import StepRetry


def __getattr__(name: str) -> Any:
    """The engine on first use: `@app.workflow` (workflows.declare, imported by every
    App) needs only the context, and the engine pulls in asyncio, the workflow store and
    the ASL machines, which a CLI command or an app without workflows never uses."""
    if name in ("WorkflowEngine", "WorkflowFailed"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Pending", "SignalTimeout", "StepFailed", "StepRetry", "WorkflowContext",
           "WorkflowEngine", "WorkflowFailed"]
