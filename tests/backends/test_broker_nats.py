"""The NATS JetStream broker against the shared conformance suite, in real time (the
server keeps visibility timeouts, retry delays and the duplicate window), plus what only
a network broker has to show: nodes competing for one queue, waking each other's long
polls and moving each other's delayed messages, surviving a server crash, and failing
clearly when there is no server."""

from __future__ import annotations

import asyncio
import time

import pytest
from nats_fixtures import NatsServer, delete_prefix, free_port, nats_url, unique_prefix

from squall.backends import BrokerError, open_broker
from squall.backends.jetstream.broker import NatsBroker
from squall.backends.jetstream.connection import reconnect_delay
from squall.backends.jetstream.names import token
from squall.backends.jetstream.receipts import DeliveryLedger, Receipt
from squall.testing.conformance import BrokerConformance, async_test, msg
from squall.testing.stream_conformance import StreamConformance


@pytest.fixture
def url() -> str:
    return nats_url()


@pytest.fixture
def prefix(url):
    with unique_prefix(url) as name:
        yield name


class TestNatsBroker(BrokerConformance, StreamConformance):
    REAL_TIME = True

    @pytest.fixture
    def open_broker(self, url, prefix):
        async def open_(clock, **opts):
            return NatsBroker(url, clock=clock, prefix=prefix, **opts)

        return open_


# -- several nodes on one server ---------------------------------------------------------


@async_test
async def test_a_receive_waiting_on_one_node_wakes_when_another_sends(url, prefix):
    a, b = NatsBroker(url, prefix=prefix), NatsBroker(url, prefix=prefix)
    try:
        await b.stats("q")  # connected, so the timing below is the wake-up's alone
        # Given a long poll on node a
        waiter = asyncio.ensure_future(a.receive("q", 5, wait_s=20))
        await asyncio.sleep(0.05)
        # When node b sends
        t0 = time.monotonic()
        await b.send("q", [msg("wake")])
        # Then a's receive returns it at once, not at the end of its wait
        (d,) = await asyncio.wait_for(waiter, 5)
        assert d.body == b"wake" and time.monotonic() - t0 < 1
    finally:
        await a.close()
        await b.close()


@async_test
async def test_a_late_ack_from_an_expired_delivery_does_not_settle_the_redelivery(url, prefix):
    # nats-server applies an ack on an old delivery's subject to the current delivery
    # (nats-server #4786); the receipt must not let that happen
    a, b = NatsBroker(url, prefix=prefix), NatsBroker(url, prefix=prefix)
    try:
        await a.send("q", [msg("slow work")])
        (first,) = await a.receive("q", visibility_timeout_s=0.3)
        (second,) = await b.receive("q", visibility_timeout_s=30, wait_s=5)  # redelivered
        assert second.message_id == first.message_id and second.receive_count == 2
        # Given node a finishes late: its ack and nack are refused, not sent
        assert await a.ack("q", [first.receipt]) == [False]
        assert await a.nack("q", first.receipt) is False
        # Then b's delivery is still b's to settle (and a nack brings it back)
        assert await b.nack("q", second.receipt, error="b gives up")
        (third,) = await a.receive("q", wait_s=5)
        assert third.receive_count == 3 and third.last_error == "b gives up"
        # and a receipt seen by another node is judged by the deadline it carries
        assert await b.ack("q", [first.receipt]) == [False]
        assert await b.ack("q", [third.receipt]) == [True]
    finally:
        await a.close()
        await b.close()


@async_test
async def test_a_delayed_message_is_moved_by_any_node(url, prefix):
    # Given node a sends a delayed message and goes away before it is due
    a = NatsBroker(url, prefix=prefix)
    (mid,) = await a.send("q", [msg("later", delay_s=0.5)])
    await a.close()
    # Then node b delivers it when it is due, with its id
    b = NatsBroker(url, prefix=prefix)
    try:
        t0 = time.monotonic()
        (d,) = await b.receive("q", wait_s=10)
        assert d.message_id == mid and d.body == b"later" and d.receive_count == 1
        assert time.monotonic() - t0 < 5
    finally:
        await b.close()


@async_test
async def test_a_duplicate_send_returns_the_first_id_even_after_it_was_consumed(url, prefix):
    b = NatsBroker(url, prefix=prefix)
    try:
        (first,) = await b.send("q", [msg("x", dedup_key="k")])
        (d,) = await b.receive("q")
        assert await b.ack("q", [d.receipt]) == [True]
        assert await b.send("q", [msg("x", dedup_key="k")]) == [first]
        assert await b.receive("q") == []
    finally:
        await b.close()


# -- the server crashes ------------------------------------------------------------------

@async_test
async def test_a_server_crash_loses_no_sent_message_and_the_broker_reconnects(tmp_path):
    server = NatsServer(tmp_path / "store")
    server.start()
    b = NatsBroker(server.url, prefix="CRASH", request_timeout_s=10)
    try:
        # Given 30 messages sent: 5 acked, 5 received and not acked, 20 never received
        ids = await b.send("q", [msg(str(i)) for i in range(30)])
        done = await b.receive("q", 5, visibility_timeout_s=60)
        assert all(await b.ack("q", [d.receipt for d in done]))
        held = await b.receive("q", 5, visibility_timeout_s=0.5)
        # When the server is killed (-9) and started again on its port and store
        server.kill()
        server.start()
        # Then the broker reconnects (with backoff) and works on
        (late,) = await b.send("q", [msg("after the restart")])
        # and every message not acked before the crash comes back (the held ones after
        # their visibility timeout): none is lost
        expected = set(ids) - {d.message_id for d in done} | {late}
        got: set[str] = set()
        while not expected <= got:
            batch = await b.receive("q", 10, wait_s=5)
            assert batch, f"{len(expected - got)} messages did not come back"
            got |= {d.message_id for d in batch}
            assert all(await b.ack("q", [d.receipt for d in batch]))
        assert {d.message_id for d in held} <= got
        # (a 2.9 server may lose acks of its last moments: only those can come twice)
        assert got - expected <= {d.message_id for d in done}
        assert b.conn._nc is not None and b.conn._nc.stats["reconnects"] >= 1
    finally:
        await b.close()
        server.kill()


# -- no server ---------------------------------------------------------------------------

@async_test
async def test_an_unreachable_server_is_a_clear_broker_error_quickly():
    port = free_port()  # nothing listens there
    b = open_broker(f"nats://127.0.0.1:{port}")  # no I/O yet
    t0 = time.monotonic()
    with pytest.raises(BrokerError, match=rf"127\.0\.0\.1:{port}.*nats-server -js"):
        await b.send("q", [msg()])
    assert time.monotonic() - t0 < 3
    with pytest.raises(BrokerError, match="nats-server -js"):  # and again, not stuck
        await b.receive("q")
    await b.close()


def test_a_bad_url_is_a_clear_broker_error_at_once():
    for url, why in [("nats://", "no host"), ("nats://127.0.0.1:port", "port must be a number"),
                     ("nats://:4222", "no host")]:
        with pytest.raises(BrokerError, match=why):
            open_broker(url)
    with pytest.raises(BrokerError, match="prefix"):
        NatsBroker("nats://127.0.0.1:4222", prefix="no.dots")


@async_test
async def test_cleanup_deletes_only_the_prefix(url):
    a, b = f"T{time.time_ns():x}a", f"T{time.time_ns():x}b"
    for prefix in (a, b):
        node = NatsBroker(url, prefix=prefix)
        await node.send("q", [msg()])
        await node.lease("l", "me", 10)
        await node.close()
    assert sorted(await delete_prefix(url, a)) == sorted([f"{a}_MSGS", f"KV_{a}_STATE"])
    assert sorted(await delete_prefix(url, b)) == sorted([f"{b}_MSGS", f"KV_{b}_STATE"])


# -- the parts without I/O ---------------------------------------------------------------

def test_names_become_one_subject_token():
    assert token("orders") == "orders"
    assert token("_async.fn") == "_async=2Efn"
    assert token("a b*>") == "a=20b=2A=3E"
    assert token("") == "="
    assert token("x" * 200) != token("x" * 199) and len(token("x" * 200)) == 80
    assert token("a=2E") != token("a.")


def test_reconnects_back_off_exponentially_with_jitter():
    assert reconnect_delay(0) == 0.0
    assert [reconnect_delay(n, rand=lambda: 1.0) for n in (1, 2, 3, 10)] == [0.05, 0.1, 0.2, 2.0]
    assert reconnect_delay(3, rand=lambda: 0.0) == 0.1


def test_receipts_parse_only_their_own_format():
    r = Receipt.of("$JS.ACK.S_MSGS.Q_q.2.17.40.1795885477249440694.3", 100.0)
    assert r is not None and (r.stream, r.consumer, r.delivered, r.stream_seq) == (
        "S_MSGS", "Q_q", 2, 17)
    assert Receipt.parse(r.encode()) == r
    for garbage in ["", "not-a-receipt", "r1:x:$JS.ACK.a.b.1.2.3.4.5", "r1:1.0:_INBOX.x"]:
        assert Receipt.parse(garbage) is None
    v2 = Receipt.of("$JS.ACK.dom.acc.S.C.1.5.6.7.0.rnd", 1.0)  # 2.10+: domain, account hash
    assert v2 is not None and (v2.stream, v2.stream_seq) == ("S", 5)


def test_the_ledger_rejects_settled_expired_and_late_foreign_receipts():
    mono, wall = [0.0], [1000.0]
    ledger = DeliveryLedger(monotonic=lambda: mono[0], wall=lambda: wall[0])
    mine = Receipt.of("$JS.ACK.S.C.1.1.1.0.0", 1010.0)
    assert mine is not None
    ledger.issue(mine, 10.0)
    assert ledger.claim(mine) and not ledger.claim(mine)  # settled once
    ledger.unclaim(mine)  # the server did not take it
    assert ledger.usable(mine)
    ledger.extend(mine, 30.0)
    mono[0], wall[0] = 20.0, 1020.0  # past the receipt's own deadline, within the extension
    assert ledger.usable(mine)
    mono[0] = 30.0
    assert not ledger.usable(mine)  # expired
    foreign = Receipt.of("$JS.ACK.S.C.1.2.2.0.0", 1025.0)
    assert foreign is not None
    assert ledger.claim(foreign) and not ledger.claim(foreign)
    wall[0] = 1026.0
    assert not ledger.usable(Receipt.of("$JS.ACK.S.C.1.3.3.0.0", 1025.5))  # type: ignore[arg-type]
    mono[0] = 100.0
    ledger.sweep()
    assert len(ledger) == 0
