"""Who may use the dashboard, and a guard on the buttons that change things.

With SQUALL_ADMIN_TOKEN set (as for the control API), every dashboard request needs it:
an `Authorization: Bearer …` header, or the `squall_admin` cookie that opening
`/_squall/?token=…` once sets (HttpOnly, SameSite=Strict). Without it the dashboard is
open to whoever reaches the port, like the app's own routes: bind to 127.0.0.1 (the
default) or set the token.

Actions (POST: redrive, replay) also need the `x-squall-dashboard` header, which a page
on another site cannot send without a CORS preflight that Squall never grants: a link
or form elsewhere cannot press the buttons for a logged-in operator.
"""

from __future__ import annotations

import hmac
import json
from http.cookies import SimpleCookie
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode

COOKIE = "squall_admin"
ACTION_HEADER = b"x-squall-dashboard"


class DashboardAuth:
    def __init__(self, app: Callable, token: str | None, prefix: str = "/_squall") -> None:
        self.app = app
        self.token = token
        self.prefix = prefix

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.token is not None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (query.get("token") or [None])[0]
            if given is not None and scope["method"] == "GET" and self._ok(given):
                await _login(scope, send, given, query,
                             cookie_path=scope.get("root_path", "") + self.prefix)
                return
            if not self._ok(_presented(headers)):
                await _deny(send, 401, "unauthorized", "this dashboard needs the admin token: "
                            "open /_squall/?token=<SQUALL_ADMIN_TOKEN> once, or send "
                            "Authorization: Bearer <token>")
                return
        if scope["method"] not in ("GET", "HEAD") and headers.get(ACTION_HEADER) != b"1":
            await _deny(send, 403, "forbidden", "dashboard actions need the header "
                        "x-squall-dashboard: 1 (sent by the dashboard's own page)")
            return
        await self.app(scope, receive, send)

    def _ok(self, given: str | None) -> bool:
        return given is not None and self.token is not None and hmac.compare_digest(
            given.encode(), self.token.encode())


def _presented(headers: dict[bytes, bytes]) -> str | None:
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    cookie = SimpleCookie(headers.get(b"cookie", b"").decode("latin-1"))
    return cookie[COOKIE].value if COOKIE in cookie else None


async def _login(scope: dict, send: Callable, token: str, query: dict[str, Any], *,
                 cookie_path: str) -> None:
    """Set the cookie and send the browser to the same page without the token in its URL
    (a relative Location: right under any prefix a proxy or `squall server` adds)."""
    rest = {k: v for k, v in query.items() if k != "token"}
    location = "./" + ("?" + urlencode(rest, doseq=True) if rest else "")
    cookie = f"{COOKIE}={token}; Path={cookie_path}; HttpOnly; SameSite=Strict"
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("latin-1")),
                            (b"set-cookie", cookie.encode("latin-1")),
                            (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


async def _deny(send: Callable, status: int, code: str, message: str) -> None:
    body = json.dumps({"message": message, "code": code}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
