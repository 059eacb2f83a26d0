"""CloudEvents over HTTP onto the bus, with the official CloudEvents SDK as the client."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from servers import RunningServer
from squall.backends import open_store, store_url_for_data_dir

try:  # cloudevents 2.x keeps the long-standing API under v1
    from cloudevents.v1.conversion import to_binary, to_structured
    from cloudevents.v1.http import CloudEvent
except ImportError:  # pragma: no cover - cloudevents 1.x
    from cloudevents.conversion import to_binary, to_structured
    from cloudevents.http import CloudEvent

APP = str(Path(__file__).parent / "apps" / "busapp.py")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with RunningServer(APP, str(tmp_path_factory.mktemp("ce"))) as s:
        yield s


def _charges(server) -> list:
    async def settled() -> list:
        broker = server.sup.messaging.broker
        while (await broker.stats("_async.charge")).total:
            await asyncio.sleep(0.02)
        await server.sup.runtime.on_result.__self__.flush()
        store = open_store(store_url_for_data_dir(server.sup.opts.data_dir))
        try:
            return store.invocations("busapp", "charge", limit=100)
        finally:
            store.close()

    return server.run(asyncio.wait_for(settled(), 15), 20)


def test_binary_structured_and_batch_modes(server):
    with httpx.Client(base_url=server.url, timeout=10) as http:
        attrs = {"type": "OrderCreated", "source": "shop.orders", "id": "ce-1"}
        headers, body = to_binary(CloudEvent(attrs, {"id": 1, "total": 5, "country": "FR"}))
        r = http.post("/_squall/events", headers=headers, content=body)
        assert r.status_code == 202 and r.json()["ids"] == ["ce-1"]
        attrs2 = {"type": "OrderCreated", "source": "shop.orders", "id": "ce-2"}
        headers, body = to_structured(CloudEvent(attrs2, {"id": 2, "total": 5, "country": "FR"}))
        assert http.post("/_squall/events", headers=headers, content=body).status_code == 202
        batch = [{"specversion": "1.0", "type": "OrderCreated", "source": "shop.orders",
                  "id": f"ce-b{i}", "data": {"id": 10 + i, "country": "FR"}} for i in range(3)]
        r = http.post("/_squall/events", content=json.dumps(batch),
                      headers={"content-type": "application/cloudevents-batch+json"})
        assert r.status_code == 202 and r.json()["accepted"] == 3
        # the same CloudEvent (source, id) again is accepted but not delivered twice
        headers, body = to_binary(CloudEvent(attrs, {"id": 1, "total": 5, "country": "FR"}))
        assert http.post("/_squall/events", headers=headers, content=body).status_code == 202
    rows = _charges(server)
    assert len(rows) == 5 and all(r.status == "ok" for r in rows)


def test_bad_cloudevents_are_400(server):
    with httpx.Client(base_url=server.url, timeout=10) as http:
        r = http.post("/_squall/events", content=b'{"specversion": "1.0"}',
                      headers={"content-type": "application/cloudevents+json"})
        assert r.status_code == 400 and r.json()["code"] == "bad_request"
        r = http.post("/_squall/events", content=b"{}", headers={
            "ce-specversion": "0.3", "ce-id": "1", "ce-source": "s", "ce-type": "t"})
        assert r.status_code == 400 and "1.0" in r.json()["message"]
