"""examples/bank: commands, events, balance and statement projections, time travel,
rebuild, upcasting, and optimistic concurrency under two writers."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import pytest

from squall.backends.event_store import NewEvent
from squall.testing import TestClient
from squall.testing.conformance import FakeClock

BANK = Path(__file__).parent.parent / "examples" / "bank" / "app.py"


def load_bank():
    spec = importlib.util.spec_from_file_location("bank_example", BANK)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture()
def bank():
    mod = load_bank()
    clock = FakeClock()
    with TestClient(mod.app, clock=clock) as client:
        yield client, clock


def test_commands_events_and_projections(bank) -> None:
    client, clock = bank
    # Given an account with deposits and a withdrawal
    assert client.post("/accounts", json={"id": "a1", "owner": "Ann"}).status_code == 201
    assert client.post("/accounts", json={"id": "a1", "owner": "Bob"}).status_code == 409
    client.invoke("deposit", {"id": "a1", "amount": 100}, check=True)
    clock.advance(60)
    client.invoke("withdraw", {"id": "a1", "amount": 30}, check=True)
    r = client.invoke("withdraw", {"id": "a1", "amount": 500})
    assert r.error_type == "InsufficientFunds"
    # When the projections catch up
    client.drain()
    # Then the query side answers
    assert client.get("/accounts/a1").json() == {"owner": "Ann", "balance": 70}
    lines = client.invoke("statement", {"id": "a1"}, check=True).output
    assert [(l["type"], l["amount"], l["balance"]) for l in lines] == [
        ("AccountCreated", 0, 0), ("Deposited", 100, 100), ("Withdrew", -30, 70)]
    events = client.events.store.read_stream("account-a1")
    assert [e.type for e in events] == ["AccountCreated", "Deposited", "Withdrew"]


def test_balance_at_any_past_time(bank) -> None:
    client, clock = bank
    t0 = clock()
    client.invoke("open_account", {"id": "a", "owner": "Ann"}, check=True)
    clock.advance(100)
    client.invoke("deposit", {"id": "a", "amount": 10}, check=True)
    clock.advance(100)
    client.invoke("deposit", {"id": "a", "amount": 5}, check=True)
    at = lambda t: client.invoke("balance_at", {"id": "a", "at": t}, check=True).output
    assert at(t0 + 50) == {"balance": 0, "version": 1}
    assert at(t0 + 150) == {"balance": 10, "version": 2}
    assert at(t0 + 250) == {"balance": 15, "version": 3}
    assert at(t0 - 1) == {"balance": None, "version": 0}


def test_rebuild_replays_into_a_new_version_while_the_old_serves(bank) -> None:
    client, _ = bank
    for i in range(3):
        client.invoke("open_account", {"id": f"a{i}", "owner": "x"}, check=True)
        client.invoke("deposit", {"id": f"a{i}", "amount": 10 * (i + 1)}, check=True)
    client.drain()
    # When a rebuild starts, the old version keeps answering until the new one caught up
    assert client.invoke("rebuild", {"projection": "balances"}, check=True).output == {"version": 2}
    status = client.events.status("balances")
    assert status["active"] == 1 and status["building"] == 2
    assert client.invoke("balance", {"id": "a2"}, check=True).output["balance"] == 30
    client.drain()
    # Then version 2 serves, with the same answers; version 1's rows are gone
    status = client.events.status("balances")
    assert status["active"] == 2 and status["building"] is None
    assert client.invoke("balance", {"id": "a2"}, check=True).output["balance"] == 30
    assert client.events.store.row_query("balances@v1") == []


def test_old_event_versions_are_upcast(bank) -> None:
    client, _ = bank
    client.invoke("open_account", {"id": "old", "owner": "Ann"}, check=True)
    # an event written by an older version of the code, as {"value": n}, schema 1
    client.events.store.append("account-old", [NewEvent("Deposited", {"value": 7}, {}, 1)])
    client.invoke("deposit", {"id": "old", "amount": 3}, check=True)
    client.drain()
    assert client.invoke("balance", {"id": "old"}, check=True).output["balance"] == 10
    stored = client.events.store.read_stream("account-old")
    assert [e.schema_version for e in stored] == [1, 1, 2]  # stored events never change


def test_two_writers_on_one_account_conflict_and_retry(bank) -> None:
    client, _ = bank
    client.invoke("open_account", {"id": "c", "owner": "Ann"}, check=True)
    mod_app = client.app
    ledger = mod_app.event_store()
    from squall.eventstore import ConcurrencyError

    # Given two writers that loaded the same version
    v = client.call(lambda: client.events.serve(["version", "account-c"]))
    client.events.store.append("account-c", [NewEvent("Deposited", {"amount": 1}, {}, 2)], v)
    with pytest.raises(ConcurrencyError, match="is at version 2, the append expected 1"):
        client.events.store.append("account-c", [NewEvent("Deposited", {"amount": 2}, {}, 2)], v)
    # And through the command side, many tellers at once: every deposit lands exactly once
    errors = []

    def teller() -> None:
        for _ in range(5):
            r = client.invoke("deposit", {"id": "c", "amount": 1})
            if not r.ok:
                errors.append(r.error_message)

    threads = [threading.Thread(target=teller) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    client.drain()
    assert client.invoke("balance", {"id": "c"}, check=True).output["balance"] == 1 + 20
    assert ledger is not None
