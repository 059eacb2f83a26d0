"""Crash test: 10,000 messages sent within one second; kill -9 of the supervisor (and with
it the zygote and every worker) and of one worker mid-run; restart; every message is
counted exactly once and the poison subset sits in the dead-letter queue and nowhere else.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from servers import wait_until

from squall.backends.broker import OutMessage
from squall.backends.sqlite.broker import SqliteBroker

APP = str(Path(__file__).parent / "apps" / "crashcount.py")
N = 10_000
POISON = {n for n in range(N) if n % 1000 == 999}


def start(data: Path, env: dict, log: Path) -> subprocess.Popen:
    with open(log, "a") as out:  # a file, not a pipe: nobody has to keep reading it
        proc = subprocess.Popen(
            [sys.executable, "-m", "squall.cli.main", "run", APP, "--port", "0",
             "--data-dir", str(data)], stderr=out, stdout=subprocess.DEVNULL, env=env)
    mark = log.stat().st_size if log.exists() else 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait for the "listening" log line
        text = log.read_text()[mark:] if log.exists() else ""
        if '"msg": "listening"' in text:
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"squall run did not start:\n{log.read_text()[-2000:]}")


def counted(path: Path) -> int:
    if not path.exists():
        return 0
    c = sqlite3.connect(path, timeout=30)
    try:
        return c.execute("SELECT COUNT(*) FROM counts").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        c.close()


async def send_burst(broker_path: Path) -> float:
    b = SqliteBroker(broker_path)
    try:
        t0 = time.monotonic()
        # 100 producers, each sending a bulk of 100 (the bulk send API), all at once
        await asyncio.gather(*[
            b.send("work", [OutMessage(body=json.dumps({"n": n}).encode())
                            for n in range(i, i + 100)]) for i in range(0, N, 100)])
        return time.monotonic() - t0
    finally:
        await b.close()


async def queue_state(broker_path: Path) -> tuple[int, list]:
    b = SqliteBroker(broker_path)
    try:
        pending = (await b.stats("work")).total
        dead = await b.peek("work-dlq", 1000)
        return pending, dead
    finally:
        await b.close()




@pytest.mark.timeout(180)
def test_kill_9_mid_run_loses_nothing_and_counts_once(tmp_path):
    data, count_db = tmp_path / "data", tmp_path / "counts.db"
    env = {**os.environ, "COUNT_DB": str(count_db)}
    log = tmp_path / "squall.log"
    proc = start(data, env, log)
    try:
        # Given 10,000 messages accepted (durable) within one second
        elapsed = asyncio.run(send_burst(data / "broker.db"))
        assert elapsed < 1.0, f"the burst took {elapsed:.2f} s"
        # When the run is part-way through, kill -9 one worker, then the supervisor
        wait_until(lambda: counted(count_db) > 1500, 60, "progress before the kill")
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if p.parent() is not None and p.parent().pid != proc.pid]
        assert workers, "no forked workers found"
        os.kill(workers[0].pid, signal.SIGKILL)
        time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        before = counted(count_db)
        assert before < N - len(POISON), "the kill came too late to test anything"
        # the zygote and workers die with the supervisor (PDEATHSIG)
        wait_until(lambda: not [c for c in workers if c.is_running()
                                and c.status() != psutil.STATUS_ZOMBIE], 10, "workers to die")
        # Then after a restart every message is processed
        proc = start(data, env, log)
        wait_until(lambda: counted(count_db) == N - len(POISON), 120, "all messages counted")
        wait_until(lambda: asyncio.run(queue_state(data / "broker.db"))[0] == 0, 30,
                   "the queue to empty")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    c = sqlite3.connect(count_db)
    counts = {n for (n,) in c.execute("SELECT n FROM counts")}
    runs = c.execute("SELECT n, COUNT(*) FROM runs GROUP BY n HAVING COUNT(*) > 1").fetchall()
    c.close()
    pending, dead = asyncio.run(queue_state(data / "broker.db"))
    assert counts == set(range(N)) - POISON  # each counted once (a set, and all of them)
    assert pending == 0
    assert sorted(json.loads(d.body)["n"] for d in dead) == sorted(POISON)
    assert all(d.dead_letter_reason == "max_receive" for d in dead)
    # the idempotency helper kept re-executions to the few runs the kill interrupted
    assert len(runs) <= 4 * 50, f"{len(runs)} messages ran more than once"
