"""Wire workflows and the event store into a running app (the supervisor, the test
harness): open the stores, build the engine and the event-store service, and register
the "workflow" and "eventstore" services workers call. Kept here so the shared wiring
files (server.py, testing/__init__.py) need only a line or two each.

With a postgresql:// store URL (the distributed mode) both stores are the PostgreSQL ones
on that database and schema, shared by every node: the engine then takes a lease per
execution (`wf:<id>`) before it advances one, and each event consumer runs on the node
that holds `eventstore:<function>`. Otherwise they are SQLite files under the data dir.

`attach_messaging` lets the app's asynchronous invocations hand over to executions
(squall.workflows.handoff): an async invocation of a workflow starts its execution and
is done; one of a state machine is done when the execution parks; their destinations
get the final outcome when the execution ends (on another node, if this one dies first:
each node's handoff scan delivers what nobody did, every lease interval).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

from ..backends.sqlite.eventstore import SqliteEventStore
from ..backends.sqlite.workflows import SqliteWorkflowStore
from ..eventstore.service import EventStoreService
from ..runtime import parked
from .engine import WorkflowEngine
from .handoff import Handoffs
from .machines import MachineExecutions


class Orchestration:
    """The engine and the event-store service of one running app."""

    def __init__(self, data_dir: str | Path, invoke: Callable[..., Any], manifest: dict[str, Any],
                 *, clock: Callable[[], float] | None = None, synchronous: str = "FULL",
                 max_parallel: int = 8, leases: Any = None, sleep: Any = None,
                 store_url: str | None = None) -> None:
        import time

        clock = clock or time.time
        self.shared = bool(store_url) and store_url.split(":", 1)[0] in (
            "postgresql", "postgres")
        self.workflow_store: Any
        self.event_store: Any
        if self.shared:
            from ..backends.postgres.eventstore import PgEventStore
            from ..backends.postgres.workflows import PgWorkflowStore

            self.workflow_store = PgWorkflowStore(store_url, clock=clock)
            self.event_store = PgEventStore(store_url, clock=clock)
        else:
            d = Path(data_dir)
            self.workflow_store = SqliteWorkflowStore(d / "workflows.db", clock=clock,
                                                      synchronous=synchronous)
            self.event_store = SqliteEventStore(d / "events.db", clock=clock,
                                                synchronous=synchronous)
        self.engine = WorkflowEngine(
            self.workflow_store, invoke, clock=clock, max_parallel=max_parallel,
            sleep=sleep or asyncio.sleep, leases=leases if self.shared else None,
            workflows={w["name"]: w for w in manifest.get("workflows", [])})
        self.machines = MachineExecutions(  # durable ASL executions
            self.workflow_store, invoke, leases=leases if self.shared else None, clock=clock)
        self.events = EventStoreService(self.event_store, invoke, leases=leases)
        self.events.configure(manifest)
        self.handoffs = Handoffs(  # async invocations' destinations
            self.workflow_store, leases=leases if self.shared else None)
        self.engine.on_final = self.machines.on_final = self.handoffs.ended
        self.messaging: Any = None  # squall.sources.messaging.Messaging, once attached

    def reconfigure(self, manifest: dict[str, Any]) -> None:
        self.engine.configure({w["name"]: w for w in manifest.get("workflows", [])})
        self.events.configure(manifest)

    def services(self) -> dict[str, Callable[[Any], Any]]:
        return {"workflow": self.engine.serve, "eventstore": self.events.serve,
                "state_machine": self.machines.serve,
                parked.SERVICE: self.machines.outcome}  # (awaited by the invoker itself)

    # -- asynchronous invocations (squall.sources.messaging calls these) ------------------

    def attach_messaging(self, messaging: Any) -> None:
        """Async invocations of workflows start executions here, parked ones are handed
        over, and ended executions' destinations are delivered through `messaging`."""
        self.messaging = messaging
        messaging.durable = self
        self.handoffs.deliver = messaging.deliver_handoff
        # (a shared store may hold other apps' handoffs: only this app's functions')
        self.handoffs.owns = lambda data: data.get("function") in messaging.configs

    async def start_async(self, function: str, body: str, execution_id: str,
                          trace: str | None, handoff: dict[str, Any] | None) -> str | None:
        """An async invocation of workflow `function`: start its execution (or find the
        one with this id: a redelivery) and hand it the destinations; its id. None when
        `function` is not a workflow (it runs as a function)."""
        import json

        if function not in self.engine.workflows:
            return None
        ex = await self.engine.start(function, json.loads(body) if body else None,
                                     id=execution_id, trace=trace)
        if handoff is not None:
            await self.handoffs.hold(ex.id, handoff)
        return ex.id

    async def hand_off(self, execution_id: str, handoff: dict[str, Any]) -> None:
        """A state machine's async invocation parked: its execution owes the rest."""
        await self.handoffs.hold(execution_id, handoff)

    def route_invoke_async(self, invoke_async: Callable[..., Any]) -> Callable[..., Any]:
        """`app.invoke_async(workflow, …)` starts an execution (its id is the answer);
        through the attached messaging (and its destinations) once there is one."""
        engine = self.engine

        async def routed(payload: Any) -> Any:
            function, body, *rest = payload
            if function in engine.workflows and self.messaging is None:
                import json

                return (await engine.start(function, json.loads(body) if body else None,
                                           trace=rest[0] if rest else None)).id
            return await invoke_async(payload)

        return routed

    async def start(self, live: bool = True) -> None:
        if live:
            await self.engine.start_live()
            await self.events.start()
        else:
            await self.engine.recover()
        await self.handoffs.recover()  # outcomes that ended while nobody could deliver
        if live:
            self.handoffs.start_live()  # (several nodes: and a dead node's, as they come)
        if self.shared and self.machines.leases is None:
            return  # several nodes without leases: resuming could double-drive
        if live:
            await self.machines.start_live()
        else:
            await self.machines.recover()

    async def stop(self) -> None:
        await self.events.stop()
        await self.machines.stop()
        await self.engine.stop()
        await self.handoffs.stop()

    def close(self) -> None:
        self.workflow_store.close()
        self.event_store.close()

    # -- the test harness ----------------------------------------------------------------

    def attach_local(self, services: dict[str, Any], run: Callable[[Any], Any]) -> None:
        """In-process services are sync callables; `run(coro)` runs one on the loop."""
        import json

        for name, fn in self.services().items():
            services[name] = fn if name == parked.SERVICE else lambda p, fn=fn: run(fn(p))
        engine, plain = self.engine, services.get("invoke_async")

        def invoke_async(function: str, body: str, trace: Any = None) -> Any:
            if function in engine.workflows and self.messaging is None:
                return run(engine.start(function, json.loads(body) if body else None)).id
            assert plain is not None
            return plain(function, body, trace)

        services["invoke_async"] = invoke_async

    def attach_runtime(self, services: dict[str, Any]) -> None:
        """A Runtime's services are async callables taking the payload."""
        services.update(self.services())
        if "invoke_async" in services:
            services["invoke_async"] = self.route_invoke_async(services["invoke_async"])

    async def drain(self) -> int:
        """Event consumers up to the head; workflows until they wait on time or signals;
        the durable timers due by the clock fired (parked state machines resumed,
        workflows' `wf.sleep` and signal timeouts); how many timers fired plus how many
        outcomes were delivered to asynchronous invokers' destinations (a delivery may
        have queued a message: the caller's next round runs it). Each timer fires once:
        a round after time stood still fires none (TestClient.drain stops then)."""
        delivered = self.handoffs.delivered
        fired = await self.machines.fire_due()
        fired += await self.engine.fire_due()
        await self.machines.idle()
        await self.engine.idle()
        await self.events.drain()
        await self.engine.idle()
        await self.handoffs.idle()
        return fired + self.handoffs.delivered - delivered
