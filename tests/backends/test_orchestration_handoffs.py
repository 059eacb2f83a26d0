"""Handoffs (the destinations an ended execution owes its asynchronous invoker) across
nodes sharing one workflow store: each node's takeover scan delivers what nobody did,
and exactly one node delivers each (squall.workflows.handoff). Two "nodes" are two
Handoffs, each with its own store connection and lease keeper, on one SQLite file pair
or one PostgreSQL schema, as two processes would be."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
from pg_fixtures import postgres_url, unique_schema

from squall.backends.sqlite.broker import SqliteBroker
from squall.backends.sqlite.workflows import SqliteWorkflowStore
from squall.backends.workflow_store import FAILED, SUCCEEDED, Execution
from squall.sources.leases import LeaseKeeper
from squall.testing.conformance import async_test
from squall.workflows.handoff import Handoffs

TTL_S = 0.3  # leases (and so the scan: every TTL_S / 3)


class Node:
    def __init__(self, name: str, store: Any, broker: Any) -> None:
        self.name, self.store, self.broker = name, store, broker
        self.leases = LeaseKeeper(broker, name, ttl_s=TTL_S)
        self.handoffs = Handoffs(store, leases=self.leases)
        self.handoffs.deliver = self.deliver
        self.handoffs.owns = lambda data: data.get("function") in ("wf", "sm")
        self.delivered: list[tuple[str, str]] = []  # (request id, status)
        self.arrived = asyncio.Event()

    async def deliver(self, data: dict[str, Any], outcome: dict[str, Any]) -> None:
        await asyncio.sleep(0)  # (a real delivery awaits its broker: let others run)
        self.delivered.append((data["request_id"], outcome["status"]))
        self.arrived.set()

    async def close(self) -> None:
        await self.handoffs.stop()
        await self.leases.release_all()
        self.store.close()
        await self.broker.close()


Opener = Callable[[str], Node]


def _sqlite(tmp: Path) -> Opener:
    return lambda name: Node(name, SqliteWorkflowStore(tmp / "workflows.db"),
                             SqliteBroker(tmp / "broker.db"))


@pytest.fixture(params=["sqlite", "postgres"])
def open_node(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        yield _sqlite(tmp_path)
        return
    from squall.backends.postgres.broker import PgBroker
    from squall.backends.postgres.workflows import PgWorkflowStore

    url = postgres_url()
    with unique_schema(url) as schema:
        yield lambda name: Node(name, PgWorkflowStore(f"{url}?schema={schema}"),
                                PgBroker(url, schema=schema))


def ended(store: Any, eid: str, status: str = SUCCEEDED, function: str = "wf") -> None:
    """An execution handed its destinations that ended on a node which then died, before
    it delivered them (nothing here calls `Handoffs.ended`)."""
    store.create(Execution(id=eid, name=function, kind="workflow", status="running",
                           input=None), [])
    store.hand_off(eid, {"function": function, "request_id": eid, "on_success": "queue:ok"})
    if status is not None:
        store.append(eid, [("WorkflowCompleted", {})], status=status,
                     output=1 if status == SUCCEEDED else None)


@asynccontextmanager
async def both(open_node: Opener) -> AsyncIterator[tuple[Node, Node]]:
    a, b = open_node("node-a"), open_node("node-b")
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


@async_test
async def test_concurrent_scans_deliver_each_handoff_once(open_node: Opener) -> None:
    async with both(open_node) as (a, b):
        # Given 20 ended executions whose node died before delivering their outcomes
        for i in range(20):
            ended(a.store, f"e{i}", SUCCEEDED if i % 2 else FAILED)
        # When both nodes scan at the same time, twice
        for _ in range(2):
            await asyncio.gather(a.handoffs.recover(), b.handoffs.recover())
        # Then each outcome went out exactly once, from one node or the other
        got = sorted(a.delivered + b.delivered)
        assert got == sorted((f"e{i}", SUCCEEDED if i % 2 else FAILED) for i in range(20))
        assert a.store.handoffs() == []


@async_test
async def test_the_takeover_scan_delivers_a_dead_node_s_handoffs(open_node: Opener) -> None:
    async with both(open_node) as (a, b):
        # Given node B scanning live, and executions that node A ended and then died
        # with: one this app's, one of a running execution, one of another app's
        b.handoffs.start_live()
        ended(a.store, "mine")
        ended(a.store, "running", status=None)
        ended(a.store, "theirs", function="other-app-fn")
        # When a lease interval passes, B's scan delivers this app's ended one, once
        await asyncio.wait_for(b.arrived.wait(), 10)
        assert b.delivered == [("mine", SUCCEEDED)]
        assert sorted(h.execution_id for h in b.store.handoffs()) == ["running", "theirs"]
        # and when the running one ends (its node gone too), the next scan has it
        b.arrived.clear()
        a.store.append("running", [("WorkflowCompleted", {})], status=SUCCEEDED)
        await asyncio.wait_for(b.arrived.wait(), 10)
        assert b.delivered == [("mine", SUCCEEDED), ("running", SUCCEEDED)]
        assert [h.execution_id for h in b.store.handoffs()] == ["theirs"]


@async_test
async def test_a_node_delivering_holds_off_the_others(open_node: Opener) -> None:
    async with both(open_node) as (a, b):
        ended(a.store, "e1")
        # Given node A delivering e1 (it holds e1's handoff lease)
        assert await a.leases.acquire("handoff:e1")
        # When node B's scan finds the same handoff meanwhile, B leaves it
        assert await b.handoffs.settle("e1") is False and b.delivered == []
        # and once A is done with it (here A's delivery failed: it let go), B delivers
        await a.leases.release("handoff:e1")
        assert await b.handoffs.recover() == 1
        assert b.delivered == [("e1", SUCCEEDED)] and b.store.handoffs() == []
