"""Queue depth, oldest-message age, DLQ size, stream iterator age and workflow counts kept
over time: sampled into the store on an injected clock, read back by `gauge_series`."""

from __future__ import annotations

import asyncio

import pytest

from squall import App
from squall.backends.sqlite.store import SqliteStore
from squall.observe.gauges import GaugeSampler, SamplerSettings, read_gauges
from squall.observe.metrics import gauge_series
from squall.testing import TestClient
from squall.testing.conformance import FakeClock


def _app() -> App:
    app = App("gauged")

    @app.queue("emails", batch_size=1, max_receive=1)
    def send_email(batch, ctx):
        for m in batch:
            if m.data.get("bad"):
                raise ValueError("bad address")

    @app.stream("clicks", shards=1)
    def count_clicks(records, ctx):
        pass

    @app.workflow()
    def signup(wf, user):
        return user

    return app


@pytest.fixture
def gauged(tmp_path):
    clock = FakeClock()
    store = SqliteStore(tmp_path / "squall.db")
    with TestClient(_app(), clock=clock) as client:
        async def read(now: float) -> list:
            return await read_gauges(client.messaging, client.orchestration, now)

        sampler = GaugeSampler("gauged", read, store, SamplerSettings(60, 3600), clock=clock)
        yield client, sampler, store, clock
    store.close()


def sample(sampler: GaugeSampler) -> int:
    return asyncio.run(sampler.sample())


def test_queue_depth_age_and_dlq_over_time(gauged):
    client, sampler, store, clock = gauged
    t0 = clock()
    # Given three messages waiting, one of them bad, and a stream record unread
    client.send("emails", {"to": "a"})
    client.send("emails", {"to": "b"})
    client.send("emails", {"bad": True})
    client.put_records("clicks", [("u", {"n": 1})])
    client.invoke("signup", {"user": "ada"})
    assert sample(sampler) > 0  # t0: all waiting
    clock.advance(60)
    assert sample(sampler) > 0  # t0 + 60: still waiting, a minute older
    # When the queue and the stream are drained (the bad message dead-letters)
    clock.advance(60)
    client.drain()
    sample(sampler)  # t0 + 120
    # Then the series show depth, age, DLQ size and iterator age per minute
    def series(name: str, subject: str) -> list:
        got = gauge_series(store, "gauged", name, since=t0, until=t0 + 180, step=60)
        assert got["t"] == [t0, t0 + 60, t0 + 120]
        return got["series"][subject]

    assert series("queue_visible", "emails") == [3.0, 3.0, 0.0]
    assert series("queue_oldest_age_s", "emails") == [0.0, 60.0, 0.0]
    assert series("dlq_messages", "emails-dlq") == [0.0, 0.0, 1.0]
    assert series("stream_iterator_age_s", "clicks/count_clicks/0") == [0.0, 60.0, 0.0]
    assert series("workflow_executions", "signup/succeeded") == [1.0, 1.0, 1.0]
    # And a coarser step keeps each bucket's peak; an empty bucket is None
    wide = gauge_series(store, "gauged", "queue_visible", since=t0, until=t0 + 400, step=120,
                        subject="emails")
    assert wide["series"] == {"emails": [3.0, 0.0, None, None]}


def test_old_samples_are_pruned_and_other_nodes_do_not_sample(gauged):
    client, sampler, store, clock = gauged
    t0 = clock()
    sample(sampler)
    # Given a retention of an hour, an hour and more later (the next prune is due)
    clock.advance(3601)
    sample(sampler)
    # Then the first round's samples are gone and the last are kept
    got = gauge_series(store, "gauged", "queue_visible", since=t0 - 1, until=t0 + 3602,
                       step=3601)
    assert got["series"]["emails"] == [None, 0.0]
    # And a node that does not hold the sampling lease writes nothing
    async def not_leader() -> bool:
        return False

    sampler.leader = not_leader
    assert sample(sampler) == 0


@pytest.mark.parametrize("env, words", [
    ({"SQUALL_GAUGE_INTERVAL_S": "soon"}, "number of seconds"),
    ({"SQUALL_GAUGE_INTERVAL_S": "0.1"}, "1..86400"),
    ({"SQUALL_GAUGE_RETENTION": "forever"}, "not a duration"),
    ({"SQUALL_GAUGE_INTERVAL_S": "600", "SQUALL_GAUGE_RETENTION": "5m"}, "at least one"),
])
def test_bad_sampling_settings_are_refused_clearly(env, words):
    with pytest.raises(ValueError, match=words):
        SamplerSettings.from_env(env)


def test_sampling_settings_default_and_off():
    assert SamplerSettings.from_env({}) == SamplerSettings(60.0, 7 * 86400.0)
    assert SamplerSettings.from_env({"SQUALL_GAUGE_INTERVAL_S": "0"}).interval_s == 0


def test_gauge_series_refuses_bad_reads(tmp_path):
    store = SqliteStore(tmp_path / "squall.db")
    try:
        with pytest.raises(ValueError, match="no stored gauge 'depth'"):
            gauge_series(store, "a", "depth", since=0, until=60)
        with pytest.raises(ValueError, match="at most"):
            gauge_series(store, "a", "queue_visible", since=0, until=1e9, step=1)
        with pytest.raises(ValueError, match="after since"):
            gauge_series(store, "a", "queue_visible", since=60, until=0)
    finally:
        store.close()


def test_squall_metrics_prints_a_stored_gauge_per_bucket(tmp_path):
    import json
    import time

    from typer.testing import CliRunner

    from squall.cli.main import cli

    # Given an app's store with a queue's depth sampled twice in the last half hour
    store = SqliteStore(tmp_path / "squall.db")
    now = time.time()
    try:
        store.record_gauges([("gauged", "queue_visible", "emails", now - 1200, 5.0),
                             ("gauged", "queue_visible", "emails", now - 60, 2.0)])
    finally:
        store.close()
    run = CliRunner().invoke
    args = ["metrics", "gauged", "--gauge", "queue_visible", "--data-dir", str(tmp_path),
            "--since", "30m", "--bucket", "10m"]
    # When `squall metrics --gauge` reads it
    doc = json.loads(run(cli, [*args, "--json"]).output)
    # Then each 10-minute bucket has its sample, and the table prints both
    values = [v for v in doc["series"]["emails"] if v is not None]
    assert values == [5.0, 2.0] and doc["name"] == "queue_visible"
    table = run(cli, args, terminal_width=160)
    assert table.exit_code == 0 and "emails" in table.output and "5" in table.output
    # And a gauge that does not exist is a clear usage error
    bad = run(cli, ["metrics", "gauged", "--gauge", "depth", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 2 and "no stored gauge 'depth'" in bad.output


def test_squall_run_refuses_a_bad_gauge_setting_before_starting(tmp_path, monkeypatch):
    from pathlib import Path

    from typer.testing import CliRunner

    from squall.cli.main import cli

    monkeypatch.setenv("SQUALL_GAUGE_RETENTION", "forever")
    app = str(Path(__file__).parent / "apps" / "observed.py")
    r = CliRunner().invoke(cli, ["run", app, "--port", "0", "--data-dir", str(tmp_path)])
    assert r.exit_code == 2 and "SQUALL_GAUGE_RETENTION" in r.output
