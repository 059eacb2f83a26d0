"""Least privilege: what each function declared with `uses=`, enforced in the supervisor.

Every call a function makes on the platform arrives here with the caller's name as the
supervisor knows it (the worker's pool; the in-process harness's thread), never as the
worker says, because the worker is the user's process:

    worker CALL op payload -> Runtime.serve_call(op, payload, caller)
        -> AccessPolicy.check_call(op, payload, caller)     send, invoke, publish, ...
        -> StateService.call -> authorize(...) -> AccessPolicy.check   tables, caches, buckets

A function without `uses` may do anything (an App(strict=True) has none such); a function
with `uses` may do exactly what it lists. A denial raises `AccessDenied` (a
PermissionError) naming the function, the resource and the action, and is logged as one
structured line. Calls from outside any function (caller None: tests, the CLI, the
platform's own receivers) are not restricted.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..backends.state import AccessDenied
from ..observe import logs
from ..triggers import grants

# worker service -> (resource kind, action); the resource is read from the payload
_CALLS = {
    "invoke": ("function", "invoke"),
    "invoke_async": ("function", "invoke"),
    "send": ("queue", "send"),
    "put_records": ("stream", "write"),
    "notify": ("topic", "publish"),
    "publish": ("bus", "publish"),
}


def call_target(op: str, payload: Any) -> tuple[str, str, str] | None:
    """(kind, resource, action) of a worker service call; None for calls that touch no
    named resource (idempotency records are the function's own)."""
    spec = _CALLS.get(op)
    if spec is None:
        return None
    kind, action = spec
    if kind == "bus":
        return kind, "bus", action
    if kind == "topic":
        doc = json.loads(payload) if isinstance(payload, str) else payload
        return kind, str(doc.get("topic")), action
    return kind, str(payload[0]), action


class AccessPolicy:
    def __init__(self, configs: dict[str, Any] | None = None) -> None:
        self.uses: dict[str, Any] = {}
        self.configure(configs or {})

    def configure(self, configs: dict[str, Any]) -> None:
        """From the app's FunctionConfigs (on start and on every hot reload)."""
        self.uses = {name: cfg.uses for name, cfg in configs.items() if cfg.uses is not None}

    def check(self, caller: str | None, kind: str, resource: str, action: str) -> None:
        if caller is None:
            return
        uses = self.uses.get(caller)
        if uses is None or grants(uses, kind, resource, action):
            return
        logs.event("access denied", logging.WARNING, function=caller, kind=kind,
                   resource=resource, action=action)
        wanted = resource if kind != "bus" else "bus"
        raise AccessDenied(
            f"function {caller!r} may not {action} {kind} {resource!r}: it is not in the "
            f"function's uses= (add {{{wanted!r}: {action!r}}} to its declaration)")

    def check_call(self, op: str, payload: Any, caller: str | None) -> None:
        if caller is None or caller not in self.uses:
            return
        target = call_target(op, payload)
        if target is not None:
            self.check(caller, *target)


__all__ = ["AccessPolicy", "call_target"]
