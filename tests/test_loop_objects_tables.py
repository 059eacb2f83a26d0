"""Recursive loop detection through object-storage and table-change events: a function
that writes to the bucket or table that triggers it is stopped at its 17th pass in one
event chain (dead-lettered with reason recursive_loop, never retried), as Lambda stops
S3 -> Lambda -> S3 loops; a fan-out is not a loop; a write from outside any function
starts a new chain. In-process (the harness runs the feed consumers for real) and in a
real supervisor with forked workers."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import httpx
import pytest
from servers import RunningServer

from squall.events.lineage import MAX_HOPS, RECURSIVE_LOOP, split
from squall.testing import TestClient

APP = Path(__file__).parent / "apps" / "loop_state.py"


def _load():
    spec = importlib.util.spec_from_file_location("loop_state_app", APP)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.app


@pytest.fixture
def client():
    with TestClient(_load()) as c:
        yield c


def _lineage(client: TestClient, kind: str, name: str) -> dict[str, dict[str, int] | None]:
    """The loop counts each feed record of a bucket or table carries, by key (None: the
    record has no trace, a write from outside any function)."""
    specs = client.state.decls.buckets if kind == "bucket" else client.state.decls.tables
    spec = specs[name]
    out: dict[str, dict[str, int] | None] = {}
    for shard in range(spec.shards):
        for r in client.state.store.read_feed(spec.feed, shard, 0, 10_000):
            out[f"{r.key}:{r.event}:{r.seq}"] = None if r.trace is None else split(r.trace)[1]
    return out


def _assert_stopped_once(client: TestClient, fn: str, chains: int = 1,
                         dlq: str | None = None) -> None:
    """`fn` ran exactly 16 times per chain; each chain's 17th invocation was stopped and
    its record dead-lettered with reason recursive_loop (not retried)."""
    runs = client.invocations(fn)
    assert len(runs) == (MAX_HOPS + 1) * chains
    assert sum(r.ok for r in runs) == MAX_HOPS * chains
    stopped = [r for r in runs if not r.ok]
    assert all(r.error_type == RECURSIVE_LOOP for r in stopped)
    dead = client.dead_letters(dlq or f"{fn}-dlq")
    assert len(dead) == chains
    for d in dead:
        assert d.attributes["reason"] == "recursive_loop"
        assert d.attributes["error"].startswith(RECURSIVE_LOOP)
        assert split(d.trace)[1] == {fn: MAX_HOPS}  # the lineage it was stopped with


@pytest.mark.parametrize("fn, prefix", [("spin", "put/"), ("spin_copy", "copy/")])
def test_a_function_writing_to_its_own_bucket_is_stopped_after_16_passes(client, fn,
                                                                          prefix):
    spins = client.app.bucket("spins")
    # Given an object uploaded from outside any function, under a prefix whose function
    # writes (puts or copies) the next object under that prefix
    spins.put(f"{prefix}0", b"first")
    # When the object events run
    out = client.drain()
    # Then the chain is stopped at the 17th pass, dead-lettered at once, not retried
    _assert_stopped_once(client, fn)
    assert out.dead_lettered == 1 and out.retried == 0
    assert sorted(o.key for o in spins.list(prefix).objects) == sorted(
        f"{prefix}{i}" for i in range(MAX_HOPS + 1))
    # And each object event carried its writer's count: the outside upload none
    counts = {k.split(":")[0]: v for k, v in _lineage(client, "bucket", "spins").items()}
    assert counts[f"{prefix}0"] is None
    assert all(counts[f"{prefix}{i}"] == {fn: i} for i in range(1, MAX_HOPS + 1))
    (dead,) = client.dead_letters(f"{fn}-dlq")
    assert dead.attributes["key"] == f"{prefix}{MAX_HOPS}"


def test_an_upload_from_outside_starts_a_new_chain_at_count_1(client):
    spins = client.app.bucket("spins")
    spins.put("put/0", b"first")
    client.drain()
    # When someone uploads again from outside after a loop was stopped
    spins.put("put/100", b"second")
    client.drain()
    # Then the new chain counts from 1 again: 16 more passes, then stopped again
    _assert_stopped_once(client, "spin", chains=2)
    counts = {k.split(":")[0]: v for k, v in _lineage(client, "bucket", "spins").items()}
    assert counts["put/100"] is None and counts["put/101"] == {"spin": 1}
    assert counts["put/116"] == {"spin": 16} and "put/117" not in counts


def test_a_function_inserting_into_its_own_table_is_stopped_after_16_passes(client):
    counters = client.app.table("counters", key="id")
    counters.put({"id": 0})  # from outside: a new chain
    out = client.drain()
    _assert_stopped_once(client, "count")
    assert out.dead_lettered == 1 and out.retried == 0
    assert sorted(i["id"] for i in counters.scan()) == list(range(MAX_HOPS + 1))
    counts = [v for k, v in _lineage(client, "table", "counters").items()]
    assert sorted((v or {}).get("count", 0) for v in counts) == list(range(MAX_HOPS + 1))
    (dead,) = client.dead_letters("count-dlq")
    assert dead.attributes["event"] == "insert"


def test_a_function_updating_the_item_whose_change_it_handles_is_stopped(client):
    tallies = client.app.table("tallies", key="id")
    tallies.put({"id": "t", "n": 0})
    client.drain()
    _assert_stopped_once(client, "tally")
    assert tallies.get("t")["n"] == MAX_HOPS  # 16 updates, then the loop was stopped
    (dead,) = client.dead_letters("tally-dlq")
    assert dead.attributes["event"] == "modify"


def test_a_fan_out_to_another_bucket_is_not_a_loop(client):
    # Given one upload whose function writes 20 distinct objects to another bucket
    client.app.bucket("uploads").put("u/1", b"one upload")
    out = client.drain()
    # Then all 20 object events run (more than 16: each is its own chain of one)
    gather = client.invocations("gather")
    assert len(gather) == 20 and all(r.ok for r in gather)
    assert out.dead_lettered == 0 and client.dead_letters("gather-dlq") == []
    counts = {k.split(":")[0]: v for k, v in _lineage(client, "bucket", "parts").items()}
    assert sorted(counts) == [f"u/1/part-{i:02d}" for i in range(20)]
    assert all(v == {"scatter": 1} for v in counts.values())  # every write in one chain


def test_a_real_supervisor_stops_the_loop_and_stays_healthy(tmp_path):
    with RunningServer(str(APP), str(tmp_path)) as server:
        sup = server.sup
        seen: dict[str, list] = {"spin": [], "gather": []}
        done = threading.Event()
        record = sup.runtime.on_result

        def on_result(result, kind):  # await the invocations, no polling
            record(result, kind)
            if result.function in seen:
                seen[result.function].append(result)
            if len(seen["spin"]) >= MAX_HOPS + 1 and len(seen["gather"]) >= 20:
                done.set()

        sup.runtime.on_result = on_result

        def upload(bucket: str, key: str) -> None:  # from outside any function
            server.run(sup.state.run(sup.state.call, None, "bucket", bucket, "put",
                                     [key, b"outside", "application/octet-stream"]))

        # Given a looping function and a fan-out, each started by an outside upload,
        # run live by forked workers that write through the supervisor's state service
        upload("spins", "put/0")
        upload("uploads", "u/1")
        assert done.wait(60), {k: len(v) for k, v in seen.items()}
        # Then the loop was stopped at its 17th pass and dead-lettered, not retried (the
        # dead letter is sent just after the stopped result: wait for it, woken on commit)
        dead = server.run(sup.messaging.broker.receive("spin-dlq", 10, wait_s=10))
        assert [d.attributes["reason"] for d in dead] == ["recursive_loop"]
        assert split(dead[0].trace)[1] == {"spin": MAX_HOPS}
        # (the 17th pass is stopped in the supervisor at once, so its result may be
        # reported before the 16th's, whose worker is still answering)
        assert sorted(r.ok for r in seen["spin"]) == [False] + [True] * MAX_HOPS
        assert [r.error_type for r in seen["spin"] if not r.ok] == [RECURSIVE_LOOP]
        # And the fan-out ran every one of its 20 events
        assert len(seen["gather"]) == 20 and all(r.ok for r in seen["gather"])
        # And the server is healthy: it answers and runs functions
        assert httpx.get(server.url + "/_squall/health", timeout=10).json() == {
            "status": "ok"}
        assert server.run(sup.runtime.invoke("ping", "event", "null")).ok
        assert len(seen["spin"]) == MAX_HOPS + 1  # nothing more ran: the chain ended


def test_a_stopped_stream_loop_is_not_retried_either():
    """The consumer walk feeds share with streams: with retries configured, the stopped
    invocation is still the last one (retrying it would only be stopped again)."""
    from squall import App

    app = App("stream-loop")

    @app.stream("ticks", batch_size=1, max_retries=3)
    def echo(records, ctx):  # appends to its own stream: a recursive loop
        for r in records:
            app.put_records("ticks", [("k", {"n": r.data["n"] + 1})])

    with TestClient(app) as client:
        client.put_records("ticks", [("k", {"n": 0})])
        out = client.drain()
        _assert_stopped_once(client, "echo", dlq="ticks-dlq")
        assert out.retried == 0 and out.dead_lettered == 1
