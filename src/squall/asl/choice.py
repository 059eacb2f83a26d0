"""Choice rules: every ASL comparison operator, their `…Path` twins, the type tests and
And/Or/Not. A rule whose value has the wrong type is simply false (AWS); a `Variable` that
is missing is States.Runtime, except under IsPresent."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Callable

from . import paths

_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def parse_timestamp(v: Any) -> datetime | None:
    """An RFC 3339 timestamp (upper-case T and Z, as AWS requires), or None."""
    if not isinstance(v, str) or not _TS.fullmatch(v):
        return None
    text = v.replace("Z", "+00:00")
    m = re.match(r"(.*\.)(\d+)(.*)", text)
    if m:  # Python wants at most 6 fraction digits
        text = m.group(1) + m.group(2)[:6].ljust(6, "0") + m.group(3)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _string_matches(value: str, pattern: str) -> bool:
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "*" else re.escape(ch))
        i += 1
    return re.fullmatch("".join(out), value, re.S) is not None


def _cmp(kind: str, op: str) -> Callable[[Any, Any], bool]:
    def check(a: Any, b: Any) -> bool:
        if kind == "String":
            if not (isinstance(a, str) and isinstance(b, str)):
                return False
        elif kind == "Numeric":
            if not (_num(a) and _num(b)):
                return False
        elif kind == "Boolean":
            if not (isinstance(a, bool) and isinstance(b, bool)):
                return False
        elif kind == "Timestamp":
            a, b = parse_timestamp(a), parse_timestamp(b)
            if a is None or b is None:
                return False
        return {"Equals": a == b, "LessThan": a < b, "GreaterThan": a > b,
                "LessThanEquals": a <= b, "GreaterThanEquals": a >= b}[op]
    return check


COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {}
for _kind in ("String", "Numeric", "Timestamp"):
    for _op in ("Equals", "LessThan", "GreaterThan", "LessThanEquals", "GreaterThanEquals"):
        COMPARATORS[_kind + _op] = _cmp(_kind, _op)
COMPARATORS["BooleanEquals"] = _cmp("Boolean", "Equals")
COMPARATORS["StringMatches"] = lambda a, b: isinstance(a, str) and _string_matches(a, b)

TYPE_TESTS: dict[str, Callable[[Any], bool]] = {
    "IsNull": lambda v: v is None,
    "IsNumeric": _num,
    "IsString": lambda v: isinstance(v, str),
    "IsBoolean": lambda v: isinstance(v, bool),
    "IsTimestamp": lambda v: parse_timestamp(v) is not None,
}

OPERATORS = (set(COMPARATORS) | {k + "Path" for k in COMPARATORS if k != "StringMatches"}
             | set(TYPE_TESTS) | {"IsPresent"})

_MISSING = object()


def evaluate(rule: dict[str, Any], data: Any, resolve: Callable[[str], Any]) -> bool:
    """Is `rule` true for `data`? `resolve(path)` reads `$…` or `$$…` (raising
    PathNotFound); `data` is only used for documentation of intent."""
    if "And" in rule:
        return all(evaluate(r, data, resolve) for r in rule["And"])
    if "Or" in rule:
        return any(evaluate(r, data, resolve) for r in rule["Or"])
    if "Not" in rule:
        return not evaluate(rule["Not"], data, resolve)
    op = next(k for k in rule if k in OPERATORS)
    variable = rule["Variable"]
    if op == "IsPresent":
        try:
            value = resolve(variable)
            present = not (isinstance(value, list) and value == [] and
                           not paths.parse_path(variable).definite)
        except paths.PathNotFound:
            present = False
        return present is bool(rule[op])
    value = resolve(variable)
    if op in TYPE_TESTS:
        return TYPE_TESTS[op](value) is bool(rule[op])
    if op.endswith("Path"):
        other = resolve(rule[op])
        return COMPARATORS[op[:-4]](value, other)
    return COMPARATORS[op](value, rule[op])
