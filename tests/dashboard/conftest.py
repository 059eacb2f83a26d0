"""A running app with traffic in every corner the dashboard shows, shared by the tests
here, and headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/servers.py

from servers import RunningServer, wait_until  # noqa: E402

from squall.backends import open_store  # noqa: E402

APP = str(Path(__file__).with_name("dash_app.py"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def run(coro):
    """asyncio.run on a thread of its own: Playwright's sync API keeps a loop running on
    this one while the browser is open."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(30)


@pytest.fixture(scope="package")
def shop(tmp_path_factory):
    """The dash_app served for real, after five orders: one of them poison (its email
    dead-letters), each publishing to the bus and starting a workflow."""
    root = tmp_path_factory.mktemp("dashboard")
    os.environ["DASH_FIXED"] = str(root / "fixed")
    try:
        with RunningServer(APP, str(root / "data")) as server:
            http = httpx.Client(base_url=server.url, timeout=10)
            for i in range(5):
                r = http.post("/orders", json={"id": i, "total": 10 * i, "poison": i == 3})
                assert r.status_code == 201, r.text
            api = server.url + "/_squall/api/dashboard/"

            def settled() -> bool:
                q = httpx.get(api + "queues").json()["queues"][0]
                wf = httpx.get(api + "workflows").json()["executions"]
                inv = httpx.get(api + "invocations?function=charge").json()["invocations"]
                fns = {f["name"]: f for f in httpx.get(
                    api + "functions?window=1h").json()["functions"]}
                return (q["deadLetters"] == 1 and len(wf) == 5 and len(inv) == 5
                        and all(e["status"] == "succeeded" for e in wf)
                        and fns["create_order"]["invocations"] >= 5)  # figures written too

            wait_until(settled, 30, "the orders' queue, bus and workflow work")
            store = open_store(server.sup.opts.store)  # an alert fired, as the evaluator
            try:                                       # records it
                store.record_alert("shop", "emails-dlq", "firing", time.time(), 1.0,
                                   "dead-letter queue emails-dlq not empty")
            finally:
                store.close()
            server.http = http
            server.fixed = root / "fixed"
            yield server
            http.close()
    finally:
        os.environ.pop("DASH_FIXED", None)


@pytest.fixture(scope="package")
def chromium():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {CHROMIUM} is missing: apt-get install chromium")
        pytest.skip(f"no {CHROMIUM}: install Debian's chromium (apt-get install chromium) to "
                    "run the dashboard's browser tests")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="pip install playwright (the test extra)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="package")
def screenshots() -> Path:
    """Where the browser tests put their screenshots: $SQUALL_ARTIFACTS/dashboard, or
    a fresh temporary directory (printed)."""
    base = os.environ.get("SQUALL_ARTIFACTS")
    path = Path(base) / "dashboard" if base else Path(tempfile.gettempdir()) / "squall-dashboard"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
