"""The embedded workflow store and event store pass their conformance suites."""

from __future__ import annotations

import pytest

from squall.backends.sqlite.eventstore import SqliteEventStore
from squall.backends.sqlite.workflows import SqliteWorkflowStore
from squall.testing.eventstore_conformance import EventStoreConformance
from squall.testing.workflow_conformance import WorkflowStoreConformance


class TestSqliteEventStore(EventStoreConformance):
    @pytest.fixture
    def open_events(self, tmp_path):
        return lambda clock: SqliteEventStore(tmp_path / "events.db", clock=clock)


class TestSqliteWorkflowStore(WorkflowStoreConformance):
    @pytest.fixture
    def open_workflows(self, tmp_path):
        return lambda clock: SqliteWorkflowStore(tmp_path / "workflows.db", clock=clock)


def test_events_are_immutable_in_the_database(tmp_path) -> None:
    import sqlite3

    from squall.backends.event_store import NewEvent

    s = SqliteEventStore(tmp_path / "e.db")
    s.append("x", [NewEvent("E", 1)])
    s.close()
    db = sqlite3.connect(tmp_path / "e.db")
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        db.execute("UPDATE es_events SET data = '2'")
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        db.execute("DELETE FROM es_events")
    db.close()
