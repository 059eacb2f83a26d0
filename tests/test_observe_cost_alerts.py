"""The cost meter against hand-computed figures; alert rules firing and resolving on an
injected clock, recorded in the store and notified (function, webhook); metrics over time."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from squall import App
from squall.backends.base import InvocationRecord
from squall.backends.sqlite.store import SqliteStore
from squall.cli.main import cli
from squall.observe.alerts import AlertEvaluator, RuleState, list_alerts, step
from squall.observe.cost import Pricing, PricingError, cost_summary, parse_changes, what_if
from squall.observe.metrics import function_summary, series
from squall.observe.rules import make_rule
from squall.testing.conformance import FakeClock

T0 = 1_750_000_000.0  # 2025-06-15T15:06:40Z: the fake clock's start


def rec(store, n: int, fn: str, at: float, *, duration: float = 10.0, memory: int = 128,
        status: str = "ok", cold: bool = False) -> None:
    store.record([InvocationRecord(f"{fn}-{at}-{i}-{status}", "shop", fn, "event", at + i * 0.001,
                                   duration, 0, memory, 0, cold, 5.0 if cold else None, status,
                                   None, None) for i in range(n)])


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(tmp_path / "squall.db")
    yield s
    s.close()


# -- pricing --------------------------------------------------------------------------------


def test_pricing_against_a_hand_computed_case(store):
    # Given three billed invocations and one throttled one, at Lambda's x86 list prices
    rec(store, 1, "resize", T0, duration=100.2, memory=128)  # billed 101 ms: 0.012625 GB-s
    rec(store, 1, "ping", T0 + 1, duration=0.3, memory=1024)  # billed 1 ms (minimum): 0.001
    rec(store, 1, "render", T0 + 3700, duration=2500.0, memory=512)  # 2500 ms: 1.25 GB-s
    rec(store, 1, "render", T0 + 3701, duration=0.0, memory=512, status="throttled")
    # When the cost is summed per hour
    doc = cost_summary(store, "shop", since=T0 - 1, until=T0 + 7200, by="hour")
    # Then 3 requests x $0.20/1M + 1.263625 GB-s x $0.0000166667, worked out by hand:
    assert doc["requests"] == 3
    assert doc["gb_s"] == pytest.approx(1.263625)
    assert doc["usd"] == pytest.approx(0.0000216604587875, rel=1e-9)
    per = {f["function"]: f for f in doc["functions"]}
    assert per["resize"]["usd"] == pytest.approx(0.0000004104170875, rel=1e-9)
    assert per["render"]["requests"] == 1  # the throttled one never ran: free
    assert [b["requests"] for b in doc["buckets"]] == [2, 1]  # two different hours
    assert doc["buckets"][1]["t"] - doc["buckets"][0]["t"] == 3600


def test_pricing_settings_granularity_and_errors():
    p = Pricing(granularity_ms=100)  # the old Lambda billing step
    assert p.billed_ms(0.1) == 100 and p.billed_ms(100.0) == 100 and p.billed_ms(100.5) == 200
    assert Pricing.from_env({"SQUALL_PRICE_GB_S": "0.0000133334"}).per_gb_s_usd == 0.0000133334
    with pytest.raises(PricingError, match="SQUALL_PRICE_REQUESTS"):
        Pricing.from_env({"SQUALL_PRICE_REQUESTS": "cheap"})
    with pytest.raises(PricingError, match="granularity_ms"):
        Pricing(granularity_ms=0)
    assert parse_changes("memory=512,batch_size=100,retention=30d") == {
        "memory": 512, "batch_size": 100, "retention_days": 30.0}
    for bad, msg in (("memory=64", "128..10240"), ("colour=red", "unknown setting"),
                     ("memory", "KEY=VALUE"), ("batch_size=x", "not a number"), ("", "no change")):
        with pytest.raises(PricingError, match=msg):
            parse_changes(bad)


def test_what_if_memory_batch_size_and_retention(store):
    rec(store, 100, "worker", T0, duration=200.0, memory=1024)  # 100 batches of 10
    doc = what_if(store, "shop", parse_changes("memory=512,batch_size=100,retention=30d"),
                  since=T0 - 1, until=T0 + 86399, batch_sizes={"worker": 10})
    # now: 100 x ($0.2/1M + 1 GB x 0.2 s x price)
    assert doc["current_usd"] == pytest.approx(100 * (0.2e-6 + 0.2 * 0.0000166667))
    # 10 invocations of 10x the work at 512 MB: I/O-bound 10 x 2 s x 0.5 GB; CPU-bound twice
    # as long (half the CPU share: 1024 -> 512 MB, both under 1769 MB)
    assert doc["estimate_usd_io_bound"] == pytest.approx(10 * (0.2e-6 + 0.5 * 2.0 * 0.0000166667))
    assert doc["estimate_usd_cpu_bound"] == pytest.approx(10 * (0.2e-6 + 0.5 * 4.0 * 0.0000166667))
    assert doc["log_storage_gb"] == pytest.approx(100 * 30 * 512 / 1e9, rel=1e-3)
    assert len(doc["assumptions"]) == 3


# -- metrics over time ------------------------------------------------------------------------


def test_series_per_function_per_minute(store):
    for i, d in enumerate([1.0, 2.0, 3.0, 4.0, 100.0]):
        rec(store, 1, "api", T0 + i, duration=d, cold=i == 0)
    rec(store, 2, "api", T0 + 60, duration=5.0, status="error")
    rec(store, 1, "api", T0 + 61, status="throttled")
    rows = series(store, "shop", since=T0 - 40, until=T0 + 120, bucket_s=60)
    assert [(r["count"], r["errors"], r["throttles"], r["cold_starts"]) for r in rows] == [
        (5, 0, 0, 1), (2, 2, 1, 0)]
    assert rows[0]["p50_ms"] == 3.0 and rows[0]["p99_ms"] == 100.0
    assert rows[0]["t"] % 60 == 0 and rows[1]["t"] - rows[0]["t"] == 60
    summary = function_summary(store, "shop", since=T0 - 40, until=T0 + 120)
    assert summary[0]["error_rate"] == pytest.approx(2 / 7)


# -- alerts -------------------------------------------------------------------------------------


def test_the_state_machine():
    s, t = step(RuleState(), True, 100.0, 300.0)
    assert (s.state, t) == ("pending", None)
    s, t = step(s, True, 399.0, 300.0)
    assert (s.state, t) == ("pending", None)
    s, t = step(s, True, 400.0, 300.0)
    assert (s.state, s.since, t) == ("firing", 100.0, "firing")
    assert step(s, True, 500.0, 300.0) == (s, None)  # announced once
    s, t = step(s, False, 600.0, 300.0)
    assert (s.state, t) == ("ok", "resolved")
    assert step(RuleState(), True, 5.0, 0.0)[1] == "firing"  # no hold: at once


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        _Hook.received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_error_rate_fires_after_5_minutes_and_resolves(store):
    hook = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    _Hook.received = []
    clock = FakeClock(T0)
    called = []

    async def invoke(function, kind, payload, **kw):
        called.append((function, json.loads(payload)))
        return SimpleNamespace(ok=True)

    rule = make_rule("errors", error_rate=0.05, window_s=300, for_s=300,
                     notify=[f"webhook:http://127.0.0.1:{hook.server_port}/alert",
                             "function:page_oncall"])
    ev = AlertEvaluator("shop", [rule], store, clock=clock, invoke=invoke)

    async def scenario():
        # Given 20 % errors
        rec(store, 8, "api", clock() - 10)
        rec(store, 2, "api", clock() - 5, status="error")
        assert await ev.evaluate() == []  # pending: not yet 5 minutes
        clock.advance(200)
        rec(store, 1, "api", clock() - 1, status="timeout")
        assert await ev.evaluate() == []
        # When the breach has lasted 5 minutes
        clock.advance(100)
        rec(store, 9, "api", clock() - 2)
        rec(store, 1, "api", clock() - 1, status="error")
        fired = await ev.evaluate()
        assert [a.state for a in fired] == ["firing"]
        assert await ev.evaluate() == []  # still firing: told once
        # Then it resolves when the window holds no errors
        clock.advance(301)
        rec(store, 50, "api", clock() - 1)
        resolved = await ev.evaluate()
        assert [a.state for a in resolved] == ["resolved"]
        return fired[0], resolved[0]

    try:
        fired, resolved = asyncio.run(scenario())
    finally:
        hook.shutdown()
        hook.server_close()
    assert fired.at == T0 + 300 and fired.value == pytest.approx(2 / 11)  # in the last 5 min
    assert "error rate over 5.0%" in fired.message
    assert [h["state"] for h in _Hook.received] == ["firing", "resolved"]
    assert [(f, p["state"]) for f, p in called] == [("page_oncall", "firing"),
                                                    ("page_oncall", "resolved")]
    doc = list_alerts(store, "shop", rules=[rule])
    assert [(h["state"], h["at"]) for h in doc["history"]] == [("resolved", T0 + 601),
                                                               ("firing", T0 + 300)]
    assert doc["rules"][0]["state"] == "resolved"


def test_dlq_p99_throttles_and_budget_rules(store):
    clock = FakeClock(T0)
    depth = {"orders.dlq": 0}

    async def dlq_size(queue):
        return depth[queue]

    rules = [make_rule("dlq", dlq="orders.dlq"), make_rule("slow", p99_ms=500, window_s=60),
             make_rule("throttled", throttles=0, window_s=60),
             make_rule("budget", cost_usd=0.0001, window_s=86400)]
    ev = AlertEvaluator("shop", rules, store, clock=clock, dlq_size=dlq_size)

    async def scenario():
        assert await ev.evaluate() == []
        depth["orders.dlq"] = 2
        rec(store, 1, "api", clock() - 1, duration=900.0)
        rec(store, 1, "api", clock() - 1, status="throttled")
        rec(store, 10, "big", clock() - 1, duration=1000.0, memory=10240)  # 0.0017 USD
        assert sorted(a.rule for a in await ev.evaluate()) == ["budget", "dlq", "slow",
                                                               "throttled"]
        depth["orders.dlq"] = 0
        clock.advance(120)
        return sorted(a.rule for a in await ev.evaluate())

    # the budget rule's window is a day: still over; the others resolve
    assert asyncio.run(scenario()) == ["dlq", "slow", "throttled"]


def test_rules_are_checked_when_declared():
    app = App("rules")
    app.alert("e", error_rate=0.05, for_s=300, notify="log")
    with pytest.raises(ValueError, match="already declared"):
        app.alert("e", p99_ms=5)
    for kw, msg in (({}, "exactly one"), ({"error_rate": 5}, "fraction"),
                    ({"p99_ms": -1}, ">= 0"), ({"latency": 1}, "unknown option"),
                    ({"dlq": 1}, "names a dead-letter queue"),
                    ({"throttles": 1, "notify": ["pager:x"]}, "notify target")):
        with pytest.raises(ValueError, match=msg):
            app.alert("x", **kw)
    assert app.manifest()["alerts"][0]["for_s"] == 300


def test_squall_alerts_and_costs_commands(tmp_path):
    from pathlib import Path

    store = SqliteStore(tmp_path / "squall.db")
    try:
        rec(store, 3, "create_order", T0)
        store.record_alert("observed", "errors", "firing", T0, 0.6, "[FIRING] observed/errors")
    finally:
        store.close()
    app = str(Path(__file__).parent / "apps" / "observed.py")
    r = CliRunner().invoke(cli, ["alerts", app, "--data-dir", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["rules"][0]["name"] == "errors" and doc["rules"][0]["state"] == "firing"
    r = CliRunner().invoke(cli, ["costs", "shop", "--data-dir", str(tmp_path), "--since", "3650d",
                                 "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["requests"] == 3
    r = CliRunner().invoke(cli, ["costs", "shop", "--data-dir", str(tmp_path),
                                 "--what-if", "memory=64"])
    assert r.exit_code == 2 and "128..10240" in r.output
    r = CliRunner().invoke(cli, ["costs", "shop", "--data-dir", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and "no store" in r.output


def test_an_alert_by_email(monkeypatch):
    from aiosmtpd.controller import Controller

    got: list = []

    class Inbox:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            got.append((envelope.rcpt_tos, envelope.content.decode()))
            return "250 OK"

    import socket

    with socket.socket() as probe:  # a free port (Controller needs a fixed one)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = Controller(Inbox(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        monkeypatch.setenv("SQUALL_SMTP_HOST", f"127.0.0.1:{port}")
        from squall.observe.alerts import Alert, send_email

        send_email("ops@example.com", Alert("shop", "dlq", "firing", T0, 3.0,
                                            "[FIRING] shop/dlq: dead-letter queue d not empty"))
    finally:
        smtp.stop()
    assert got and got[0][0] == ["ops@example.com"]
    assert "Subject: [FIRING] shop/dlq" in got[0][1] and '"rule": "dlq"' in got[0][1]


def test_a_restart_or_another_node_does_not_announce_a_firing_alert_again(store):
    clock = FakeClock(T0)
    rule = make_rule("errors", error_rate=0.05, window_s=300)
    rec(store, 4, "api", clock() - 1, status="error")
    first = AlertEvaluator("shop", [rule], store, clock=clock)
    assert [a.state for a in asyncio.run(first.evaluate())] == ["firing"]
    # a second evaluator (the app restarted, or the lease moved to another node) reads
    # the recorded state: still firing, nothing to announce; then it resolves once
    clock.advance(400)
    turns = iter([False, True, True])

    async def leader():
        return next(turns)

    second = AlertEvaluator("shop", [rule], store, clock=clock, leader=leader)

    async def rounds():
        out = [await second.evaluate()]  # not the leader: nothing
        rec(store, 4, "api", clock() - 1, status="error")
        out.append(await second.evaluate())  # still firing: nothing new
        clock.advance(400)
        out.append(await second.evaluate())  # no errors in the window any more
        return [[a.state for a in r] for r in out]

    assert asyncio.run(rounds()) == [[], [], ["resolved"]]
