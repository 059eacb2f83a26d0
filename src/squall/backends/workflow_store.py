"""The workflow store Protocol: executions, each with an ordered, append-only history.

Everything durable about a workflow or state-machine execution is here and nothing else:
an `Execution` row (name, kind, status, input, output, error) and its `HistoryEvent`s,
numbered 1, 2, 3, ... per execution without gaps. The engine above never updates a
history event; it appends, and may change the execution's status in the same
transaction (one durable write per step checkpoint). An inbox carries requests from
outside the engine's process (signals, cancels from the CLI) until the engine takes them.
A handoff is what an execution owes when it ends (an asynchronous invocation's
on-success / on-failure destinations, squall.workflows.handoff): kept beside the
history, not in it, so recording one never races the execution's own appends.

Python workflows (squall.workflows) and Amazon States Language executions (squall.asl)
share this store: `kind` tells them apart, event types are theirs to define.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

# statuses: running; then one of the final ones
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
TIMED_OUT = "timed_out"
NONDETERMINISTIC = "nondeterministic"  # the code no longer matches its history: stuck
COMPENSATED = "compensated"  # failed, and the saga's compensations ran
FINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, NONDETERMINISTIC, COMPENSATED})


class WorkflowStoreError(Exception):
    """The store failed (I/O, corruption); the message says which store and why."""


class HistoryConflict(WorkflowStoreError):
    """An append expected a history length that another writer changed first."""


class ExecutionExists(WorkflowStoreError):
    """`create` was given an execution id that is already taken."""


def handoffs_query(execution_id: str | None, limit: int, ended: bool, mark: str
                   ) -> tuple[str, list[Any]]:
    """The SELECT both stores run for `WorkflowStore.handoffs` (`mark`: the driver's
    parameter placeholder, "?" or "%s"): execution id and data, oldest first."""
    sql, where, args = "SELECT h.execution_id, h.data FROM wf_handoffs h", [], []
    if ended:
        sql += " JOIN wf_executions e ON e.id = h.execution_id"
        where.append(f"e.status <> {mark}")
        args.append(RUNNING)
    if execution_id is not None:
        where.append(f"h.execution_id = {mark}")
        args.append(execution_id)
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + f" ORDER BY h.id LIMIT {mark}", [*args, limit]


def plan_append(execution_id: str, found: tuple[int, str] | None,
                events: Sequence[tuple[str, dict[str, Any]]], expected_length: int | None,
                now: float, dumps: Callable[[Any], str]) -> tuple[int, list[tuple]]:
    """Check an append against the execution's stored (length, status), read under the
    write lock, and give the new length and the history rows to insert (execution id,
    seq, type, data, ts): the same rules on every backend. Raises WorkflowStoreError (no
    such execution; its history is closed) or HistoryConflict (another writer's)."""
    if found is None:
        raise WorkflowStoreError(f"no execution {execution_id!r}")
    length, current = found
    if expected_length is not None and length != expected_length:
        raise HistoryConflict(f"execution {execution_id!r}: history has {length} "
                              f"events, the writer expected {expected_length}")
    if current in FINAL and events:
        raise WorkflowStoreError(f"execution {execution_id!r} is {current}: its "
                                 "history is closed")
    rows = [(execution_id, length + i + 1, t, dumps(d), now) for i, (t, d) in enumerate(events)]
    return length + len(events), rows


@dataclass(frozen=True, slots=True)
class Execution:
    id: str
    name: str  # the workflow or state machine
    kind: str  # "workflow" | "state_machine"
    status: str
    input: Any
    output: Any = None
    error: dict[str, Any] | None = None
    parent: str | None = None  # the execution that started this one as a child
    created_at: float = 0.0
    updated_at: float = 0.0
    length: int = 0  # history events so far

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "kind": self.kind, "status": self.status,
                "input": self.input, "output": self.output, "error": self.error,
                "parent": self.parent, "created_at": self.created_at,
                "updated_at": self.updated_at, "length": self.length}


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    seq: int  # 1-based, gap-free within the execution
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "type": self.type, "data": self.data, "ts": self.ts}


@dataclass(frozen=True, slots=True)
class InboxItem:
    id: int
    execution_id: str
    kind: str  # "signal" | "cancel"
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Handoff:
    execution_id: str
    data: dict[str, Any]


class WorkflowStore(Protocol):
    def create(self, execution: Execution, events: Sequence[tuple[str, dict[str, Any]]]
               ) -> Execution:
        """Insert a new running execution with its first history events; raises
        ExecutionExists if the id is taken."""
        ...

    def get(self, execution_id: str) -> Execution | None: ...

    def history(self, execution_id: str, after: int = 0) -> list[HistoryEvent]:
        """Events with seq > after, in order."""
        ...

    def append(self, execution_id: str, events: Sequence[tuple[str, dict[str, Any]]], *,
               expected_length: int | None = None, status: str | None = None,
               output: Any = None, error: dict[str, Any] | None = None) -> int:
        """Append events (and optionally finish the execution) in one durable write;
        returns the new history length. With `expected_length`, raises HistoryConflict
        (writing nothing) if the history has another length."""
        ...

    def list(self, *, name: str | None = None, status: str | None = None,
             limit: int = 100) -> list[Execution]:
        """Newest first."""
        ...

    def post(self, execution_id: str, kind: str, data: dict[str, Any]) -> int:
        """Leave a request (signal, cancel) for the engine; returns its id."""
        ...

    def inbox(self, limit: int = 100) -> list[InboxItem]: ...

    def done(self, item_ids: Sequence[int]) -> None:
        """Remove inbox items the engine has handled."""
        ...

    def hand_off(self, execution_id: str, data: dict[str, Any]) -> None:
        """Record (or replace) what `execution_id` owes when it ends; durable on return."""
        ...

    def handoffs(self, execution_id: str | None = None, limit: int = 1000, *,
                 ended: bool = False) -> list[Handoff]:
        """The handoffs not dropped yet (of one execution, or all, oldest first); with
        `ended`, only those whose execution has a final status (what is due)."""
        ...

    def drop_handoff(self, execution_id: str) -> None:
        """Forget a handoff once it has been delivered (no error if there is none)."""
        ...

    def close(self) -> None: ...
