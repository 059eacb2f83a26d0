"""Distributed mode, state: two `squall worker` nodes on one PostgreSQL schema share the
app's tables, change streams and objects. A write through one node's route is read
through the other's, and the on_change function runs once per change, on whichever node
holds the shard's lease."""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from servers import wait_until
from test_cluster import PG, Node, need_postgres

APP = str(Path(__file__).parent / "apps" / "cluster_state.py")


def call(method: str, url: str, body: bytes | None = None) -> dict:
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def runs(path: Path) -> list[tuple]:
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=30)
    try:
        return db.execute("SELECT sequence, event, id, node FROM runs").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_postgres_nodes_share_tables_feeds_and_objects(tmp_path):
    need_postgres()
    schema = f"t_{uuid.uuid4().hex[:10]}"
    url = f"{PG}?schema={schema}"
    count_db = tmp_path / "runs.db"
    env = {**os.environ, "COUNT_DB": str(count_db)}
    env.pop("SQUALL_CACHE_URL", None)
    nodes = [Node(f"node{i}", url, url, tmp_path, env, app=APP) for i in range(2)]
    try:
        for n in nodes:
            n.wait_listening()
        a, b = nodes
        # Given orders written through one node (so, whoever holds a shard's lease, some
        # changes are committed on the other node)
        for i, (one, other) in enumerate([(a, b), (b, a)] * 3):
            put = call("PUT", one.url + f"/orders/o{i}", b'{"total": 5}')
            assert put == {"item": {"id": f"o{i}", "total": 5}, "version": 1}
            # Then the other node reads each, and updates it
            assert call("GET", other.url + f"/orders/o{i}") == put
            assert call("PUT", other.url + f"/orders/o{i}", b'{"total": 7}')["version"] == 2
            assert call("GET", one.url + f"/orders/o{i}")["item"]["total"] == 7
        # and the audit ran for each change
        wait_until(lambda: len(runs(count_db)) >= 12, 30, f"12 audits (have {runs(count_db)})")
        # an object stored through B is read (a range) through A
        assert call("PUT", b.url + "/files/note.txt", b"hello world")["etag"]
        assert call("GET", a.url + "/files/note.txt")["range"] == "llo "

        def caught_up() -> bool:  # every shard's checkpoint at its head: no redelivery due
            with psycopg.connect(PG) as conn:
                heads = dict(conn.execute(
                    f'SELECT shard, seq FROM "{schema}".state_feed_heads '
                    "WHERE feed = 'table:orders'").fetchall())
                cps = dict(conn.execute(
                    f'SELECT shard, seq FROM "{schema}".state_feed_checkpoints '
                    "WHERE feed = 'table:orders' AND consumer = 'audit'").fetchall())
            return all(cps.get(s) == seq for s, seq in heads.items())

        wait_until(caught_up, 30, "the audit's checkpoints at the feed's head")
    finally:
        for n in nodes:
            n.stop()
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    done = runs(count_db)
    assert len(done) == 12 and len({seq for seq, *_ in done}) == 12  # each change once
    for i in range(6):  # in order per key
        assert [e for _, e, oid, _ in done if oid == f"o{i}"] == ["insert", "modify"]
    for n in nodes:  # no node fell back to keeping state of its own
        assert "state is kept on this node only" not in n.log.read_text()
