"""Ordered streams: order per partition key, per-consumer checkpoints, retries in order,
bisect-on-error and DLQ, Kinesis shape and partial failures."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from squall.sources.messaging import UnknownQueue
from squall.testing import TestClient
from squall.testing.conformance import FakeClock

APP = str(Path(__file__).parent / "apps" / "streams.py")


@pytest.fixture
def client():
    spec = importlib.util.spec_from_file_location("streams_app", APP)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.SEEN.clear()
    with TestClient(mod.app, clock=FakeClock()) as c:
        yield c


def _order(logs: str, tag: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for key, n in re.findall(rf"{tag} (\S+) (\d+)", logs):
        out.setdefault(key, []).append(int(n))
    return out


def test_each_consumer_sees_every_record_in_order_per_key(client):
    seqs = client.put_records("clicks", [(f"user{i % 3}", {"n": i}) for i in range(40)])
    assert len(seqs) == 40 and all(":" in s for s in seqs)
    client.drain()
    for tag, fn in (("rec", "per_user"), ("kin", "kinesis_reader")):
        order = _order(client.logs(fn), tag)
        assert sorted(sum(order.values(), [])) == list(range(40)), fn
        for key, values in order.items():
            assert values == sorted(values), (fn, key)


def test_a_bad_record_is_bisected_out_and_dead_lettered(client):
    records = [("u", {"n": i}) for i in range(10)]
    records[6] = ("u", {"n": 6, "bad": True})
    client.put_records("clicks", records)
    out = client.drain()
    assert out.dead_lettered == 1
    values = _order(client.logs("per_user"), "rec")["u"]
    assert values == [0, 1, 2, 3, 4, 5, 7, 8, 9]  # in order, around the bad one
    (dead,) = client.dead_letters("clicks-dlq")
    assert json.loads(dead.body) == {"n": 6, "bad": True}
    assert dead.attributes["consumer"] == "per_user"
    assert dead.attributes["error"].startswith("ValueError: bad record")
    # the other consumer, with its own checkpoint, was not held back by this failure
    assert _order(client.logs("kinesis_reader"), "kin")["u"] == list(range(10))


def test_partial_failure_retries_from_the_failed_record(client):
    client.put_records("clicks", [("k", {"n": 0}), ("k", {"n": 1, "retry_me": True}),
                                  ("k", {"n": 2})])
    client.drain()
    assert _order(client.logs("kinesis_reader"), "kin")["k"] == [0, 1, 2]


def test_latest_starting_position_skips_history(client):
    client.drain()  # the consumer starts here: nothing before this counts
    client.put_records("events", [("a", "new")])
    client.drain()
    assert "latest new" in client.logs("latest_only")


def test_put_from_a_function_and_unknown_streams(client):
    r = client.invoke("writer", {"n": 6})
    assert r.ok and len(r.output) == 6
    client.drain()
    assert sorted(sum(_order(client.logs("per_user"), "rec").values(), [])) == list(range(6))
    with pytest.raises(UnknownQueue, match="no stream named 'nope'"):
        client.put_records("nope", [("k", 1)])


def test_kinesis_shape_matches_aws_sample(conformance_dir):
    from squall.events.stream import kinesis_event

    sample = json.loads((conformance_dir / "lambda-go-events/events/testdata/kinesis-event.json")
                        .read_text())["Records"][0]
    ours = kinesis_event({"stream": "s", "records": [
        {"sequence": "0:1", "shard": 0, "partition_key": "p", "data": '{"a":1}',
         "arrival": 1.5}]})["Records"][0]
    assert set(ours) == set(sample) and set(ours["kinesis"]) == set(sample["kinesis"])
    for k in ours["kinesis"]:
        assert type(ours["kinesis"][k]) is type(sample["kinesis"][k]), k
