"""The event store in the supervisor: the "eventstore" service workers call, and the
consumers (subscriptions and projections) that follow the global order.

A consumer reads `read_all(after=checkpoint)`, invokes its function with a batch and,
when it succeeds, moves its checkpoint: for a subscription after the call (at-least-
once), for a projection in the same transaction as the rows the function returned
(exactly once per event). Consumers run live (woken by appends made through this
service, and every `poll_s` for appends made elsewhere) or, in tests, by `drain()`.
With `leases` (several nodes on one store) each consumer runs on the node holding the
lease `eventstore:<function>`, from the checkpoint in the shared store.

A projection has versions: rows live in table "NAME@vN", checkpoint "projection:NAME@vN".
`rebuild` starts version N+1 from position 0; queries keep reading version N until N+1
has caught up with the head, then the active version switches and N's rows are dropped.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Awaitable, Callable

from ..backends.event_store import EventStore, NewEvent
from ..aiocompat import wait_for
from ..observe import logs


class EventStoreService:
    def __init__(self, store: EventStore, invoke: Callable[..., Awaitable[Any]], *,
                 poll_s: float = 1.0, leases: Any = None) -> None:
        self.store = store
        self.invoke = invoke
        self.poll_s = poll_s
        self.leases = leases  # squall.sources.leases.LeaseKeeper: one node runs consumers
        self.consumers: dict[str, dict[str, Any]] = {}
        self._appended = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def configure(self, manifest: dict[str, Any]) -> None:
        self.consumers = {c["function"]: c for c in manifest.get("event_consumers", [])}
        for c in self.consumers.values():
            if c["kind"] == "projection" and self._meta(c["projection"]) is None:
                self.store.set_meta(f"projection:{c['projection']}",
                                    {"active": 1, "building": None})

    # -- the service ---------------------------------------------------------------------

    async def serve(self, payload: list[Any]) -> Any:
        op, *a = payload
        s = self.store
        if op in ("append", "append_many"):
            batch = [(a[0], a[1], a[2])] if op == "append" else a[0]
            # off the loop: concurrent appends meet in the store's group commit (one
            # transaction, one fsync for all of them)
            out = await asyncio.to_thread(s.append_many, [
                (st, [NewEvent(**e) for e in evs], x) for st, evs, x in batch])
            self._appended.set()
            return [e.to_dict() for e in out]
        if op == "read_stream":
            return [e.to_dict() for e in s.read_stream(a[0], after_version=a[1],
                                                       to_version=a[2], until=a[3])]
        if op == "read_all":
            return [e.to_dict() for e in s.read_all(a[0], a[1])]
        if op == "version":
            return s.stream_version(a[0])
        if op == "save_snapshot":
            s.save_snapshot(a[0], a[1], a[2])
            return None
        if op == "load_snapshot":
            snap = s.load_snapshot(a[0], max_version=a[1], until=a[2])
            return None if snap is None else {"version": snap.version, "state": snap.state}
        if op == "row_get":
            return s.row_get(self.table(a[0]), a[1])
        if op == "row_get_table":
            return s.row_get(a[0], a[1])
        if op == "row_query":
            return s.row_query(self.table(a[0]), a[1], a[2])
        if op == "rebuild":
            return self.rebuild(a[0])
        if op == "projection_status":
            return self.status(a[0])
        raise ValueError(f"unknown event store operation {op!r}")

    # -- projections ---------------------------------------------------------------------

    def _meta(self, projection: str) -> dict[str, Any] | None:
        return self.store.get_meta(f"projection:{projection}")

    def _projection(self, projection: str) -> dict[str, Any]:
        for c in self.consumers.values():
            if c.get("projection") == projection:
                return c
        names = sorted(c["projection"] for c in self.consumers.values()
                       if c["kind"] == "projection")
        raise LookupError(f"no projection {projection!r} in this app; declared: "
                          f"{', '.join(names) or 'none'}")

    def table(self, projection: str) -> str:
        self._projection(projection)
        meta = self._meta(projection) or {"active": 1}
        return f"{projection}@v{meta['active']}"

    def rebuild(self, projection: str) -> int:
        self._projection(projection)
        meta = self._meta(projection) or {"active": 1, "building": None}
        if meta.get("building"):
            return meta["building"]
        new = max(meta["active"], meta.get("last", 0)) + 1
        self.store.drop_rows(f"{projection}@v{new}")
        self.store.set_checkpoint(f"projection:{projection}@v{new}", 0)
        self.store.set_meta(f"projection:{projection}", {**meta, "building": new, "last": new})
        logs.event("projection rebuild started", projection=projection, version=new)
        self._appended.set()
        return new

    def status(self, projection: str) -> dict[str, Any]:
        self._projection(projection)
        meta = self._meta(projection) or {"active": 1, "building": None}
        out = {"projection": projection, "active": meta["active"],
               "building": meta.get("building"), "head": self.store.head()}
        for key in ("active", "building"):
            if meta.get(key):
                out[f"{key}_checkpoint"] = self.store.get_checkpoint(
                    f"projection:{projection}@v{meta[key]}")
        return out

    # -- consuming -----------------------------------------------------------------------

    def _targets(self, only: set[str] | None = None
                 ) -> list[tuple[str, dict[str, Any], str, str | None]]:
        """(function, spec, checkpoint name, table) for everything to keep up to date
        (of the consumer functions in `only`, if given)."""
        out = []
        for fname, c in self.consumers.items():
            if only is not None and fname not in only:
                continue
            if c["kind"] == "subscription":
                out.append((fname, c, f"subscription:{fname}", None))
                continue
            meta = self._meta(c["projection"]) or {"active": 1}
            for key in ("active", "building"):
                v = meta.get(key)
                if v:
                    t = f"{c['projection']}@v{v}"
                    out.append((fname, c, f"projection:{t}", t))
        return out

    async def drain(self, only: set[str] | None = None) -> dict[str, int]:
        """Bring every consumer (in `only`) up to the head (a failing one stops where it
        failed)."""
        counts = {"batches": 0, "events": 0, "failed": 0}
        while True:
            progressed = False
            for fname, spec, cp, table in self._targets(only):
                n = await self._step(fname, spec, cp, table)
                if n is None:
                    counts["failed"] += 1
                elif n:
                    counts["batches"] += 1
                    counts["events"] += n
                    progressed = True
            self._switch_caught_up(only)
            if not progressed:
                return counts

    async def _step(self, fname: str, spec: dict[str, Any], cp: str,
                    table: str | None) -> int | None:
        """One batch; the number of events it covered (0: caught up; None: failed)."""
        after = self.store.get_checkpoint(cp)
        batch = self.store.read_all(after, spec["batch_size"])
        if not batch:
            return 0
        last = batch[-1].position
        types = set(spec.get("types") or ())
        events = [e.to_dict() for e in batch if not types or e.type in types]
        if not events:
            if table is None:
                self.store.set_checkpoint(cp, last)
            else:
                self.store.apply(table, {}, [], cp, last)
            return len(batch)
        payload: dict[str, Any] = {"events": events}
        if table is not None:
            payload["table"] = table
        result = await self.invoke(fname, "event", json.dumps(payload),
                                   request_id=str(uuid.uuid4()))
        if not result.ok:
            logs.event("event consumer failed; it will retry from its checkpoint",
                       function=fname, checkpoint=after,
                       error=f"{result.error_type}: {result.error_message}")
            return None
        if table is None:
            self.store.set_checkpoint(cp, last)
        else:
            out = result.output or {}
            self.store.apply(table, out.get("puts") or {}, out.get("deletes") or [], cp, last)
        return len(batch)

    def _switch_caught_up(self, only: set[str] | None = None) -> None:
        head = self.store.head()
        for fname, c in self.consumers.items():
            if c["kind"] != "projection" or (only is not None and fname not in only):
                continue
            name = c["projection"]
            meta = self._meta(name) or {}
            new = meta.get("building")
            if new and self.store.get_checkpoint(f"projection:{name}@v{new}") >= head:
                old = meta["active"]
                self.store.set_meta(f"projection:{name}", {**meta, "active": new,
                                                           "building": None})
                self.store.drop_rows(f"{name}@v{old}")
                logs.event("projection rebuilt", projection=name, version=new, head=head)

    # -- live ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self.consumers:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            # a flag as well as cancel(): Python 3.11's wait_for can swallow a cancellation
            # that arrives as the awaited invocation completes
            self._stopping = True
            self._appended.set()
            self._task.cancel()
            try:
                await self._task
            except BaseException:
                pass
            self._task = None

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            self._appended.clear()
            if self.leases is None:
                counts = await self.drain()
            else:  # one node per consumer; the others wait for its lease to come free
                held = {f for f in list(self.consumers)
                        if await self.leases.acquire(f"eventstore:{f}")}
                counts = await self.drain(held) if held else {"failed": 0}
            failures = failures + 1 if counts["failed"] else 0
            delay = self.poll_s if not failures else min(self.poll_s * 2 ** failures, 60.0)
            try:
                await wait_for(self._appended.wait(), delay)
            except asyncio.TimeoutError:
                pass
