"""The control API's client, for the CLI: stdlib HTTP, JSON in and out, and every
failure as `ControlError` with the server's message (or why it could not be reached)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_SERVER = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_S = 900.0  # a deploy may build a virtualenv


class ControlError(Exception):
    def __init__(self, message: str, detail: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.detail = detail
        self.status = status


class ControlClient:
    def __init__(self, server: str, token: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, *, body: bytes | None = None,
             json_body: Any = None, query: dict[str, Any] | None = None) -> Any:
        url = f"{self.server}/_platform{path}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items()
                                                 if v is not None})
        headers = {"authorization": f"Bearer {self.token}"}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["content-type"] = "application/json"
        elif body is not None:
            headers["content-type"] = "application/gzip"
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                err = json.loads(raw)
            except ValueError:
                raise ControlError(f"{method} {url}: HTTP {exc.code}", status=exc.code) from None
            raise ControlError(err.get("errorMessage") or err.get("message", f"HTTP {exc.code}"),
                               err.get("detail", ""), exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ControlError(f"cannot reach the squall server at {self.server}: {reason} "
                               "(start it with `squall server`, or pass --server)") from None
