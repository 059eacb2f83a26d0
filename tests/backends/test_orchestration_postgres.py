"""The PostgreSQL workflow store and event store pass the same conformance suites."""

from __future__ import annotations

import pytest
from pg_fixtures import postgres_url, unique_schema

from squall.backends.postgres.eventstore import PgEventStore
from squall.backends.postgres.workflows import PgWorkflowStore
from squall.testing.eventstore_conformance import EventStoreConformance
from squall.testing.workflow_conformance import WorkflowStoreConformance


@pytest.fixture
def schema_url():
    url = postgres_url()
    with unique_schema(url) as schema:
        yield f"{url}?schema={schema}"


class TestPgEventStore(EventStoreConformance):
    @pytest.fixture
    def open_events(self, schema_url):
        return lambda clock: PgEventStore(schema_url, clock=clock)


class TestPgWorkflowStore(WorkflowStoreConformance):
    @pytest.fixture
    def open_workflows(self, schema_url):
        return lambda clock: PgWorkflowStore(schema_url, clock=clock)
