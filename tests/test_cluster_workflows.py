"""Distributed mode, workflows and the event store: two `squall worker` nodes on one
PostgreSQL schema share executions, histories, events, projections and checkpoints.

Workflows started through node A are advanced by A alone (a lease per execution); a
signal sent through B reaches the execution A drives. A is killed -9 (with its zygote and
workers) while every workflow is inside its slow step; B takes the executions over once
A's leases expire, replays them from their histories and finishes them: finished steps
are not run again, so each step's effect happens once (only the step that was running
when A died starts again). A state-machine execution A's worker was driving is taken
over the same way, from its last checkpoint. An event appended through one node is
projected once and read through the other.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from servers import wait_until
from test_cluster import PG, Node, need_postgres
from test_workflow_crash import kill_tree

APP = str(Path(__file__).parent / "apps" / "cluster_wf.py")
N = 4


def call(method: str, url: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def effects(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=30)
    try:
        return db.execute("SELECT what, node FROM effects ORDER BY rowid").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        db.close()


def statuses(schema: str) -> dict[str, str]:
    with psycopg.connect(PG) as conn:
        return dict(conn.execute(f'SELECT id, status FROM "{schema}".wf_executions').fetchall())


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_killed_node_s_workflows_are_finished_by_another(tmp_path):
    need_postgres()
    schema = f"t_{uuid.uuid4().hex[:10]}"
    url = f"{PG}?schema={schema}"
    fx, release = tmp_path / "effects.db", tmp_path / "release"
    env = {**os.environ, "EFFECTS_DB": str(fx), "RELEASE_FILE": str(release),
           "SQUALL_LEASE_TTL_S": "3"}
    env.pop("SQUALL_CACHE_URL", None)
    nodes = [Node("A", url, url, tmp_path, env, app=APP)]
    try:
        nodes[0].wait_listening()  # A first: it takes the projection's lease
        nodes.append(Node("B", url, url, tmp_path, env, app=APP))
        a, b = nodes
        b.wait_listening()
        # Given an event appended through A: projected once, read through B
        assert call("POST", a.url + "/notes", {"key": "k1", "text": "hello"})["position"] == 1
        wait_until(lambda: call("GET", b.url + "/notes/k1")["note"] is not None, 15,
                   "the note projected and readable through B")
        assert call("GET", b.url + "/notes/k1")["note"]["text"] == "hello"
        # and a workflow started through A that waits for a timer, then a signal sent
        # through B (whose wake-up reaches A's driver through the shared history)
        gate = call("POST", a.url + "/gates", {"x": "gate"})["id"]
        wait_until(lambda: "SignalWaitStarted" in history(schema, gate), 15, "the signal wait")
        call("POST", b.url + f"/signals/{gate}", {"data": "ok"})
        wait_until(lambda: statuses(schema).get(gate) == "succeeded", 15, "the gate finished")
        # When N workflows started through A, and a state machine run through A, are all
        # inside their slow step
        ids = [call("POST", a.url + "/workflows", {"x": i})["id"] for i in range(N)]
        threading.Thread(target=lambda: _ignore_errors(
            lambda: call("POST", a.url + "/machines", {"x": 100})), daemon=True).start()
        started = lambda: sum(w.startswith("slow-started:") for w, _ in effects(fx))  # noqa
        wait_until(lambda: started() == N + 1, 15, "every execution in its slow step")
        assert {node for w, node in effects(fx) if w.startswith("slow-started:")} == {"A"}
        # and A dies (kill -9 of the supervisor, its zygote and its workers)
        kill_tree(a.proc)
        release.touch()
        # Then B finishes every one of them
        t0 = time.monotonic()
        (sm,) = machines(schema)
        wait_until(lambda: all(statuses(schema).get(i) == "succeeded" for i in [*ids, sm]),
                   30, "B finished A's workflows and state machine")
        took = time.monotonic() - t0
        # and an event appended through B is projected too, by B now (from the checkpoint
        # A left: the first event is not projected again)
        call("POST", b.url + "/notes", {"key": "k2", "text": "bye"})
        wait_until(lambda: call("GET", b.url + "/notes/k2")["note"] is not None, 15,
                   "the second note projected")
        # and the CLI lists them from the shared store
        listed = subprocess.run(
            [sys.executable, "-m", "squall.cli.main", "workflows", "list", APP, "--json"],
            env={**env, "SQUALL_STORE": url}, capture_output=True, text=True, timeout=30)
        assert listed.returncode == 0, listed.stderr
        assert {r["id"]: r["status"] for r in json.loads(listed.stdout)} == {
            **{i: "succeeded" for i in [*ids, sm]}, gate: "succeeded"}
    finally:
        for n in nodes:
            n.stop()
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    done = effects(fx)
    counts = Counter(w for w, _ in done)
    for i in [*range(N), 100]:  # finished steps not run again; the interrupted one again
        assert counts[f"first:{i}"] == 1 and counts[f"slow:{i}"] == 1, counts
        assert counts[f"last:{i}"] == 1 and counts[f"slow-started:{i}"] == 2, counts
        assert {node for w, node in done if w in (f"slow:{i}", f"last:{i}")} == {"B"}
    assert counts["last:gate-ok"] == 1  # the signal delivered once
    assert counts["projected:k1"] == 1 and counts["projected:k2"] == 1, counts
    assert [n for w, n in done if w.startswith("projected:")] == ["A", "B"]
    assert took < 20, f"the takeover took {took:.1f} s"


def _ignore_errors(fn) -> None:
    try:
        fn()
    except OSError:
        pass  # the node was killed under this request


def machines(schema: str) -> list[str]:
    with psycopg.connect(PG) as conn:
        return [i for (i,) in conn.execute(
            f'SELECT id FROM "{schema}".wf_executions WHERE kind = %s', ("state_machine",))]


def history(schema: str, eid: str) -> list[str]:
    with psycopg.connect(PG) as conn:
        return [t for (t,) in conn.execute(
            f'SELECT type FROM "{schema}".wf_history WHERE execution_id = %s ORDER BY seq',
            (eid,)).fetchall()]
