"""The bank account, event-sourced (CQRS).

Command side: `open_account`, `deposit`, `withdraw` load an account from its events,
check the command, and append new events with the version they loaded (two tellers on
one account: the second gets a ConcurrencyError, nothing is written, it retries).
Query side: the `balances` and `statements` projections, kept from the event store's
global order with checkpoints, and queried by `balance` and `statement`; `balance_at`
answers from the events themselves (time travel). Queries and commands are separate
functions with their own settings, so each side scales on its own.

    squall run examples/bank/app.py
    curl -XPOST localhost:8080/accounts -d '{"id": "a1", "owner": "Ann"}'
    curl -XPOST localhost:8080/accounts/a1/deposits -d '{"amount": 100}'
    curl localhost:8080/accounts/a1
"""

from __future__ import annotations

from squall import App
from squall.eventstore import ConcurrencyError

app = App("bank")
ledger = app.event_store()


class InsufficientFunds(Exception):
    pass


class UnknownAccount(Exception):
    pass


def stream(account: str) -> str:
    return f"account-{account}"


def apply(state: dict | None, event) -> dict:
    """The account's state from its events (the write model)."""
    if event.type == "AccountCreated":
        return {"owner": event.data["owner"], "balance": 0}
    if event.type == "Deposited":
        return {**state, "balance": state["balance"] + event.data["amount"]}
    if event.type == "Withdrew":
        return {**state, "balance": state["balance"] - event.data["amount"]}
    return state


@app.upcaster("Deposited", from_version=1)
def deposited_v1(data: dict) -> dict:
    """Deposits were first recorded as {"value": n}; since version 2 as {"amount": n}."""
    return {"amount": data["value"]}


# -- commands ------------------------------------------------------------------------

def _load(account: str) -> tuple[dict, int]:
    state, version = ledger.load(stream(account), apply)
    if version == 0:
        raise UnknownAccount(f"no account {account!r}")
    return state, version


def _retrying(command):
    """Optimistic concurrency: on a conflict, load again and re-check the command."""
    def run(cmd, *_):
        for _ in range(10):
            try:
                return command(cmd)
            except ConcurrencyError:
                continue
        raise ConcurrencyError("", 0, 0, "too many concurrent writers; try again")
    run.__name__ = command.__name__
    return run


@app.function(concurrency=4)
def open_account(cmd):
    ledger.append(stream(cmd["id"]), [("AccountCreated", {"owner": cmd["owner"]})],
                  expected_version=0)
    return {"id": cmd["id"]}


@app.function(name="deposit", concurrency=4)
@_retrying
def deposit(cmd):
    _, version = _load(cmd["id"])
    if cmd["amount"] <= 0:
        raise ValueError("a deposit must be positive")
    (e,) = ledger.append(stream(cmd["id"]), [("Deposited", {"amount": cmd["amount"]})],
                         expected_version=version)
    return {"version": e.version}


@app.function(name="withdraw", concurrency=4)
@_retrying
def withdraw(cmd):
    state, version = _load(cmd["id"])
    if cmd["amount"] > state["balance"]:
        raise InsufficientFunds(f"account {cmd['id']!r} has {state['balance']}, "
                                f"cannot withdraw {cmd['amount']}")
    (e,) = ledger.append(stream(cmd["id"]), [("Withdrew", {"amount": cmd["amount"]})],
                         expected_version=version)
    return {"version": e.version}


# -- projections (read models) -------------------------------------------------------

def _account(event) -> str:
    return event.stream.removeprefix("account-")


@app.projection("balances", types=["AccountCreated", "Deposited", "Withdrew"])
def balances(view, event):
    acc = _account(event)
    if event.type == "AccountCreated":
        view.put(acc, {"owner": event.data["owner"], "balance": 0})
        return
    row = view.get(acc)
    sign = 1 if event.type == "Deposited" else -1
    view.put(acc, {**row, "balance": row["balance"] + sign * event.data["amount"]})


@app.projection("statements", types=["AccountCreated", "Deposited", "Withdrew"])
def statements(view, event):
    acc = _account(event)
    running = view.get(f"{acc}:balance", 0)
    amount = {"Deposited": 1, "Withdrew": -1}.get(event.type, 0) * (event.data or {}).get(
        "amount", 0)
    view.put(f"{acc}:balance", running + amount)
    view.put(f"{acc}:line:{event.version:010d}", {
        "type": event.type, "amount": amount, "balance": running + amount,
        "at": event.recorded_at})


# -- queries -------------------------------------------------------------------------

@app.function(concurrency=16, provisioned=0)
def balance(query):
    row = app.read_model("balances").get(query["id"])
    if row is None:
        raise UnknownAccount(f"no account {query['id']!r}")
    return row


@app.function(concurrency=16)
def statement(query):
    return [line for _, line in app.read_model("statements").query(f"{query['id']}:line:")]


@app.function(concurrency=16)
def balance_at(query):
    """The balance as it was at time `at` (epoch seconds), from the events."""
    state, version = ledger.load(stream(query["id"]), apply, at=query["at"])
    return {"balance": state["balance"] if state else None, "version": version}


@app.function()
def rebuild(query):
    return {"version": app.read_model(query["projection"]).rebuild()}


# -- HTTP ----------------------------------------------------------------------------

@app.http("POST", "/accounts")
def http_open(request):
    body = request.json()
    try:
        return 201, app.invoke("open_account", body)
    except Exception as exc:
        return 409, {"error": str(exc)}


@app.http("POST", "/accounts/{id}/deposits")
def http_deposit(request):
    return app.invoke("deposit", {"id": request.path_params["id"], **request.json()})


@app.http("POST", "/accounts/{id}/withdrawals")
def http_withdraw(request):
    return app.invoke("withdraw", {"id": request.path_params["id"], **request.json()})


@app.http("GET", "/accounts/{id}")
def http_balance(request):
    return app.invoke("balance", {"id": request.path_params["id"]})
