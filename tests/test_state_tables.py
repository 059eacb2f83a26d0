"""Tables: conditional writes, versions, counters, queries, TTL, and change streams in
order per key (native and DynamoDB Streams shapes)."""

from __future__ import annotations

import json
import re

import pytest

from squall import App, BatchResult, ConditionFailed, ConfigError, InvalidKey
from squall.state import InvalidItem, InvalidRequest, UnknownResource
from squall.state.formats import from_attribute_value, to_attribute_value
from squall.testing import TestClient
from squall.testing.conformance import FakeClock


def make_app():
    app = App("tables")
    orders = app.table("orders", key="id", ttl_attribute="expires")
    events = app.table("events", key="user", sort_key="ts")
    seen: list = []

    @app.on_change("orders", batch_size=7)
    def audit(changes, ctx):
        failed = []
        for c in changes:
            if (c.new or {}).get("poison"):
                failed.append(c.sequence)  # this one and the rest are retried
                break
            seen.append(c)
        return BatchResult(failed=failed)

    @app.on_change("orders", format="aws-dynamodb", name="ddb", events=["insert", "remove"])
    def ddb(event, context):
        seen.append(event)

    return app, orders, events, seen


@pytest.fixture
def env():
    app, orders, events, seen = make_app()
    clock = FakeClock()
    with TestClient(app, clock=clock) as client:
        yield client, orders, events, seen, clock


def test_conditional_writes_versions_and_counters(env):
    client, orders, _, _, _ = env
    # Given a new item: put only if absent
    item = orders.put({"id": "o1", "status": "new", "total": 10}, expected_version=0)
    assert item == {"id": "o1", "status": "new", "total": 10} and item.version == 1
    # When someone else tries the same insert, Then it fails, naming table and key
    with pytest.raises(ConditionFailed, match=r"table 'orders': item id='o1': expected "
                                              r"version 0, found version 1"):
        orders.put({"id": "o1", "status": "dup"}, expected_version=0)
    # Optimistic concurrency: a write based on a stale version is refused
    orders.update("o1", set={"status": "paid"}, expected_version=1)
    with pytest.raises(ConditionFailed, match="expected version 1, found version 2"):
        orders.update("o1", set={"status": "lost update"}, expected_version=1)
    # Conditions on attributes
    with pytest.raises(ConditionFailed, match="does not hold"):
        orders.update("o1", set={"status": "shipped"}, condition={"status": "new"})
    shipped = orders.update("o1", set={"status": "shipped", "address.city": "Oslo"},
                            condition={"status": {"in": ["paid"]}, "total": {">=": 10}})
    assert shipped["address"] == {"city": "Oslo"} and shipped.version == 3
    # Atomic counters and list appends
    assert orders.increment("o1", "total", 5) == 15
    after = orders.update("o1", increment={"total": -1}, append={"log": ["a", "b"]},
                          remove=["address"])
    assert after["total"] == 14 and after["log"] == ["a", "b"] and "address" not in after
    assert orders.get("o1").version == 5
    # Conditional delete
    with pytest.raises(ConditionFailed):
        orders.delete("o1", condition={"status": "new"})
    assert orders.delete("o1", expected_version=5)["status"] == "shipped"
    assert orders.get("o1") is None and orders.delete("o1") is None


def test_bad_input_is_a_clear_error(env):
    client, orders, events, _, _ = env
    orders.put({"id": "o1", "n": "text"})
    with pytest.raises(InvalidItem, match=r"cannot increment 'n' of id='o1'"):
        orders.increment("o1", "n")
    with pytest.raises(InvalidItem, match="cannot change key attribute 'id'"):
        orders.update("o1", set={"id": "o2"})
    with pytest.raises(InvalidKey, match="table 'orders': key attribute 'id' must be a "
                                         "string or a number"):
        orders.put({"id": ["not", "a", "key"]})
    with pytest.raises(InvalidKey, match="needs attribute 'id'"):
        orders.put({"name": "no key"})
    with pytest.raises(InvalidKey, match=r"has a sort key \('ts'\)"):
        events.get("u1")
    with pytest.raises(InvalidItem, match="over the 409600-byte limit"):
        orders.put({"id": "big", "blob": "x" * 410_000})
    with pytest.raises(InvalidItem, match="not JSON-serialisable"):
        orders.put({"id": "o9", "when": object()})
    with pytest.raises(InvalidRequest, match="page token"):
        orders.scan(page_token="%%%")
    with pytest.raises(InvalidRequest, match="limit must be"):
        orders.scan(limit=0)
    with pytest.raises(UnknownResource, match="no table named 'nope'"):
        client.state.call(None, "table", "nope", "get", [{"id": 1}])


def test_query_ranges_filters_and_pages(env):
    _, _, events, _, _ = env
    for ts in range(1, 13):
        events.put({"user": "ann", "ts": ts, "kind": "click" if ts % 3 else "buy"})
    events.put({"user": "bob", "ts": 5, "kind": "buy"})
    assert [i["ts"] for i in events.query("ann", sort={"between": [3, 6]})] == [3, 4, 5, 6]
    assert [i["ts"] for i in events.query("ann", sort={">": 10})] == [11, 12]
    assert [i["ts"] for i in events.query("ann", sort={"<=": 3}, reverse=True)] == [3, 2, 1]
    buys = events.query("ann", filter={"kind": "buy"})
    assert [i["ts"] for i in buys] == [3, 6, 9, 12] and buys.next_token is None
    # pages of 5: every item once, in order
    got, token = [], None
    while True:
        page = events.query("ann", limit=5, page_token=token)
        got += [i["ts"] for i in page]
        token = page.next_token
        if token is None:
            break
    assert got == list(range(1, 13))
    assert [i["ts"] for i in events.query_all("ann", limit=2, filter={"kind": "buy"})] == \
        [3, 6, 9, 12]
    events.put({"user": "cat", "ts": "2024-01-05"})
    events.put({"user": "cat", "ts": "2024-02-01"})
    assert [i["ts"] for i in events.query("cat", sort={"begins_with": "2024-01"})] == \
        ["2024-01-05"]
    # scans see every item, filtered, in pages
    assert len(list(events.scan_all(limit=4))) == 15
    assert sorted(i["user"] for i in events.scan_all(filter={"kind": "buy"}, limit=2)) == \
        ["ann"] * 4 + ["bob"]


def test_changes_arrive_in_order_per_key_with_old_and_new_images(env):
    client, orders, _, seen, _ = env
    # Given interleaved writes to several items
    for rev in range(1, 9):
        for key in ("a", "b", "c", "d"):
            orders.update(key, set={"rev": rev})
    orders.delete("b")
    # When the change streams are drained
    client.drain()
    changes = [c for c in seen if not isinstance(c, dict)]
    # Then every change arrived once, and per key in write order, images chained
    for key in ("a", "b", "c", "d"):
        mine = [c for c in changes if c.keys == {"id": key}]
        revs = [(c.old or {}).get("rev") for c in mine]
        assert [c.new["rev"] for c in mine if c.new] == list(range(1, 9))
        assert revs[:8] == [None] + list(range(1, 8))
        assert [c.event for c in mine][:2] == ["insert", "modify"]
        assert [c.version for c in mine] == sorted(c.version for c in mine)
    (removed,) = [c for c in changes if c.event == "remove"]
    assert removed.keys == {"id": "b"} and removed.old["rev"] == 8 and removed.new is None
    assert not removed.by_ttl
    assert len(changes) == 33
    # and the DynamoDB-format consumer only got the events it asked for
    ddb = [r for e in seen if isinstance(e, dict) for r in e["Records"]]
    assert sorted({r["eventName"] for r in ddb}) == ["INSERT", "REMOVE"] and len(ddb) == 5


def test_a_failed_conditional_write_produces_no_change(env):
    client, orders, _, seen, _ = env
    orders.put({"id": "x"}, expected_version=0)
    with pytest.raises(ConditionFailed):
        orders.put({"id": "x", "again": True}, expected_version=0)
    client.drain()
    assert [c.event for c in seen if not isinstance(c, dict)] == ["insert"]


def test_ttl_expiry_removes_items_with_a_ttl_change(env):
    client, orders, _, seen, clock = env
    orders.put({"id": "session", "expires": clock.now + 60})
    orders.put({"id": "forever"})
    clock.advance(59)
    assert orders.get("session") is not None
    clock.advance(2)
    # expired items disappear at once, before the sweeper deletes them
    assert orders.get("session") is None
    assert [i["id"] for i in orders.scan()] == ["forever"]
    client.drain()  # runs the TTL sweeper by the client's clock, then the streams
    (gone,) = [c for c in seen if not isinstance(c, dict) and c.event == "remove"]
    assert gone.by_ttl and gone.user_identity == {"type": "Service",
                                                  "principalId": "dynamodb.amazonaws.com"}
    ddb = [r for e in seen if isinstance(e, dict) for r in e["Records"]
           if r["eventName"] == "REMOVE"]
    assert ddb[0]["userIdentity"]["principalId"] == "dynamodb.amazonaws.com"
    assert client.sweep()["expired_items"] == 0


def test_a_poison_change_is_retried_then_dead_lettered_and_the_stream_goes_on(env):
    client, orders, _, seen, _ = env
    orders.put({"id": "p", "n": 1})
    orders.put({"id": "p", "n": 2, "poison": True})
    orders.put({"id": "p", "n": 3})
    out = client.drain()
    assert out.dead_lettered == 1
    assert [c.new["n"] for c in seen if not isinstance(c, dict)] == [1, 3]
    (dead,) = client.dead_letters("audit-dlq")
    assert dead.attributes["consumer"] == "audit" and dead.attributes["event"] == "modify"
    assert json.loads(dead.body)["records"][0]["body"]["new"]["n"] == 2


def test_declarations_are_checked():
    app = App("bad")
    with pytest.raises(ConfigError, match="declare the table first"):
        app.on_change("missing", name="f")(lambda changes: None)
    app.table("t", key="id")
    with pytest.raises(ConfigError, match="events must be a non-empty list of insert, "
                                          "modify, remove"):
        app.on_change("t", events=["created"], name="f")(lambda changes: None)
    with pytest.raises(ConfigError, match="format must be one of native, aws-dynamodb"):
        app.on_change("t", format="aws-s3", name="f")(lambda e, c: None)
    with pytest.raises(ConfigError, match="already declared with other settings"):
        app.table("t", key="other")
    with pytest.raises(ConfigError, match="table name"):
        app.table("bad name", key="id")
    with pytest.raises(ConfigError, match="sort_key must differ"):
        app.table("u", key="id", sort_key="id")


# -- the DynamoDB Streams shape, against AWS's own samples ------------------------------------

_AV_KINDS = {"S", "N", "B", "BOOL", "NULL", "L", "M", "SS", "NS", "BS"}


def _check_av(av):
    assert isinstance(av, dict) and len(av) == 1 and set(av) <= _AV_KINDS, av
    (kind, v), = av.items()
    if kind == "L":
        for x in v:
            _check_av(x)
    elif kind == "M":
        for x in v.values():
            _check_av(x)
    elif kind == "N":
        assert isinstance(v, str) and float(v) == float(v)


def _samples(conformance_dir):
    paths = [conformance_dir / "lambda-go-events/events/testdata/dynamodb-event.json",
             conformance_dir / "powertools-events/tests/events/dynamoStreamEvent.json",
             conformance_dir / "java-lambda-events/aws-lambda-java-tests/src/test/resources/"
                               "ddb/dynamo_event.json"]
    out = []
    for p in paths:
        if p.exists():
            out += json.loads(p.read_text())["Records"]
    assert out, "no DynamoDB stream samples found"
    return out


def test_aws_dynamodb_records_have_the_shape_of_aws_samples(env, conformance_dir):
    client, orders, _, seen, _ = env
    orders.put({"id": "o1", "n": 1, "ok": True, "tags": ["a"], "m": {"x": 1.5},
                "none": None})
    orders.update("o1", increment={"n": 1})
    client.drain()
    ours = [r for e in seen if isinstance(e, dict) for r in e["Records"]]
    # make a MODIFY and a REMOVE too, through the formatter the worker uses
    from squall.state.formats import dynamodb_event

    payload = {"resource": "orders", "records": [
        {"sequence": "1001", "event": "modify", "at": 1.0, "body": {
            "keys": {"id": "o1"}, "old": {"id": "o1", "n": 1}, "new": {"id": "o1", "n": 2},
            "version": 2}},
        {"sequence": "2001", "event": "remove", "at": 2.0, "body": {
            "keys": {"id": "o1"}, "old": {"id": "o1", "n": 2}, "new": None, "version": 2}}]}
    ours += dynamodb_event(payload)["Records"]
    by_name = {r["eventName"]: r for r in ours}
    assert set(by_name) == {"INSERT", "MODIFY", "REMOVE"}
    for sample in _samples(conformance_dir):
        mine = by_name[sample["eventName"]]
        # every field AWS sends, we send, with the same JSON type
        for k, v in sample.items():
            if k == "userIdentity":  # only on TTL deletions
                continue
            assert k in mine, k
            assert type(mine[k]) is type(v), k
        for k, v in sample["dynamodb"].items():
            assert k in mine["dynamodb"], k
            if k != "ApproximateCreationDateTime":  # an int or a float in AWS' samples
                assert type(mine["dynamodb"][k]) is type(v), k
        for image in ("Keys", "NewImage", "OldImage"):
            for av in mine["dynamodb"].get(image, {}).values():
                _check_av(av)
            # and AWS' own images decode with our reader
            for av in sample["dynamodb"].get(image, {}).values():
                from_attribute_value(av)
    insert = by_name["INSERT"]
    assert insert["eventSource"] == "aws:dynamodb" and insert["eventVersion"] == "1.1"
    assert re.fullmatch(r"[0-9a-f]{32}", insert["eventID"])
    assert re.fullmatch(r"\d+", insert["dynamodb"]["SequenceNumber"])
    assert insert["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert insert["eventSourceARN"].startswith("arn:aws:dynamodb:") and \
        ":table/orders/stream/" in insert["eventSourceARN"]
    assert "OldImage" not in insert["dynamodb"]
    assert insert["dynamodb"]["NewImage"]["m"] == {"M": {"x": {"N": "1.5"}}}
    assert insert["dynamodb"]["NewImage"]["none"] == {"NULL": True}
    assert "NewImage" not in by_name["REMOVE"]["dynamodb"]


def test_attribute_values_round_trip():
    value = {"s": "x", "n": 3, "f": -2.5, "b": False, "l": [1, "a", None], "m": {"k": [{}]}}
    assert {k: from_attribute_value(to_attribute_value(v)) for k, v in value.items()} == value
