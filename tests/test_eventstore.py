"""The event store from app code: subscriptions (catch-up, checkpoints, retries, live),
snapshots, types filtering."""

from __future__ import annotations

import threading

from squall import App
from squall.testing import TestClient


def make_app():
    app = App("es")
    got: list = []
    state = {"fail": 0}
    live = threading.Event()

    @app.on_events(types=["Deposited"], batch_size=2)
    def audit(events, ctx):
        if state["fail"]:
            state["fail"] -= 1
            raise RuntimeError("down")
        got.append([(e.stream, e.version, e.data["n"]) for e in events])
        live.set()

    @app.function()
    def put(cmd):
        return [e.position for e in app.event_store().append(
            cmd["stream"], [("Deposited", {"n": n}) for n in cmd["ns"]] + [("Noise", {})])]

    @app.function()
    def total(cmd):
        es = app.event_store()
        fold = lambda s, e: s + e.data.get("n", 0)
        if cmd.get("snapshot"):
            state_, version = es.load(cmd["stream"], fold, 0)
            es.snapshot(cmd["stream"], version, state_)
        return es.load(cmd["stream"], fold, 0, version=cmd.get("version"))

    return app, got, state, live


def test_subscription_catches_up_with_checkpoints_and_retries() -> None:
    app, got, state, _ = make_app()
    with TestClient(app) as client:
        assert client.invoke("put", {"stream": "s1", "ns": [1, 2]}, check=True).output == [1, 2, 3]
        client.invoke("put", {"stream": "s2", "ns": [3]}, check=True)
        client.drain()
        # batches of two positions; "Noise" filtered out, but the checkpoint passes it
        assert [x for batch in got for x in batch] == [("s1", 1, 1), ("s1", 2, 2), ("s2", 1, 3)]
        assert client.events.store.get_checkpoint("subscription:audit") == 5
        got.clear()
        state["fail"] = 1
        client.invoke("put", {"stream": "s1", "ns": [4]}, check=True)
        assert client.call(client.events.drain)["failed"] == 1  # stays at its checkpoint
        assert got == [] and client.events.store.get_checkpoint("subscription:audit") == 5
        client.drain()
        assert got == [[("s1", 4, 4)]]


def test_live_subscription_wakes_on_append() -> None:
    app, got, _, live = make_app()
    with TestClient(app) as client:
        client.call(client.events.start)
        client.invoke("put", {"stream": "s", "ns": [7]}, check=True)
        assert live.wait(10)
        assert got == [[("s", 1, 7)]]
        client.call(client.events.stop)


def test_snapshots_and_loading_to_a_version() -> None:
    app, *_ = make_app()
    with TestClient(app) as client:
        client.invoke("put", {"stream": "s", "ns": [1, 2, 3]}, check=True)
        out = client.invoke("total", {"stream": "s", "snapshot": True}, check=True).output
        assert out == [6, 4]
        client.invoke("put", {"stream": "s", "ns": [10]}, check=True)
        assert client.invoke("total", {"stream": "s"}, check=True).output == [16, 6]
        assert client.invoke("total", {"stream": "s", "version": 2}, check=True).output == [3, 2]
