"""Queues in a running app (live consumers, real clock) and the queue CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx

from servers import RunningServer
from squall.backends import broker_url_for_data_dir, open_broker

APP = str(Path(__file__).parent / "apps" / "queues.py")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "squall.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def _until(server: RunningServer, predicate, timeout: float = 15.0) -> None:
    async def wait() -> None:
        while not await predicate():
            await asyncio.sleep(0.02)

    server.run(asyncio.wait_for(wait(), timeout), timeout + 5)


def test_live_consumer_processes_and_dead_letters(tmp_path):
    data = tmp_path / "data"
    # a message sent while the app is not running waits durably
    r = cli("send", APP, "orders", "--data", '{"n": 100}', "--data-dir", str(data), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["queue"] == "orders"
    with RunningServer(APP, str(data)) as server:
        broker = server.sup.messaging.broker
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.post("/orders", json={"n": 101}).status_code == 202
            assert http.post("/orders", json={"poison": True}).status_code == 202

        async def settled() -> bool:
            s = await broker.stats("orders")
            return s.visible == 0 and (await broker.stats("orders-dlq")).total == 1
        # the poison message is retried with backoff (2 s, 4 s, full jitter) then dead-lettered
        _until(server, settled, timeout=20)
        # a message sent by another process while the app runs is picked up at once
        r = cli("send", APP, "orders", "--data", '{"n": 102}', "--data-dir", str(data),
                cwd=tmp_path)
        assert r.returncode == 0, r.stderr

        async def done() -> bool:
            return (await broker.stats("orders")).total == 0
        _until(server, done)

    listed = cli("dlq", "list", APP, "orders", "--json", "--data-dir", str(data), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    (rec,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert rec["body"] == {"poison": True} and rec["reason"] == "max_receive"
    assert rec["attempts"] == 3 and rec["queue"] == "orders"
    shown = cli("dlq", "show", APP, rec["messageId"], "--data-dir", str(data), cwd=tmp_path)
    assert json.loads(shown.stdout)["lastError"].startswith("reported failed")
    edited = cli("dlq", "edit", APP, rec["messageId"], "--data", '{"n": 103}',
                 "--data-dir", str(data), cwd=tmp_path)
    assert edited.returncode == 0, edited.stderr
    redriven = cli("dlq", "redrive", APP, "orders", "--rate", "50", "--data-dir", str(data),
                   cwd=tmp_path)
    assert json.loads(redriven.stdout) == {"redriven": 1}

    async def check() -> tuple[int, list]:
        b = open_broker(broker_url_for_data_dir(data))
        try:
            return (await b.stats("orders-dlq")).total, await b.peek("orders", 10)
        finally:
            await b.close()

    dead, back = asyncio.run(check())
    assert dead == 0 and [json.loads(d.body) for d in back] == [{"n": 103}]


def test_queue_cli_errors_exit_2(tmp_path):
    bad_json = cli("send", APP, "orders", "--data", "{nope", cwd=tmp_path)
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    unknown = cli("send", APP, "nope", "--data", "{}", cwd=tmp_path)
    assert unknown.returncode == 2 and "no queue named 'nope'" in unknown.stderr
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"x": "y" * 1048576}))
    too_big = cli("send", APP, "orders", "--data-file", str(big), cwd=tmp_path)
    assert too_big.returncode == 2 and "over the 1048576-byte limit" in too_big.stderr
    no_such = cli("dlq", "show", APP, "0123", "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert no_such.returncode == 2 and "no dead letter" in no_such.stderr
    bad_attr = cli("send", APP, "orders", "--data", "{}", "--attr", "novalue", cwd=tmp_path)
    assert bad_attr.returncode == 2 and "NAME=VALUE" in bad_attr.stderr
