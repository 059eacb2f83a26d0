"""The dashboard's guard, its settings and the reserved /_squall/ prefix, without a
server: the Starlette app over a stand-in stack."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest

from squall import App

from .conftest import run
from squall.config import ConfigError
from squall.dashboard import DashboardSettings, dashboard_app
from squall.dashboard.settings import DashboardConfigError

STACK = SimpleNamespace(runtime=SimpleNamespace(manifest={"app": "a", "functions": []},
                                               configs={}), broker=None)
READ = "/_squall/api/dashboard/schedules"  # reads nothing but the (empty) manifest


class Client:
    """A synchronous face on httpx's ASGI transport (cookies kept between calls)."""

    def __init__(self, **settings) -> None:
        self.app = dashboard_app(STACK, DashboardSettings(**settings))
        self.cookies = httpx.Cookies()

    def request(self, method: str, url: str, **kw) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(self.app),
                                         base_url="http://test", cookies=self.cookies) as c:
                r = await c.request(method, url, **kw)
                self.cookies.update(c.cookies)
                return r

        return run(go())

    def get(self, url: str, **kw) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw) -> httpx.Response:
        return self.request("POST", url, **kw)


client = Client


def test_open_without_a_token_but_actions_need_the_header():
    c = client()
    assert c.get(READ).json() == {"schedules": []}
    r = c.post("/_squall/api/dashboard/bus/replay", json={})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


def test_the_admin_token_is_required_when_set():
    c = client(admin_token="s3cret")
    r = c.get(READ)
    assert r.status_code == 401 and "SQUALL_ADMIN_TOKEN" in r.json()["message"]
    assert c.get(READ, headers={"authorization": "Bearer nope"}
                 ).status_code == 401
    assert c.get(READ, headers={"authorization": "Bearer s3cret"}
                 ).status_code == 200
    # Opening the page with ?token= once sets a cookie and drops the token from the URL
    r = c.get("/_squall/?token=s3cret", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "./"
    assert "Path=/_squall; HttpOnly; SameSite=Strict" in r.headers["set-cookie"]
    assert c.get(READ).status_code == 200  # the cookie now
    assert client(admin_token="s3cret").get("/_squall/?token=wrong").status_code == 401


def test_turned_off_it_is_not_found():
    c = client(enabled=False)
    assert c.get("/_squall/").status_code == 404
    assert c.get(READ).status_code == 404


def test_settings_from_the_environment():
    s = DashboardSettings.from_env({"SQUALL_DASHBOARD_POLL_MS": "5000",
                                    "SQUALL_DASHBOARD_REDRIVE_MAX": "10"})
    assert (s.poll_ms, s.redrive_max, s.enabled) == (5000, 10, True)
    assert not DashboardSettings.from_env({"SQUALL_DASHBOARD": "off"}).enabled
    with pytest.raises(DashboardConfigError, match="SQUALL_DASHBOARD_POLL_MS must be from 250"):
        DashboardSettings.from_env({"SQUALL_DASHBOARD_POLL_MS": "10"})
    with pytest.raises(DashboardConfigError, match="must be a number, got 'fast'"):
        DashboardSettings.from_env({"SQUALL_DASHBOARD_REDRIVE_RATE": "fast"})
    with pytest.raises(DashboardConfigError, match="SQUALL_DASHBOARD must be 1 or 0"):
        DashboardSettings.from_env({"SQUALL_DASHBOARD": "maybe"})


def test_user_routes_cannot_take_the_reserved_prefix():
    app = App("r")

    def mine(request):
        return {}

    with pytest.raises(ConfigError, match="reserves for its dashboard"):
        app.http("GET", "/_squall/mine")(mine)
    app.http("GET", "/_squallish")(mine)  # only the exact segment is reserved


def test_squall_run_refuses_bad_dashboard_settings(monkeypatch):
    from typer.testing import CliRunner

    from squall.cli.main import cli

    monkeypatch.setenv("SQUALL_DASHBOARD_REDRIVE_MAX", "0")
    r = CliRunner().invoke(cli, ["run", "tests/dashboard/dash_app.py", "--port", "0"])
    assert r.exit_code == 2
    assert "SQUALL_DASHBOARD_REDRIVE_MAX must be from 1 to 1000000, got 0" in r.output


def test_served_under_a_prefix_as_squall_server_does():
    # Given a front door that strips /shop from the path and puts it in root_path
    inner = dashboard_app(STACK, DashboardSettings(admin_token="s3cret"))

    async def platform(scope, receive, send):
        scope = {**scope, "path": scope["path"][len("/shop"):], "root_path": "/shop"}
        await inner(scope, receive, send)

    c = client()
    c.app = platform
    # Then the dashboard routes the same, and its cookie is for the prefixed path
    r = c.get("/shop/_squall/?token=s3cret")
    assert r.status_code == 303 and "Path=/shop/_squall;" in r.headers["set-cookie"]
    assert c.get("/shop" + READ, headers={"authorization": "Bearer s3cret"}).json() == {
        "schedules": []}
