"""Event sourcing and CQRS (see docs/eventstore.md).

    declare.py  `app.event_store()`, `@app.on_events`, `@app.projection`, `app.read_model`,
                `@app.upcaster` (an App mixin: records only; handles call the service)
    service.py  the supervisor side: the "eventstore" service, subscriptions and
                projections kept with checkpoints, projection rebuilds
The storage is squall.backends.event_store (Protocol) and backends/sqlite/eventstore.py.
"""

from ..backends.event_store import (ANY, NO_STREAM, ConcurrencyError, NewEvent, RecordedEvent,
                                    Snapshot)

__all__ = ["ANY", "NO_STREAM", "ConcurrencyError", "NewEvent", "RecordedEvent", "Snapshot"]
