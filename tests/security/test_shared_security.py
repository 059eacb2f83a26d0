"""API keys, daily quotas and secrets shared by the nodes of a cluster.

Two "nodes" are two sets of stores (squall.security.stores.open_security) and two
gateway guards on one app store: a PostgreSQL schema of its own per test (dropped
after), and an SQLite store file shared by processes on one machine. A key made through
one node works on the other, a revocation reaches the other within its refresh
interval, the daily quota is one exact count, and secrets set on one are read on the
other only with the same master key.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from servers import wait_until
from squall.cli.security import keys_cli, secrets_cli
from squall.gateway.errors import ERRORS
from squall.security.guard import GatewaySecurity, Reject, RoutePolicy
from squall.security.keys import KeyStoreError, UsagePlan
from squall.security.secrets import SecretError
from squall.security.shared_secrets import SecretKeyError
from squall.security.stores import open_security
from test_cluster import PG, need_postgres
from test_cluster import Node as Worker

REFRESH_S = 0.05  # the nodes' poll interval here (default 0.5 s)
ROUTE = RoutePolicy("orders", auth="api_key")


@pytest.fixture(params=["postgres", "sqlite"])
def store_url(request, tmp_path):
    """One app store shared by the nodes of a test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    need_postgres()
    schema = f"sec_{uuid.uuid4().hex[:12]}"
    yield f"{PG}?schema={schema}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def master(monkeypatch):
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("SQUALL_SECRETS_KEY", key)
    monkeypatch.delenv("SQUALL_SECRETS_KEY_FILE", raising=False)
    return key


class Wall:
    def __init__(self) -> None:
        self.now = 20_000 * 86400 + 3600.0  # 01:00 UTC on some day

    def __call__(self) -> float:
        return self.now


class Node:
    """One node's stores and gateway guard."""

    def __init__(self, url: str, tmp: Path, name: str, wall: Wall | None = None) -> None:
        self.stores = open_security(tmp / name, url, check=True, refresh_s=REFRESH_S)
        self.guard = GatewaySecurity(keys=self.stores.keys, secrets=self.stores.secrets,
                                     quotas=self.stores.quotas, wall=wall or time.time)
        self.guard.on_close = self.stores.close

    def admit(self, key: str) -> dict:
        return asyncio.run(self.guard.admit(ROUTE, [("x-api-key", key)], "", {}, "r1"))

    def refused(self, key: str) -> str | None:
        try:
            self.admit(key)
        except Reject as exc:
            return exc.code
        return None


@pytest.fixture
def nodes(store_url, tmp_path, master):
    wall = Wall()
    a, b = Node(store_url, tmp_path, "a", wall), Node(store_url, tmp_path, "b", wall)
    a.wall = b.wall = wall
    yield a, b
    a.guard.close()
    b.guard.close()


def test_a_key_made_on_one_node_works_on_the_other_and_its_revocation_reaches_it(nodes):
    a, b = nodes
    assert b.refused("sq_000000000000_" + "x" * 43) == "forbidden"  # b polls from now on
    # Given a key created through node a
    plain, key = a.stores.keys.create("partner", UsagePlan(rate=100.0))
    # Then node b accepts it within its refresh interval, with its record
    wait_until(lambda: b.refused(plain) is None, 5, "node b to accept the new key")
    assert b.admit(plain)["keyId"] == key.id
    assert [k.id for k in b.stores.keys.list()] == [key.id]
    # When a revokes it, b refuses it within the interval (a few polls, no long sleep)
    revoked_at = time.monotonic()
    assert a.stores.keys.revoke(key.id).revoked
    wait_until(lambda: b.refused(plain) == "forbidden", 5, "node b to refuse the key")
    assert time.monotonic() - revoked_at < 1.0
    assert b.stores.keys.list()[0].revoked
    # And the store holds only the hash
    assert plain not in json.dumps([k.public() for k in b.stores.keys.list()])
    with pytest.raises(KeyStoreError, match="no API key with id 'nope'"):
        b.stores.keys.revoke("nope")


def test_a_node_first_asked_long_after_it_started_reads_the_keys_again(store_url, tmp_path,
                                                                     master):
    # Given node b started while a key was valid, and the key revoked a while later
    ticks = [100.0]
    a = open_security(tmp_path / "a", store_url)
    plain, key = a.keys.create("late")
    b = open_security(tmp_path / "b", store_url, refresh_s=REFRESH_S,
                      monotonic=lambda: ticks[0])
    try:
        a.keys.revoke(key.id)
        ticks[0] += 60
        # When b gets its first request with that key, Then it is refused at once
        assert b.keys.verify(plain) is None and b.keys.list()[0].revoked
    finally:
        a.close()
        b.close()


def test_the_daily_quota_is_one_count_across_nodes(nodes):
    a, b = nodes
    plain, _ = a.stores.keys.create("metered", UsagePlan(quota_per_day=10))
    b.stores.keys.reload()  # (rather than waiting for b's poll)
    # Given 10 requests a day, When 5 go through each node, they are all admitted
    for i in range(10):
        assert (a if i % 2 else b).refused(plain) is None
    # Then the 11th is refused with 429 quota_exceeded on either node
    for node in (a, b):
        code = node.refused(plain)
        assert code == "quota_exceeded" and ERRORS[code][0] == 429
    assert a.stores.quotas.used(_key_id(plain)) == 10
    # And the next UTC day the key is admitted again
    a.wall.now += 86400
    assert a.refused(plain) is None and b.refused(plain) is None


def test_concurrent_requests_on_both_nodes_never_pass_the_quota(nodes):
    a, b = nodes
    plain, _ = a.stores.keys.create("burst", UsagePlan(quota_per_day=10))
    b.stores.keys.reload()

    async def burst() -> list[str | None]:
        async def one(node: Node) -> str | None:
            try:
                await node.guard.admit(ROUTE, [("x-api-key", plain)], "", {}, "r")
            except Reject as exc:
                return exc.code
            return None
        return await asyncio.gather(*(one(a if i % 2 else b) for i in range(30)))

    outcomes = asyncio.run(burst())
    assert outcomes.count(None) == 10 and outcomes.count("quota_exceeded") == 20
    scope = f"quota:{_key_id(plain)}"
    allowed = [n.guard.counters.snapshot()[scope]["allowed"] for n in (a, b)]
    assert sum(allowed) == 10 and a.stores.quotas.used(_key_id(plain)) == 10


def test_secrets_set_on_one_node_are_read_on_the_other(nodes):
    a, b = nodes
    a.stores.secrets.set("API_TOKEN", "t0ken-value")
    assert b.stores.secrets.get("API_TOKEN") == "t0ken-value"
    assert b.stores.secrets.names() == ["API_TOKEN"]
    b.stores.secrets.set("API_TOKEN", "rotated")
    assert a.stores.secrets.get("API_TOKEN") == "rotated"
    b.stores.secrets.remove("API_TOKEN")
    with pytest.raises(SecretError, match="no secret named 'API_TOKEN'"):
        a.stores.secrets.get("API_TOKEN")
    with pytest.raises(SecretError, match="invalid"):
        a.stores.secrets.set("bad/name", "v")


def test_a_node_with_another_master_key_is_refused_and_cannot_write(nodes, store_url,
                                                                   tmp_path, monkeypatch):
    a, _ = nodes
    a.stores.secrets.set("DB_PASSWORD", "s3cret")
    # Given a node started with another key: refused at start, naming the fix
    monkeypatch.setenv("SQUALL_SECRETS_KEY", Fernet.generate_key().decode())
    with pytest.raises(SecretKeyError, match="not the one the secrets .* SQUALL_SECRETS_KEY"):
        open_security(tmp_path / "c", store_url, check=True)
    # And one opened without the check can neither read nor write them
    wrong = open_security(tmp_path / "c", store_url)
    try:
        with pytest.raises(SecretKeyError, match="does not decrypt"):
            wrong.secrets.get("DB_PASSWORD")
        with pytest.raises(SecretKeyError, match="not the one"):
            wrong.secrets.set("OTHER", "x")
        assert wrong.secrets.names() == ["DB_PASSWORD"]  # nothing was written
    finally:
        wrong.close()
    # A node with no key at all is refused too, and a malformed key before connecting
    monkeypatch.delenv("SQUALL_SECRETS_KEY")
    with pytest.raises(SecretKeyError, match="has none: .*SQUALL_SECRETS_KEY"):
        open_security(tmp_path / "d", store_url, check=True)
    monkeypatch.setenv("SQUALL_SECRETS_KEY", "not-a-key")
    with pytest.raises(SecretKeyError, match="secrets keygen"):
        open_security(tmp_path / "e", store_url)
    assert a.stores.secrets.get("DB_PASSWORD") == "s3cret"


def test_the_master_key_from_a_private_file(store_url, tmp_path, monkeypatch):
    monkeypatch.delenv("SQUALL_SECRETS_KEY", raising=False)
    key_file = tmp_path / "master.key"
    key_file.write_bytes(Fernet.generate_key())
    key_file.chmod(0o644)
    monkeypatch.setenv("SQUALL_SECRETS_KEY_FILE", str(key_file))
    with pytest.raises(SecretKeyError, match="chmod 600"):
        open_security(tmp_path, store_url)
    key_file.chmod(0o600)
    stores = open_security(tmp_path, store_url)
    try:
        stores.secrets.set("X", "y")
        assert stores.secrets.get("X") == "y"
    finally:
        stores.close()
    monkeypatch.setenv("SQUALL_SECRETS_KEY", Fernet.generate_key().decode())
    with pytest.raises(SecretKeyError, match="given twice"):
        open_security(tmp_path, store_url)


def test_the_cli_acts_on_the_shared_store(store_url, tmp_path, master, monkeypatch):
    run = CliRunner().invoke
    monkeypatch.setenv("SQUALL_STORE", store_url)
    d = ["--data-dir", str(tmp_path / "cli")]  # ignored: the store is named
    made = run(keys_cli, ["create", "ops", "--quota", "5"] + d)
    assert made.exit_code == 0, made.output
    key = json.loads([ln for ln in made.output.splitlines() if ln.startswith("{")][0])
    node = Node(store_url, tmp_path, "n")
    try:
        assert node.admit(key["key"])["keyName"] == "ops"
        listed = json.loads(run(keys_cli, ["list", "--json"] + d).stdout)
        assert [k["id"] for k in listed] == [key["id"]]
        assert run(keys_cli, ["revoke", key["id"]] + d).exit_code == 0
        node.stores.keys.reload()
        assert node.refused(key["key"]) == "forbidden"
        assert run(secrets_cli, ["set", "PW"] + d, input="hunter2-long\n").exit_code == 0
        assert node.stores.secrets.get("PW") == "hunter2-long"
        assert run(secrets_cli, ["list"] + d).stdout.split() == ["PW"]
        # a wrong master key: exit 2, naming the fix
        monkeypatch.setenv("SQUALL_SECRETS_KEY", Fernet.generate_key().decode())
        for args in (["set", "PW2", "v"], ["list"]):
            bad = run(secrets_cli, args + d)
            assert bad.exit_code == 2 and "SQUALL_SECRETS_KEY" in bad.output, bad.output
        assert run(secrets_cli, ["rm", "PW"] + d).exit_code == 0
        assert node.stores.secrets.names() == []
        keygen = run(secrets_cli, ["keygen"])
        Fernet(keygen.stdout.strip().encode())  # a usable key
    finally:
        node.guard.close()
    assert run(keys_cli, ["list", "--store", "mysql://x/y"]).exit_code == 2


def test_a_node_with_the_wrong_master_key_does_not_start(tmp_path):
    # Given secrets written to a shared store file under one key
    url = f"sqlite:///{tmp_path / 'store.db'}"
    env_ok = {"SQUALL_SECRETS_KEY": Fernet.generate_key().decode()}
    squall = [sys.executable, "-m", "squall.cli.main"]
    made = subprocess.run(squall + ["secrets", "set", "T", "v", "--store", url],
                          env={**_env(), **env_ok}, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    # When a node starts with another key, it exits 2 before serving, naming the fix
    app = str(Path(__file__).resolve().parents[1] / "apps" / "secure_app.py")
    proc = subprocess.run(
        squall + ["run", app, "--port", "0", "--data-dir", str(tmp_path / "node"),
                  "--store", url, "--broker", f"sqlite:///{tmp_path / 'broker.db'}"],
        env={**_env(), "SQUALL_SECRETS_KEY": Fernet.generate_key().decode()},
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "SQUALL_SECRETS_KEY" in proc.stderr and "not the one" in proc.stderr


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("SQUALL_SECRETS", "SQUALL_STORE", "SQUALL_BROKER"))}


def _key_id(plain: str) -> str:
    return plain.split("_")[1]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_worker_nodes_share_keys_quotas_and_secrets(tmp_path, master):
    """The same, end to end: two `squall worker` processes on one PostgreSQL schema, the
    key and the secret made once with the CLI."""
    need_postgres()
    schema = f"sec_{uuid.uuid4().hex[:12]}"
    url = f"{PG}?schema={schema}"
    run = CliRunner().invoke
    made = run(keys_cli, ["create", "partner", "--quota", "4", "--store", url])
    assert made.exit_code == 0, made.output
    plain = json.loads([ln for ln in made.output.splitlines() if ln.startswith("{")][0])["key"]
    assert run(secrets_cli, ["set", "CLUSTER_TOKEN", "abcdef", "--store", url]).exit_code == 0
    app = str(Path(__file__).resolve().parents[1] / "apps" / "cluster_keys.py")
    env = {**_env(), "SQUALL_SECRETS_KEY": master}
    nodes = [Worker(f"node{i}", url, url, tmp_path, env, app=app) for i in range(2)]
    try:
        for n in nodes:
            n.wait_listening()
        a, b = nodes
        # Given a key with 4 requests a day: 2 through each node are served
        for node in (a, b, a, b):
            assert _get(node.url + "/whoami", plain) == (200, {"key": "partner"})
        # Then the 5th, on either node, is refused
        for node in (a, b):
            status, body = _get(node.url + "/whoami", plain)
            assert status == 429 and body["code"] == "quota_exceeded", body
        # A secret set once is read by the function on both nodes
        assert _get(a.url + "/token") == _get(b.url + "/token") == (200, {"length": 6})
        # A revocation reaches both nodes within about a second
        assert run(keys_cli, ["revoke", plain, "--store", url]).exit_code == 0
        revoked = time.monotonic()
        wait_until(lambda: all(_get(n.url + "/whoami", plain)[0] == 403 for n in nodes), 5,
                   "both nodes to refuse the revoked key")
        assert time.monotonic() - revoked < 2.0
    finally:
        for n in nodes:
            n.stop()
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _get(url: str, key: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"x-api-key": key} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
