"""`squall check APP`: what each function declares, what a static scan of its source sees
it touch, undeclared access flagged (exit 1), clean apps exit 0, bad input exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

APP = '''
from squall import App

app = App("checked")
orders = app.table("orders", key="id")
uploads = app.bucket("uploads")


@app.queue("emails")
def mailer(batch, ctx):
    pass


def save(order):  # a helper: what it touches, its callers touch
    orders.put(order)


@app.http("POST", "/orders", uses={"orders": "read", "emails": "send"})
def create(request):
    order = request.json()
    orders.get(order["id"])
    save(order)                                  # undeclared: write orders
    app.send("emails", {"to": order["email"]})
    app.invoke("charge", order)                  # undeclared: invoke charge
    return 201, {}


@app.function(name="charge", uses={"uploads": ["read", "write"]})
def charge_it(order, ctx):
    app.buckets["uploads"].put("receipts/1.txt", b"paid")
    uploads.copy("receipts/1.txt", "receipts/2.txt")
    app.send(order["queue"], {})                 # dynamic: not checked


@app.function()
def unrestricted(event, ctx):
    return orders.scan()
'''


def squall(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "squall.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=50)


def write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "app.py"
    path.write_text(textwrap.dedent(source))
    return path


def test_check_flags_undeclared_access_and_exits_1(tmp_path):
    write(tmp_path, APP)
    proc = squall("check", "app.py", "--json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    by_name = {f["function"]: f for f in report["functions"]}
    create = by_name["create"]
    assert create["declares"] == {"emails": ["send"], "orders": ["read"]}
    assert {(u["kind"], u["resource"], u["action"]) for u in create["undeclared"]} == {
        ("table", "orders", "write"), ("function", "charge", "invoke")}
    charge = by_name["charge"]
    assert charge["undeclared"] == []
    assert {(t["resource"], t["action"]) for t in charge["touches"]} == {
        ("uploads", "read"), ("uploads", "write")}
    assert "computed name" in charge["dynamic"][0]
    free = by_name["unrestricted"]
    assert free["declares"] is None and free["suggested_uses"] == {"orders": ["read"]}
    assert report["violations"] == 2


def test_check_prints_a_readable_report(tmp_path):
    write(tmp_path, APP)
    proc = squall("check", "app.py", cwd=tmp_path)
    assert proc.returncode == 1
    out = proc.stdout
    assert "FAIL create" in out and "ok   charge" in out
    assert "UNDECLARED line" in out and "write table 'orders'" in out
    assert "(no uses=: unrestricted)" in out and 'suggest   uses={"orders": ["read"]}' in out
    assert "2 undeclared access(es) found" in out


def test_check_passes_a_clean_app(tmp_path):
    write(tmp_path, '''
        from squall import App

        app = App("clean", strict=True)
        orders = app.table("orders", key="id")

        @app.function(uses={"orders": "read,write"})
        def f(event, ctx):
            orders.put({"id": 1})
            return orders.get(1)
    ''')
    proc = squall("check", "app.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no undeclared access found" in proc.stdout


def test_check_bad_input_exits_2(tmp_path):
    assert squall("check", "missing.py", cwd=tmp_path).returncode == 2
    write(tmp_path, '''
        from squall import App

        app = App("strictly", strict=True)

        @app.function()
        def f(event, ctx):
            return None
    ''')
    proc = squall("check", "app.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert "is strict: declare what the function uses" in " ".join(proc.stderr.split())
