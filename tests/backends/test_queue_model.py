"""The model-based queue test (squall.testing.queue_model) against every backend: the
embedded SQLite broker and PostgreSQL on a fake clock (many examples, strict), NATS
JetStream in real time (few examples: its server keeps the time)."""

from __future__ import annotations

import os

import pytest
from nats_fixtures import nats_url, unique_prefix
from pg_fixtures import postgres_url, unique_schema

from squall.backends.jetstream.broker import NatsBroker
from squall.backends.postgres.broker import PgBroker
from squall.backends.sqlite.broker import SqliteBroker
from squall.testing.conformance import FakeClock, RealClock
from squall.testing.queue_model import run_queue_model


@pytest.mark.timeout(120)
def test_sqlite_broker_follows_the_queue_model(tmp_path):
    async def open_(clock, **opts):
        return SqliteBroker(tmp_path / "broker.db", clock=clock, **opts)

    run_queue_model(open_, FakeClock(), max_examples=25, steps=30)


@pytest.mark.timeout(180)
def test_postgres_broker_follows_the_queue_model():
    url = postgres_url()
    with unique_schema(url) as schema:
        async def open_(clock, **opts):
            return PgBroker(url, clock=clock, schema=schema, **opts)

        run_queue_model(open_, FakeClock(), max_examples=8, steps=25)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_nats_broker_follows_the_queue_model():
    url = nats_url()
    with unique_prefix(url) as prefix:
        async def open_(clock, **opts):
            return NatsBroker(url, clock=clock, prefix=prefix, **opts)

        examples = int(os.environ.get("SQUALL_MODEL_EXAMPLES", "2"))
        run_queue_model(open_, RealClock(), max_examples=examples, steps=12)


class _Mutant:
    """A broken broker around a real one, to show the model notices."""

    def __init__(self, inner, bug: str) -> None:
        self.inner, self.bug, self.sends = inner, bug, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def send(self, queue, messages):
        self.sends += 1
        if self.bug == "drop-committed" and self.sends % 3 == 0:
            ids = await self.inner.send(queue, messages)
            await self.inner.delete(queue, ids)  # stored, acknowledged, then gone
            return ids
        return await self.inner.send(queue, messages)

    async def ack(self, queue, receipts):
        got = await self.inner.ack(queue, receipts)
        return [True] * len(got) if self.bug == "accept-stale" else got


@pytest.mark.parametrize("bug", ["drop-committed", "accept-stale"])
def test_the_model_catches_a_broken_broker(tmp_path, bug):
    async def open_(clock, **opts):
        return _Mutant(SqliteBroker(tmp_path / "broker.db", clock=clock, **opts), bug)

    with pytest.raises((AssertionError, ExceptionGroup)) as caught:  # one or several
        run_queue_model(open_, FakeClock(), max_examples=40, steps=30, shrink=False)
    if isinstance(caught.value, ExceptionGroup):
        assert caught.value.subgroup(AssertionError) is not None
