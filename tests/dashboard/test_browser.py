"""The dashboard in real headless Chromium: every page, a trace waterfall, a workflow's
step history, a replay, and a DLQ redrive after the handler is fixed."""

from __future__ import annotations

import re

import pytest

PAGES = [  # nav label, what the page must show
    ("Functions", "table [data-function=create_order]"),
    ("Invocations", "table [data-request]"),
    ("Traces", "table [data-trace]"),
    ("Queues", "table [data-queue=emails] .depth svg.spark"),  # with its depth line
    ("Event bus", "[data-rule=charge-on-order]"),
    ("Schedules", "table [data-schedule=nightly_report]"),
    ("Workflows", "table [data-execution]"),
    ("Alerts", "tr[data-history=emails-dlq] >> text=firing"),
    ("Costs", "svg.bar-chart rect"),
]


@pytest.fixture()
def page(chromium, shop):
    context = chromium.new_context(viewport={"width": 1360, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(10_000)
    page.goto(shop.url + "/_squall/")
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_every_page_renders_live_data(page, screenshots):
    for label, marker in PAGES:
        # When the operator clicks the page in the side bar
        page.click(f"nav >> text={label}")
        # Then the page shows the app's data, with no error banner
        page.wait_for_selector(marker)
        assert page.locator("nav a.on").inner_text().split("\n")[0] == label
        assert page.locator("#error").is_hidden()
        page.screenshot(path=str(screenshots / f"{label.lower().replace(' ', '-')}.png"),
                        full_page=True)
    assert page.locator("#app-name").inner_text() == "app shop"
    assert page.locator("nav a[data-page=queues] .badge").inner_text() == "1"  # dead letter


def test_functions_figures_and_invocation_logs(page, screenshots):
    row = page.locator("tr[data-function=create_order]")
    row.wait_for()
    assert row.locator("td").nth(1).inner_text() != "0"  # per minute
    assert "ms" in row.locator("td").nth(4).inner_text()  # p50
    # Clicking a function lists its invocations; clicking one shows its output
    row.click()
    page.wait_for_url(re.compile(r"#/invocations/create_order$"))
    page.locator("tr[data-request]").first.click()
    logs = page.locator("pre.logs")
    logs.wait_for()
    assert re.search(r"order \d received", logs.inner_text())
    assert "REPORT Duration" in page.locator(".report").inner_text()
    page.screenshot(path=str(screenshots / "invocation-logs.png"), full_page=True)


def test_trace_waterfall_covers_the_asynchronous_hops(page, screenshots):
    page.click("nav >> text=Traces")
    page.locator("tr[data-trace]", has_text="POST /orders").first.click()
    waterfall = page.locator(".waterfall")
    waterfall.wait_for()
    text = waterfall.inner_text()
    for hop in ("POST /orders", "create_order", "publish shop.orders", "send emails"):
        assert hop in text, f"{hop!r} missing from the waterfall:\n{text}"
    assert page.locator(".waterfall .lane span").count() >= 5
    page.screenshot(path=str(screenshots / "trace-waterfall.png"), full_page=True)


def test_workflow_step_history(page, screenshots):
    page.click("nav >> text=Workflows")
    page.locator("tr[data-execution]").first.click()
    page.wait_for_selector(".timeline li")
    steps = page.locator(".timeline").inner_text()
    assert "reserve" in steps and "ship" in steps
    assert page.locator(".kv .chip").inner_text() == "succeeded"
    page.screenshot(path=str(screenshots / "workflow-history.png"), full_page=True)


def test_replay_from_the_archive(page, shop):
    before = len(shop.http.get("/_squall/api/dashboard/invocations?function=charge&limit=100")
                 .json()["invocations"])
    page.click("nav >> text=Event bus")
    page.select_option("#replay-rule", "charge-on-order")
    page.click("#replay")
    page.wait_for_selector("#toast >> text=/Replayed [1-9]\\d* archived event/")
    from servers import wait_until

    wait_until(lambda: len(shop.http.get(
        "/_squall/api/dashboard/invocations?function=charge&limit=100").json()["invocations"])
        > before, 15, "the replayed events to reach charge")


def test_redrive_a_dead_letter_after_the_fix(page, shop, screenshots):
    # Given an email that dead-lettered because the handler had a bug
    page.click("nav >> text=Queues")
    page.click("tr[data-queue=emails] >> text=Dead-letter queue")
    row = page.locator("tr[data-message]")
    row.wait_for()
    assert "cannot email order 3" in row.inner_text()
    page.screenshot(path=str(screenshots / "dead-letters.png"), full_page=True)
    # When the bug is fixed and the operator redrives the message
    shop.fixed.touch()
    row.locator("input[type=checkbox]").check()
    page.click("#redrive-selected")
    # Then it leaves the DLQ, and the fixed handler sends the email
    page.wait_for_selector("#toast >> text=Redrove 1 message to emails")
    page.wait_for_selector("text=The dead-letter queue is empty")
    # and the side bar's dead-letter badge goes away at the next live update
    page.wait_for_selector("nav a[data-page=queues] .badge", state="detached")
    page.goto(shop.url + "/_squall/#/invocations/send_email")
    page.locator("tr[data-request]").first.wait_for()
    from servers import wait_until

    def emailed() -> bool:
        rows = shop.http.get("/_squall/api/dashboard/invocations?function=send_email").json()
        return any("email sent for order 3" in line for r in rows["invocations"]
                   for line in r["logs"])

    wait_until(emailed, 15, "the redriven message to be handled")
    page.screenshot(path=str(screenshots / "after-redrive.png"), full_page=True)
