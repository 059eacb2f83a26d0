"""Event store declarations and handles: a mixin of App. Decorators only record; the
handles send each operation to the "eventstore" service of whatever runs the app.

    ledger = app.event_store()
    ledger.append("account-1", [("Deposited", {"amount": 5})], expected_version=3)

    @app.projection("balances", types=["Deposited", "Withdrew"])
    def balances(view, event): view.put(event.stream, ...)

    app.read_model("balances").get("account-1")      # the query side
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Iterable, Sequence

from ..backends.event_store import ConcurrencyError, NewEvent, RecordedEvent
from ..config import ConfigError
from ..workflows.declare import call_service


def _es(app: Any, payload: list[Any]) -> Any:
    try:
        return call_service(app, "eventstore", payload)
    except ConcurrencyError:
        raise
    except Exception as exc:
        etype = getattr(exc, "payload", {}).get("errorType") if hasattr(exc, "payload") else None
        if etype == "ConcurrencyError" or type(exc).__name__ == "ConcurrencyError":
            raise ConcurrencyError("", 0, 0, getattr(exc, "payload", {}).get(
                "errorMessage") or str(exc)) from None
        raise


def _new_event(app: Any, e: Any) -> dict[str, Any]:
    if isinstance(e, NewEvent):
        ne = e
    elif isinstance(e, tuple):
        ne = NewEvent(e[0], e[1] if len(e) > 1 else None, {}, 0)
    elif isinstance(e, dict):
        ne = NewEvent(e["type"], e.get("data"), dict(e.get("metadata") or {}),
                      e.get("schema_version", 0) or 0)
    else:
        raise TypeError(f"an event is a (type, data) tuple, a dict or a NewEvent, got {e!r}")
    version = ne.schema_version or app.event_schema_version(ne.type)
    return {"type": ne.type, "data": ne.data, "metadata": ne.metadata,
            "schema_version": version}


class EventStoreHandle:
    """The app's event store, from app code."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def append(self, stream: str, events: Iterable[Any],
               expected_version: int | None = None) -> list[RecordedEvent]:
        """Append to `stream` if it is at `expected_version` (None: any; 0: new stream),
        else ConcurrencyError and nothing is written."""
        out = _es(self.app, ["append", stream, [_new_event(self.app, e) for e in events],
                             expected_version])
        return [RecordedEvent.from_dict(d) for d in out]

    def append_many(self, batch: Sequence[tuple[str, Iterable[Any], int | None]]
                    ) -> list[RecordedEvent]:
        """Several streams, one transaction: all or nothing."""
        out = _es(self.app, ["append_many", [[s, [_new_event(self.app, e) for e in evs], x]
                                             for s, evs, x in batch]])
        return [RecordedEvent.from_dict(d) for d in out]

    def read(self, stream: str, *, after_version: int = 0, to_version: int | None = None,
             until: float | None = None) -> list[RecordedEvent]:
        out = _es(self.app, ["read_stream", stream, after_version, to_version, until])
        return [self.app.upcast(RecordedEvent.from_dict(d)) for d in out]

    def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        return [self.app.upcast(RecordedEvent.from_dict(d))
                for d in _es(self.app, ["read_all", after, limit])]

    def version(self, stream: str) -> int:
        return _es(self.app, ["version", stream])

    def snapshot(self, stream: str, version: int, state: Any) -> None:
        _es(self.app, ["save_snapshot", stream, version, state])

    def load(self, stream: str, apply: Callable[[Any, RecordedEvent], Any], initial: Any = None,
             *, version: int | None = None, at: float | None = None,
             use_snapshot: bool = True) -> tuple[Any, int]:
        """Fold `apply(state, event)` over the stream from `initial` (or the latest
        snapshot), up to `version` or as of time `at`: (state, version reached)."""
        state, v = initial, 0
        if use_snapshot:
            snap = _es(self.app, ["load_snapshot", stream, version, at])
            if snap is not None:
                state, v = snap["state"], snap["version"]
        for e in self.read(stream, after_version=v, to_version=version, until=at):
            state, v = apply(state, e), e.version
        return state, v


class View:
    """A projection's rows while a batch of events is applied: reads see this batch's
    writes; the writes go back to the supervisor, committed with the checkpoint."""

    def __init__(self, app: Any, table: str) -> None:
        self.app, self.table = app, table
        self.puts: dict[str, Any] = {}
        self.deletes: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.puts:
            return self.puts[key]
        if key in self.deletes:
            return default
        value = _es(self.app, ["row_get_table", self.table, key])
        return default if value is None else value

    def put(self, key: str, value: Any) -> None:
        self.deletes.discard(key)
        self.puts[key] = value

    def delete(self, key: str) -> None:
        self.puts.pop(key, None)
        self.deletes.add(key)


class ReadModel:
    """The query side of a projection: the active version's rows."""

    def __init__(self, app: Any, name: str) -> None:
        self.app, self.name = app, name

    def get(self, key: str, default: Any = None) -> Any:
        value = _es(self.app, ["row_get", self.name, key])
        return default if value is None else value

    def query(self, prefix: str = "", limit: int = 1000) -> list[tuple[str, Any]]:
        return [tuple(r) for r in _es(self.app, ["row_query", self.name, prefix, limit])]

    def rebuild(self) -> int:
        """Replay from position 0 into a new version while this one serves; the new one
        takes over once caught up. Returns the new version number."""
        return _es(self.app, ["rebuild", self.name])

    def status(self) -> dict[str, Any]:
        return _es(self.app, ["projection_status", self.name])


class DeclaresEvents:
    name: str
    functions: dict[str, Any]
    _invoker: Any
    function: Any

    @property
    def event_consumers(self) -> dict[str, dict[str, Any]]:
        """function name -> {"kind": "subscription"|"projection", ...}"""
        return self.__dict__.setdefault("_event_consumers", {})

    @property
    def _upcasters(self) -> dict[tuple[str, int], Callable[[Any], Any]]:
        return self.__dict__.setdefault("_event_upcasters", {})

    def event_store(self) -> EventStoreHandle:
        """The app's event store (one per app)."""
        return EventStoreHandle(self)

    def read_model(self, projection: str) -> ReadModel:
        return ReadModel(self, projection)

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Callable], Callable]:
        """`fn(data) -> data`: turns `event_type` data of schema version `from_version` into
        version `from_version + 1`. Stored events never change; readers see the latest."""

        def register(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
            if (event_type, from_version) in self._upcasters:
                raise ConfigError(f"upcaster for {event_type!r} v{from_version} registered twice")
            self._upcasters[(event_type, from_version)] = fn
            return fn

        return register

    def event_schema_version(self, event_type: str) -> int:
        """What new `event_type` events are written as: one past the last upcaster."""
        versions = [v for t, v in self._upcasters if t == event_type]
        return max(versions) + 1 if versions else 1

    def upcast(self, event: RecordedEvent) -> RecordedEvent:
        data, v = event.data, event.schema_version
        while (event.type, v) in self._upcasters:
            data = self._upcasters[(event.type, v)](data)
            v += 1
        return event if v == event.schema_version else replace(event, data=data,
                                                                schema_version=v)

    def on_events(self, fn: Callable[..., Any] | None = None, *, name: str | None = None,
                  types: Sequence[str] | None = None, batch_size: int = 100,
                  **settings: Any) -> Any:
        """Run the function for the event store's events, in global order, catch-up then
        live: `handler(events)` or `handler(events, ctx)`. Its checkpoint moves when it
        succeeds; a failing batch is retried (at-least-once)."""

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            fname = name or getattr(f, "__name__", None) or "subscriber"
            app = self
            import inspect

            two = len(inspect.signature(f).parameters) >= 2

            def handler(event: Any, ctx: Any) -> Any:
                events = [app.upcast(RecordedEvent.from_dict(d)) for d in event["events"]]
                return f(events, ctx) if two else f(events)

            handler.__name__ = fname
            self._consumer(fname, {"kind": "subscription", "types": list(types or []),
                                   "batch_size": batch_size}, handler, settings)
            return f

        return register(fn) if fn is not None else register

    def projection(self, projection: str, *, types: Sequence[str] | None = None,
                   name: str | None = None, batch_size: int = 500, **settings: Any) -> Any:
        """Keep read model `projection`: `fn(view, event)` for every event (of `types`),
        in global order; the view's writes commit with the checkpoint (exactly once).
        Query it with `app.read_model(projection)`."""

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            fname = name or f"{projection}_projection"
            app = self

            def handler(event: Any, ctx: Any) -> Any:
                view = View(app, event["table"])
                for d in event["events"]:
                    f(view, app.upcast(RecordedEvent.from_dict(d)))
                return {"puts": view.puts, "deletes": sorted(view.deletes)}

            handler.__name__ = fname
            self._consumer(fname, {"kind": "projection", "projection": projection,
                                   "types": list(types or []), "batch_size": batch_size},
                           handler, settings)
            return f

        return register

    def _consumer(self, fname: str, spec: dict[str, Any], handler: Callable[..., Any],
                  settings: dict[str, Any]) -> None:
        if spec["batch_size"] < 1:
            raise ConfigError(f"function {fname!r}: batch_size must be >= 1")
        if spec["kind"] == "projection" and any(
                c.get("projection") == spec["projection"] for c in self.event_consumers.values()):
            raise ConfigError(f"projection {spec['projection']!r} is declared twice")
        self.function(name=fname, **settings)(handler)
        self.event_consumers[fname] = spec

    def events_manifest(self) -> list[dict[str, Any]]:
        return [{"function": n, **spec} for n, spec in self.event_consumers.items()]
