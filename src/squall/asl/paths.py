"""JSONPath as Amazon States Language uses it (the Jayway subset AWS runs).

Two kinds of path (ASL spec, "Paths"):
- a *path* selects data: `$.a.b`, `$['a'][0]`, `$.items[*].id`, `$..id`, `$.a[1:3]`,
  `$.a[?(@.n > 1)]`. A *definite* path (fields and indexes only) yields one value; an
  indefinite one yields the list of every match (Jayway's rule, which AWS follows).
- a *reference path* (ResultPath, Choice `Variable`) names exactly one node: fields and
  indexes only, never `*`, `..`, slices or filters.

A missing node is `PathNotFound`, which the engine turns into States.Runtime with AWS's
wording ("Invalid path '$.x' : Missing property in path $['x']"). A pure leaf: no I/O,
no imports from the rest of squall.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["PathError", "PathNotFound", "Path", "parse_path", "is_path", "get", "put"]


class PathError(ValueError):
    """The path text is not valid JSONPath (a definition error)."""


class PathNotFound(LookupError):
    """The path is valid but the data has no such node."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"Invalid path '{path}' : {detail}")
        self.path = path
        self.detail = detail


# a step: (kind, arg); kinds: field, index, wild, slice, deep, filter, union
Step = tuple[str, Any]


@dataclass(frozen=True, slots=True)
class Path:
    text: str
    steps: tuple[Step, ...]

    @property
    def definite(self) -> bool:
        return all(kind in ("field", "index") for kind, _ in self.steps)

    def canonical(self, upto: int | None = None) -> str:
        """Jayway's bracket form, used in AWS error messages: $['a'][0]."""
        out = "$"
        for kind, arg in self.steps[:upto]:
            if kind == "field":
                out += f"['{arg}']"
            elif kind == "index":
                out += f"[{arg}]"
            elif kind == "wild":
                out += "[*]"
            elif kind == "deep":
                out += f"..['{arg}']" if arg != "*" else "..[*]"
            else:
                out += "[...]"
        return out


_IDENT = re.compile(r"[^.\[\]()\s]+")
_NUM = re.compile(r"-?\d+")


def is_path(value: Any) -> bool:
    return isinstance(value, str) and (value == "$" or value.startswith("$.")
                                       or value.startswith("$["))


@lru_cache(maxsize=4096)
def parse_path(text: str) -> Path:
    """Parse `text` (must start with `$`); raises PathError."""
    if not isinstance(text, str) or not text.startswith("$"):
        raise PathError(f"{text!r} is not a JSONPath: it must start with '$'")
    i, n, steps = 1, len(text), []
    while i < n:
        c = text[i]
        if text.startswith("..", i):
            i += 2
            if i < n and text[i] == "*":
                steps.append(("deep", "*"))
                i += 1
                continue
            if i < n and text[i] == "[":
                j = text.find("]", i)
                inner = text[i + 1:j].strip() if j > 0 else ""
                if not (inner[:1] in "'\"" and inner[-1:] == inner[:1] and len(inner) > 1):
                    raise PathError(f"{text!r}: unsupported deep scan")
                steps.append(("deep", inner[1:-1]))
                i = j + 1
                continue
            m = _IDENT.match(text, i)
            if not m:
                raise PathError(f"{text!r}: a name must follow '..'")
            steps.append(("deep", m.group()))
            i = m.end()
        elif c == ".":
            i += 1
            if i < n and text[i] == "*":
                steps.append(("wild", None))
                i += 1
                continue
            m = _IDENT.match(text, i)
            if not m:
                raise PathError(f"{text!r}: a field name must follow '.' at position {i}")
            name = m.group()
            i = m.end()
            if text.startswith("()", i):  # length() and friends: Jayway functions
                if name != "length":
                    raise PathError(f"{text!r}: unsupported function {name}()")
                steps.append(("fn", name))
                i += 2
                continue
            steps.append(("field", name))
        elif c == "[":
            i, step = _bracket(text, i + 1)
            steps.append(step)
        else:
            raise PathError(f"{text!r}: unexpected {c!r} at position {i}")
    return Path(text, tuple(steps))


def _bracket(text: str, i: int) -> tuple[int, Step]:
    n = len(text)
    if text.startswith("?(", i):  # a filter: find the matching ')' then ']'
        depth, j, quote = 0, i + 1, None
        while j < n:
            ch = text[j]
            if quote:
                if ch == "\\":
                    j += 1
                elif ch == quote:
                    quote = None
            elif ch in "'\"":
                quote = ch
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        if j >= n or not text.startswith("]", j + 1):
            raise PathError(f"{text!r}: unterminated filter")
        return j + 2, ("filter", _parse_filter(text, text[i + 2:j]))
    j = i
    quote = None
    while j < n:
        ch = text[j]
        if quote:
            if ch == "\\":
                j += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "]":
            break
        j += 1
    if j >= n:
        raise PathError(f"{text!r}: missing ']'")
    inner = text[i:j].strip()
    end = j + 1
    if inner == "*":
        return end, ("wild", None)
    m = re.fullmatch(r"\(\s*@\.length\s*-\s*(\d+)\s*\)", inner)
    if m:  # Jayway's script index: [(@.length-1)] is the last item
        return end, ("index", -int(m.group(1)))
    parts = _split_top(inner, ",")
    items: list[Step] = []
    for part in parts:
        part = part.strip()
        if len(part) >= 2 and part[0] in "'\"" and part[-1] == part[0]:
            items.append(("field", part[1:-1].replace("\\" + part[0], part[0])))
        elif _NUM.fullmatch(part):
            items.append(("index", int(part)))
        elif ":" in part:
            bits = part.split(":")
            if len(bits) > 3 or not all(b.strip() == "" or _NUM.fullmatch(b.strip())
                                        for b in bits):
                raise PathError(f"{text!r}: bad slice [{part}]")
            vals = [int(b) if b.strip() else None for b in bits] + [None] * (3 - len(bits))
            items.append(("slice", tuple(vals)))
        else:
            raise PathError(f"{text!r}: bad subscript [{part}]")
    if len(items) == 1:
        return end, items[0]
    return end, ("union", tuple(items))


def _split_top(s: str, sep: str) -> list[str]:
    out, cur, quote = [], "", None
    for ch in s:
        if quote:
            cur += ch
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            cur += ch
        elif ch == sep:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


# -- filters: [?(@.a > 1 && @.b == 'x')] ------------------------------------------------

_FTOK = re.compile(r"""\s*(?:(&&|\|\|)|(==|!=|<=|>=|<|>|=~)|(@[^\s=!<>&|)]*|\$[^\s=!<>&|)]*)
                       |('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
                       |(true|false|null)|(\(|\))|(!)|([A-Za-z_][A-Za-z0-9_-]*))""", re.X)


def _parse_filter(path_text: str, src: str) -> Any:
    toks: list[tuple[str, str]] = []
    i = 0
    while i < len(src):
        if src[i].isspace():
            i += 1
            continue
        m = _FTOK.match(src, i)
        if not m or m.end() == i:
            raise PathError(f"{path_text!r}: cannot parse filter {src!r}")
        kinds = ("bool", "cmp", "path", "str", "num", "lit", "paren", "not", "word")
        for k, g in zip(kinds, m.groups()):
            if g is not None:
                toks.append((k, g))
                break
        i = m.end()
    pos = 0

    def peek() -> tuple[str, str] | None:
        return toks[pos] if pos < len(toks) else None

    def operand() -> Any:
        nonlocal pos
        t = peek()
        if t is None:
            raise PathError(f"{path_text!r}: incomplete filter {src!r}")
        pos += 1
        k, v = t
        if k == "path":
            rel = "$" + v[1:] if v.startswith("@") else v
            return ("at" if v.startswith("@") else "root", parse_path(rel))
        if k == "str":
            return ("const", v[1:-1].replace("\\" + v[0], v[0]))
        if k == "num":
            return ("const", json.loads(v))
        if k == "word":  # Jayway reads a bare word as a string
            return ("const", v)
        if k == "lit":
            return ("const", json.loads(v))
        if k == "paren":
            e = disj()
            if peek() != ("paren", ")"):
                raise PathError(f"{path_text!r}: missing ')' in filter")
            pos += 1
            return ("group", e)
        if k == "not":
            return ("not", operand())
        raise PathError(f"{path_text!r}: unexpected {v!r} in filter")

    def comparison() -> Any:
        nonlocal pos
        left = operand()
        t = peek()
        if t and t[0] == "cmp":
            pos += 1
            return ("cmp", t[1], left, operand())
        return ("exists", left)

    def conj() -> Any:
        nonlocal pos
        e = comparison()
        while peek() == ("bool", "&&"):
            pos += 1
            e = ("and", e, comparison())
        return e

    def disj() -> Any:
        nonlocal pos
        e = conj()
        while peek() == ("bool", "||"):
            pos += 1
            e = ("or", e, conj())
        return e

    expr = disj()
    if pos != len(toks):
        raise PathError(f"{path_text!r}: unexpected text in filter {src!r}")
    return expr


_MISSING = object()


def _operand(node: Any, cur: Any, root: Any) -> Any:
    kind = node[0]
    if kind == "const":
        return node[1]
    if kind in ("at", "root"):
        found = _select(node[1], cur if kind == "at" else root, root)
        if node[1].definite:
            return found[0] if found else _MISSING
        return found
    if kind == "group":
        return _truth(node[1], cur, root)
    if kind == "not":
        return not _truthy(_operand(node[1], cur, root))
    raise AssertionError(kind)  # pragma: no cover


def _truthy(v: Any) -> bool:
    return v is not _MISSING and v is not None and v is not False


def _truth(expr: Any, cur: Any, root: Any) -> bool:
    kind = expr[0]
    if kind == "and":
        return _truth(expr[1], cur, root) and _truth(expr[2], cur, root)
    if kind == "or":
        return _truth(expr[1], cur, root) or _truth(expr[2], cur, root)
    if kind == "exists":
        v = _operand(expr[1], cur, root)
        return v is not _MISSING if expr[1][0] in ("at", "root") else _truthy(v)
    _, op, l, r = expr
    a, b = _operand(l, cur, root), _operand(r, cur, root)
    if a is _MISSING or b is _MISSING:
        return False
    if op == "==":
        return _eq(a, b)
    if op == "!=":
        return not _eq(a, b)
    if op == "=~":
        return isinstance(a, str) and isinstance(b, str) and re.search(b, a) is not None
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        pass
    elif not (isinstance(a, str) and isinstance(b, str)):
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _select(path: Path, data: Any, root: Any) -> list[Any]:
    nodes = [data]
    for kind, arg in path.steps:
        out: list[Any] = []
        for node in nodes:
            _apply(kind, arg, node, root, out)
        nodes = out
    return nodes


def _apply(kind: str, arg: Any, node: Any, root: Any, out: list[Any]) -> None:
    if kind == "field":
        if isinstance(node, dict) and arg in node:
            out.append(node[arg])
    elif kind == "index":
        if isinstance(node, list) and -len(node) <= arg < len(node):
            out.append(node[arg])
    elif kind == "wild":
        if isinstance(node, dict):
            out.extend(node.values())
        elif isinstance(node, list):
            out.extend(node)
    elif kind == "slice":
        if isinstance(node, list):
            a, b, s = arg
            out.extend(node[slice(a, b, s)])
    elif kind == "union":
        for k, a in arg:
            _apply(k, a, node, root, out)
    elif kind == "filter":
        items = node if isinstance(node, list) else (
            list(node.values()) if isinstance(node, dict) else [])
        out.extend(x for x in items if _truth(arg, x, root))
    elif kind == "deep":
        _deep(node, arg, out)
    elif kind == "fn":
        if isinstance(node, (list, dict, str)):
            out.append(len(node))


def _deep(node: Any, name: str, out: list[Any]) -> None:
    if isinstance(node, dict):
        if name == "*":
            out.extend(node.values())
        elif name in node:
            out.append(node[name])
        for v in node.values():
            _deep(v, name, out)
    elif isinstance(node, list):
        if name == "*":
            out.extend(node)
        for v in node:
            _deep(v, name, out)


def get(path: str | Path, data: Any) -> Any:
    """The value at `path` in `data` (a list of matches for an indefinite path)."""
    p = parse_path(path) if isinstance(path, str) else path
    if p.definite or (p.steps and p.steps[-1][0] == "fn" and all(
            k in ("field", "index") for k, _ in p.steps[:-1])):
        node = data
        for i, (kind, arg) in enumerate(p.steps):
            if kind == "field" and isinstance(node, dict) and arg in node:
                node = node[arg]
            elif kind == "index" and isinstance(node, list) and -len(node) <= arg < len(node):
                node = node[arg]
            elif kind == "fn" and isinstance(node, (list, dict, str)):
                node = len(node)
            else:
                if kind == "field":
                    detail = f"Missing property in path {p.canonical(i + 1)}" \
                        if isinstance(node, dict) else \
                        f"Expected to find an object with property {p.canonical(i + 1)} " \
                        f"in path {p.canonical(i)} but found '{_java_type(node)}'. This is not " \
                        "a json object according to the JsonProvider: " \
                        "'com.jayway.jsonpath.spi.json.JacksonJsonNodeJsonProvider'."
                elif kind == "index":
                    detail = f"Index {arg} out of bounds" if isinstance(node, list) else \
                        f"Filter: [{arg}] can only be applied to arrays. Current context is: " \
                        f"{json.dumps(node, separators=(',', ':'))}"
                else:
                    detail = f"No results for path: {p.canonical()}"
                raise PathNotFound(p.text, detail)
        return node
    return _select(p, data, data)


def _java_type(v: Any) -> str:
    if isinstance(v, bool):
        return "java.lang.Boolean"
    if isinstance(v, int):
        return "java.lang.Integer"
    if isinstance(v, float):
        return "java.lang.Double"
    if isinstance(v, str):
        return "java.lang.String"
    if isinstance(v, list):
        return "net.minidev.json.JSONArray"
    return "null"


def check_reference(path: str) -> Path:
    """Parse a reference path (fields and indexes only); raises PathError."""
    p = parse_path(path)
    if not p.definite:
        raise PathError(f"{path!r} is not a reference path: only field names and indexes "
                        "are allowed (no '*', '..', slices or filters)")
    return p


def put(path: str | Path | None, data: Any, value: Any) -> Any:
    """ResultPath semantics: `data` with `value` set at `path` (a new object; intermediate
    objects are created). `None` discards `value`; `$` replaces `data` whole."""
    if path is None:
        return data
    p = check_reference(path) if isinstance(path, str) else path
    if not p.steps:
        return value
    out = copy.deepcopy(data)
    if not isinstance(out, (dict, list)):
        raise PathNotFound(p.text, f"cannot set a value inside a {_java_type(out)}")
    node = out
    for i, (kind, arg) in enumerate(p.steps):
        last = i == len(p.steps) - 1
        if kind == "field":
            if not isinstance(node, dict):
                raise PathNotFound(p.text, f"cannot set {p.canonical(i + 1)}: not an object")
            if last:
                node[arg] = value
            else:
                nxt = node.get(arg)
                if not isinstance(nxt, (dict, list)):
                    nxt = node[arg] = {}
                node = nxt
        else:
            if not isinstance(node, list) or not -len(node) <= arg < len(node):
                raise PathNotFound(p.text, f"Index {arg} out of bounds")
            if last:
                node[arg] = value
            else:
                node = node[arg]
    return out
