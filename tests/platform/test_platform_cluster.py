"""Distributed platform: two `squall server` nodes on one PostgreSQL. A deploy on either
node reaches the other (the version is in the registry; the node fetches and builds it),
each node reports its state, each app's data is in a schema of its own, and a delete
stops the app everywhere."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import psycopg
import pytest
from platform_fixtures import RunningPlatform, venv_cache, write_app
from servers import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backends"))
from pg_fixtures import postgres_url  # noqa: E402

APP = """
from squall import App

app = App("ledger")
entries = app.table("entries", key="id")

@app.http("PUT", "/e/{{id}}")
def put(request):
    entries.put({{"id": request.path_params["id"], "v": {version}}})
    return 200, {{"v": {version}}}

@app.http("GET", "/e/{{id}}")
def get(request):
    return 200, {{"item": entries.get(request.path_params["id"]), "v": {version}}}
"""


@pytest.fixture
def pg_schema():
    import uuid

    url = postgres_url()
    name = f"squall_test_{uuid.uuid4().hex[:10]}"
    yield url, name
    with psycopg.connect(url, autocommit=True) as conn:
        schemas = [r[0] for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (name + "%",))]
        for schema in schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.slow
def test_a_deploy_reaches_every_node_and_apps_shows_each_node(tmp_path, tmp_path_factory,
                                                              pg_schema):
    url, schema = pg_schema
    shared = dict(store_url=f"{url}?schema={schema}", broker_url=f"{url}?schema={schema}",
                  sync_s=0.1)
    venvs = venv_cache(tmp_path_factory)
    with RunningPlatform(tmp_path / "a", venvs, node_id="node-a", **shared) as a, \
            RunningPlatform(tmp_path / "b", venvs, node_id="node-b", **shared) as b:
        # Given version 1 deployed through node a
        r = a.deploy("ledger", write_app(tmp_path / "v1", APP.format(version=1)))
        assert r.status_code == 201, r.text

        def serves(node, version: int) -> bool:
            resp = httpx.get(node.url + "/ledger/e/x", timeout=10)
            return resp.status_code == 200 and resp.json()["v"] == version

        # Then node b fetches, builds and serves it, on the same data
        wait_until(lambda: serves(b, 1), 30, "node b to serve version 1")
        assert httpx.put(a.url + "/ledger/e/1").status_code == 200
        assert httpx.get(b.url + "/ledger/e/1").json()["item"] == {"id": "1", "v": 1}
        # and `squall apps` on either node shows both nodes' state
        wait_until(lambda: set(b.app_state("ledger")["nodes"]) == {"node-a", "node-b"}, 10,
                   "both nodes to report")
        nodes = b.app_state("ledger")["nodes"]
        assert all([r["version"] for r in n["running"]] == [1] for n in nodes.values())
        # When version 2 is deployed through b, a follows
        assert b.deploy("ledger", write_app(tmp_path / "v2", APP.format(version=2))
                        ).status_code == 201
        wait_until(lambda: serves(a, 2), 30, "node a to serve version 2")
        # the app's data is in its own schema, beside the registry's
        with psycopg.connect(url) as conn:
            tables = {r[0] for r in conn.execute(
                "SELECT table_schema FROM information_schema.tables "
                "WHERE table_schema LIKE %s", (schema + "%",))}
        assert tables == {schema, f"{schema}_app_ledger"}
        # its storage is measured there (for the storage quota)
        host = a.platform.hosts["ledger"]
        assert host.storage.measure() > 0
        # a delete on one node stops the app on the other
        assert a.control("DELETE", "/apps/ledger").status_code == 200
        wait_until(lambda: httpx.get(b.url + "/ledger/e/1").status_code == 404, 10,
                   "node b to drop the deleted app")
        def schema_gone() -> bool:  # and its data with it, once every node let go
            with psycopg.connect(url) as conn:
                return conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s",
                                    (f"{schema}_app_ledger",)).fetchone()[0] == 0

        wait_until(schema_gone, 10, "the deleted app's schema to be dropped")
