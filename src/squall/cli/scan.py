"""A best-effort static scan of an app's source for what each function touches, for
`squall check`. It reads the file with `ast` and never imports it.

What it sees, in a function's body and in the module-level helpers it calls by name:
handle calls on module-level handles (`orders = app.table("orders", ...)` then
`orders.put(...)`), inline handles (`app.table("orders").get(...)`,
`app.buckets["uploads"].put(...)`), and app calls with a literal name (`app.send("emails",
...)`, `app.invoke("charge", ...)`, `app.notify("alerts", ...)`, `app.publish(...)`,
`app.put_records("clicks", ...)`). What it cannot see: names computed at run time (reported
as dynamic), handles passed around or stored in other objects, code in other modules,
functions registered from other modules (e.g. an imported Lambda handler). The
supervisor enforces `uses=` at run time whatever this scan finds.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

# handle method -> actions, per handle kind (see squall.state.handles / sources.state)
METHODS = {
    "table": {"get": ("read",), "query": ("read",), "scan": ("read",), "query_all": ("read",),
              "scan_all": ("read",), "put": ("write",), "update": ("write",),
              "increment": ("write",), "delete": ("write",)},
    "cache": {"get": ("read",), "get_or_compute": ("read", "write"), "set": ("write",),
              "add": ("write",), "delete": ("write",), "incr": ("write",),
              "clear": ("write",)},
    "bucket": {"get": ("read",), "iter_bytes": ("read",), "download": ("read",),
               "head": ("read",), "exists": ("read",), "list": ("read",),
               "list_all": ("read",), "usage": ("read",), "put": ("write",),
               "put_file": ("write",), "delete": ("write",), "copy": ("read", "write")},
}
APP_CALLS = {"send": ("queue", "send"), "send_batch": ("queue", "send"),
             "invoke": ("function", "invoke"), "invoke_async": ("function", "invoke"),
             "notify": ("topic", "publish"), "publish": ("bus", "publish"),
             "put_records": ("stream", "write"), "put_record": ("stream", "write")}
DECLARE = {"table": "table", "bucket": "bucket", "cache": "cache"}
COLLECTIONS = {"tables": "table", "buckets": "bucket", "caches": "cache"}
DECORATORS = ("http", "function", "queue", "stream", "schedule", "subscribe", "on_event",
              "on_change", "on_object", "on_mqtt", "on_email", "webhook", "workflow")


@dataclass(frozen=True, order=True)
class Access:
    kind: str
    resource: str
    action: str
    line: int


@dataclass
class FunctionScan:
    name: str
    found: bool = False  # its source was found in the file
    accesses: list[Access] = field(default_factory=list)
    dynamic: list[str] = field(default_factory=list)  # calls whose target is not a literal


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


class _Module:
    def __init__(self, tree: ast.Module) -> None:
        self.apps: set[str] = set()
        self.handles: dict[str, tuple[str, str]] = {}
        self.defs: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        self.registered: dict[str, str] = {}  # function name -> def name
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                func = node.value.func
                called = func.attr if isinstance(func, ast.Attribute) else (
                    func.id if isinstance(func, ast.Name) else "")
                for target in node.targets:
                    if isinstance(target, ast.Name) and called == "App":
                        self.apps.add(target.id)
        self.apps = self.apps or {"app"}
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                handle = self._declared(node.value)
                for target in node.targets:
                    if handle and isinstance(target, ast.Name):
                        self.handles[target.id] = handle
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.defs[node.name] = node
                for dec in node.decorator_list:
                    name = self._registration(dec, node.name)
                    if name:
                        self.registered[name] = node.name
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                call = node.value  # app.http("GET", "/x")(handler)
                if (isinstance(call.func, ast.Call) and call.args
                        and isinstance(call.args[0], ast.Name)):
                    name = self._registration(call.func, call.args[0].id)
                    if name:
                        self.registered[name] = call.args[0].id

    def _is_app(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id in self.apps

    def _declared(self, call: ast.Call) -> tuple[str, str] | None:
        """`app.table("orders", ...)` -> ("table", "orders"); `app.cache()` -> default."""
        f = call.func
        if isinstance(f, ast.Attribute) and self._is_app(f.value) and f.attr in DECLARE:
            name = _literal(call.args[0]) if call.args else (
                "default" if f.attr == "cache" else None)
            return (DECLARE[f.attr], name) if name else None
        return None

    def _registration(self, dec: ast.AST, def_name: str) -> str | None:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if not (isinstance(target, ast.Attribute) and self._is_app(target.value)
                and target.attr in DECORATORS):
            return None
        if isinstance(dec, ast.Call):
            for kw in dec.keywords:
                if kw.arg == "name" and _literal(kw.value):
                    return _literal(kw.value)
        return def_name

    def handle_of(self, node: ast.AST) -> tuple[str, str] | None:
        if isinstance(node, ast.Name):
            return self.handles.get(node.id)
        if isinstance(node, ast.Call):
            return self._declared(node)
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
                and self._is_app(node.value.value) and node.value.attr in COLLECTIONS):
            name = _literal(node.slice)
            return (COLLECTIONS[node.value.attr], name) if name else None
        return None


def _scan_body(mod: _Module, fn: ast.AST, out: FunctionScan, seen: set[str]) -> None:
    for node in ast.walk(fn):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in mod.defs and f.id not in seen:
            seen.add(f.id)  # a module-level helper: what it does, the function does
            _scan_body(mod, mod.defs[f.id], out, seen)
            continue
        if not isinstance(f, ast.Attribute):
            continue
        if mod._is_app(f.value) and f.attr in APP_CALLS:
            kind, action = APP_CALLS[f.attr]
            if kind == "bus":
                out.accesses.append(Access(kind, "bus", action, node.lineno))
                continue
            arg = node.args[0] if node.args else next(
                (k.value for k in node.keywords if k.arg in ("queue", "function", "topic",
                                                              "stream")), None)
            name = _literal(arg)
            if name is None:
                out.dynamic.append(f"line {node.lineno}: app.{f.attr}(...) with a computed "
                                   "name")
            else:
                out.accesses.append(Access(kind, name, action, node.lineno))
            continue
        handle = mod.handle_of(f.value)
        if handle is None:
            continue
        kind, name = handle
        actions = METHODS[kind].get(f.attr)
        if actions is None:
            continue
        for action in actions:
            out.accesses.append(Access(kind, name, action, node.lineno))
        if kind == "bucket" and f.attr == "copy":  # the destination is written too
            dst = next((_literal(k.value) for k in node.keywords if k.arg == "dst_bucket"),
                       None)
            if dst and dst != name:
                out.accesses.append(Access("bucket", dst, "write", node.lineno))


def scan(path: Path, functions: list[str]) -> dict[str, FunctionScan]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    mod = _Module(tree)
    out = {}
    for name in functions:
        result = out[name] = FunctionScan(name)
        def_name = mod.registered.get(name)
        if def_name is None or def_name not in mod.defs:
            continue
        result.found = True
        _scan_body(mod, mod.defs[def_name], result, {def_name})
        result.accesses = sorted(set(result.accesses), key=lambda a: (a.line, a.kind,
                                                                      a.resource, a.action))
    return out


__all__ = ["Access", "FunctionScan", "scan"]
