"""Route matching with API Gateway's rules: `{param}` segments, a greedy `{proxy+}` last
segment, `ANY` as a method, the most specific route first.

Static paths are one dict lookup; parameterised routes are tried in order of
specificity (more literal segments first, greedy routes last).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(\+?)\}$")


@dataclass(frozen=True, slots=True)
class Target:
    function: str
    route_key: str  # "GET /orders/{id}"


@dataclass(frozen=True, slots=True)
class Match:
    target: Target
    params: dict[str, str]


class MethodNotAllowed(Exception):
    def __init__(self, allowed: list[str]) -> None:
        super().__init__(", ".join(allowed))
        self.allowed = allowed


def _normalize(path: str) -> str:
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path


class _Dynamic:
    __slots__ = ("regex", "names", "methods", "rank")

    def __init__(self, template: str) -> None:
        parts = []
        self.names: list[str] = []
        literal = 0
        greedy = False
        for seg in template.strip("/").split("/"):
            m = _PARAM.match(seg)
            if m:
                self.names.append(m.group(1))
                if m.group(2):
                    greedy = True
                    parts.append("(.+)")
                else:
                    parts.append("([^/]+)")
            else:
                literal += 1
                parts.append(re.escape(seg))
        self.regex = re.compile("^/" + "/".join(parts) + "$")
        self.methods: dict[str, Target] = {}
        # literal segments first, then fewer params, greedy last
        self.rank = (greedy, -literal, len(self.names))


class Router:
    def __init__(self, routes: list[tuple[str, str, str]]) -> None:
        """`routes`: (method, path template, function name)."""
        self.static: dict[str, dict[str, Target]] = {}
        dynamic: dict[str, _Dynamic] = {}
        for method, template, function in routes:
            target = Target(function, f"{method} {template}")
            norm = _normalize(template)
            if "{" in norm:
                entry = dynamic.get(norm)
                if entry is None:
                    entry = dynamic[norm] = _Dynamic(norm)
                entry.methods[method] = target
            else:
                self.static.setdefault(norm, {})[method] = target
        self.dynamic = sorted(dynamic.values(), key=lambda d: d.rank)

    def match(self, method: str, path: str) -> Match | None:
        """The route for `method path`; None if no path matches; MethodNotAllowed if only
        the method does not."""
        path = _normalize(path)
        allowed: list[str] = []
        methods = self.static.get(path)
        if methods is not None:
            target = methods.get(method) or methods.get("ANY")
            if target is not None:
                return Match(target, {})
            allowed.extend(methods)
        for entry in self.dynamic:
            m = entry.regex.match(path)
            if m is None:
                continue
            target = entry.methods.get(method) or entry.methods.get("ANY")
            if target is None:
                allowed.extend(entry.methods)
                continue
            params = dict(zip(entry.names, m.groups()))
            return Match(target, params)
        if allowed:
            raise MethodNotAllowed(sorted(set(allowed)))
        return None
