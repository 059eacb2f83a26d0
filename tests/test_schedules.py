"""Schedules: rate, AWS cron and classic cron; exactly one firing per tick; missed-tick
policies; the AWS Scheduled Event; deterministic with a fake clock."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from squall import App, ConfigError
from squall.backends.sqlite.broker import SqliteBroker
from squall.sources.scheduler import Scheduler
from squall.testing import TestClient
from squall.testing.conformance import FakeClock, async_test

APP = str(Path(__file__).parent / "apps" / "sched.py")
T0 = datetime(2026, 3, 2, 10, 2, 30, tzinfo=timezone.utc).timestamp()  # a Monday


def _app():
    spec = importlib.util.spec_from_file_location("sched_app", APP)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.app


@pytest.fixture
def client():
    with TestClient(_app(), clock=FakeClock(T0)) as c:
        yield c


def test_rate_fires_once_per_tick(client):
    client.drain()
    assert client.logs("every_five") == ""
    client.clock.advance(150)  # 10:05:00 passed
    client.drain()
    client.drain()
    assert client.logs("every_five").count("tick") == 1
    assert "tick 2026-03-02T10:05:00Z Scheduled Event aws.events" in client.logs("every_five")
    client.clock.advance(300)
    client.drain()
    assert "tick 2026-03-02T10:10:00Z" in client.logs("every_five")


def test_missed_tick_policies(client):
    client.clock.advance(3 * 3600)  # down for three hours
    client.drain()
    five = client.logs("every_five")
    assert five.count("tick") == 0  # skip: the latest tick (13:00) is 2.5 min old, > grace
    ten = client.logs("every_ten")
    assert ten.count("ten") == 1 and "ten 2026-03-02T13:00:00Z" in ten  # fire_once: latest
    noon = client.logs("noon_berlin")
    # catch_up: every missed tick; noon in Berlin (UTC+1 in March) is 11:00Z
    assert noon.count("noon 20") == 1 and "noon 2026-03-02T11:00:00Z" in noon
    assert "arn:aws:events:local:000000000000:rule/noon_berlin" in noon


def test_invalid_schedules_fail_at_import():
    app = App("badsched")
    with pytest.raises(ConfigError, match="function 'x': schedule 'rate\\(5 minute\\)'"):
        app.schedule("rate(5 minute)", name="x")(lambda e, c: None)
    with pytest.raises(ConfigError, match="missed must be"):
        app.schedule("rate(1 hour)", missed="sometimes", name="y")(lambda e, c: None)
    with pytest.raises(ConfigError, match="function 'z'"):
        app.schedule("cron(0 12 * * * *)", name="z")(lambda e, c: None)  # both days set


@async_test
async def test_two_schedulers_on_one_store_fire_each_tick_once(tmp_path):
    # Given two supervisors (a restart, or two nodes) sharing one broker
    clock = FakeClock(T0)
    configs = {n: f.config for n, f in _app().functions.items()}
    a = SqliteBroker(tmp_path / "b.db", clock=clock)
    b = SqliteBroker(tmp_path / "b.db", clock=clock)
    try:
        s1, s2 = Scheduler(a, configs, clock=clock), Scheduler(b, configs, clock=clock)
        clock.advance(150)
        # When both wake for the same tick
        fired = await asyncio.gather(s1.fire_due(), s2.fire_due())
        # Then it is fired once in all
        assert sum(fired) == 1
        assert (await a.stats("_async.every_five")).visible == 1
        assert await s1.fire_due() == 0 and await s2.fire_due() == 0
    finally:
        await a.close()
        await b.close()


def test_squall_schedules_lists_next_firings(tmp_path):
    out = subprocess.run([sys.executable, "-m", "squall.cli.main", "schedules", APP, "--json",
                          "--count", "2"], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {r["function"]: r for r in map(json.loads, out.stdout.splitlines())}
    assert rows["every_five"]["expression"] == "rate(5 minutes)"
    assert len(rows["noon_berlin"]["next"]) == 2
    assert all(t.endswith(":00:00Z") for t in rows["noon_berlin"]["next"])
