"""The embedded broker's deadlines on the monotonic clock (squall.backends.sqlite.deadlines):
the default clocks, a reboot (monotonic time starts again), and the one-time conversion of
a database whose deadlines are wall-clock times."""

from __future__ import annotations

import sqlite3
import time

from squall.backends.sqlite.broker import SqliteBroker
from squall.backends.sqlite.deadlines import DeadlineClock, boot_id
from squall.testing.conformance import FakeClock, async_test, msg


def _deadlines(path) -> dict[str, float]:
    c = sqlite3.connect(path)
    try:
        rows = c.execute("SELECT body, available_at FROM messages").fetchall()
        return {bytes(body).decode(): at for body, at in rows}
    finally:
        c.close()


@async_test
async def test_by_default_deadlines_are_monotonic_and_times_are_wall_clock(tmp_path):
    b = SqliteBroker(tmp_path / "b.db")
    try:
        before_wall, before_mono = time.time(), time.monotonic()
        await b.send("q", [msg("x", delay_s=100)])
        (d,) = await b.peek("q")
        after_wall, after_mono = time.time(), time.monotonic()
        assert before_wall <= d.sent_at <= after_wall
        assert b.timer.boot_id == boot_id()
    finally:
        await b.close()
    assert before_mono + 100 <= _deadlines(tmp_path / "b.db")["x"] <= after_mono + 100
    c = sqlite3.connect(tmp_path / "b.db")
    try:
        stored = c.execute("SELECT value FROM broker_meta WHERE key = 'deadline_boot'")
        assert stored.fetchone()[0] == boot_id()
    finally:
        c.close()


@async_test
async def test_the_machines_monotonic_clock_ignores_a_stepped_wall_clock(tmp_path):
    # Given the production deadline clock, and a wall clock the test steps
    wall = FakeClock(time.time())
    b = SqliteBroker(tmp_path / "b.db", clock=wall, timer=DeadlineClock.system())
    try:
        await b.send("q", [msg("leased"), msg("delayed", delay_s=30)])
        (d,) = await b.receive("q", 10, visibility_timeout_s=30)
        # When the wall clock jumps a day forward, then two back
        for step in (86_400, -2 * 86_400):
            wall.advance(step)
            # Then the lease and the delay hold (30 s of real time have not passed)
            assert await b.receive("q", 10) == []
            assert (await b.stats("q")).in_flight == 1 and (await b.stats("q")).delayed == 1
        assert await b.ack("q", [d.receipt]) == [True]
    finally:
        await b.close()


@async_test
async def test_after_a_reboot_every_deadline_is_due_and_dedup_starts_a_fresh_window(
        tmp_path, caplog):
    # Given, in one boot: a message in flight, one delayed an hour, a dedup record
    wall, mono = FakeClock(), FakeClock(50_000.0)
    b = SqliteBroker(tmp_path / "b.db", clock=wall, timer=DeadlineClock(mono, "boot-1"),
                     dedup_window_s=60)
    (first,) = await b.send("q", [msg("in-flight", dedup_key="k")])
    await b.send("q", [msg("delayed", delay_s=3600)])
    (leased,) = await b.receive("q", 1, visibility_timeout_s=300)
    await b.close()
    # When the machine reboots (monotonic time starts again, near zero)
    mono2 = FakeClock(12.0)
    b = SqliteBroker(tmp_path / "b.db", clock=wall, timer=DeadlineClock(mono2, "boot-2"),
                     dedup_window_s=60)
    try:
        assert "earlier boot" in caplog.text and "boot-2" in caplog.text
        # Then the in-flight message is visible again (at least once), the delayed one is
        # due, in their old order, and the old receipt is stale after the redelivery
        again = await b.receive("q", 10)
        assert [d.body for d in again] == [b"in-flight", b"delayed"]
        assert again[0].receive_count == 2
        assert await b.ack("q", [leased.receipt]) == [False]
        # and the dedup record holds for a fresh window, then expires
        assert await b.send("q", [msg("dup", dedup_key="k")]) == [first]
        mono2.advance(60.1)
        assert await b.send("q", [msg("dup", dedup_key="k")]) != [first]
    finally:
        await b.close()


@async_test
async def test_wall_clock_deadlines_of_an_older_database_are_converted_once(tmp_path):
    # Given a database written before deadlines moved to the monotonic clock: deadlines
    # are wall-clock times and there is no boot id
    path = tmp_path / "b.db"
    wall = FakeClock(1_750_000_000.0)
    old = SqliteBroker(path, clock=wall)  # a fake wall clock drives the deadlines too
    await old.send("q", [msg("leased"), msg("delayed", delay_s=60)])
    await old.receive("q", 1, visibility_timeout_s=30)
    await old.close()
    c = sqlite3.connect(path)
    c.execute("DROP TABLE broker_meta")
    c.commit()
    c.close()
    assert _deadlines(path) == {"leased": wall.now + 30, "delayed": wall.now + 60}
    # When it is opened on the monotonic clock, 10 s later
    wall.advance(10)
    mono = FakeClock(400.0)
    b = SqliteBroker(path, clock=wall, timer=DeadlineClock(mono, "boot-1"))
    await b.close()
    # Then each deadline keeps its remaining time, now on the monotonic clock
    assert _deadlines(path) == {"leased": 420.0, "delayed": 450.0}
    # and opening it again in the same boot changes nothing
    wall.advance(1000)
    b = SqliteBroker(path, clock=wall, timer=DeadlineClock(mono, "boot-1"))
    try:
        assert _deadlines(path) == {"leased": 420.0, "delayed": 450.0}
        mono.now = 419.9
        assert await b.receive("q", 10) == []
        mono.now = 420.0
        assert [d.body for d in await b.receive("q", 10, visibility_timeout_s=300)] == [
            b"leased"]
        mono.now = 450.0
        assert [d.body for d in await b.receive("q", 10)] == [b"delayed"]
    finally:
        await b.close()
