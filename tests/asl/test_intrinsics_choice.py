"""Intrinsic functions (with AWS's argument checks) and every Choice operator."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from squall.asl import StatesError, choice, intrinsics, paths


def ev(expr: str, data: Any = None) -> Any:
    return intrinsics.evaluate(expr, lambda kind, text: paths.get(text, data or {}))


@pytest.mark.parametrize("expr,want", [
    ("States.Format('a{}b{}', 1, 'x')", "a1bx"),
    ("States.Format('esc \\{\\} {}', true)", "esc {} true"),
    ("States.StringToJson('{\"a\": [1]}')", {"a": [1]}),
    ("States.JsonToString($.o)", '{"k":1}'),
    ("States.Array(1, 'two', $.o)", [1, "two", {"k": 1}]),
    ("States.ArrayPartition($.xs, 2)", [[1, 2], [3, 4], [5]]),
    ("States.ArrayContains($.xs, 3)", True),
    ("States.ArrayRange(1, 9, 2)", [1, 3, 5, 7, 9]),
    ("States.ArrayGetItem($.xs, 1)", 2),
    ("States.ArrayLength($.xs)", 5),
    ("States.ArrayUnique(States.Array(1, 1, 2, true, true))", [1, 2, True]),
    ("States.Base64Encode('Hello')", "SGVsbG8="),
    ("States.Base64Decode('SGVsbG8=')", "Hello"),
    ("States.Hash('x', 'SHA-256')", hashlib.sha256(b"x").hexdigest()),
    ("States.Hash('x', 'MD5')", hashlib.md5(b"x").hexdigest()),
    ("States.JsonMerge($.o, States.StringToJson('{\"k\": 2, \"z\": 3}'), false)",
     {"k": 2, "z": 3}),
    ("States.MathAdd(1.5, -1)", 1),
    ("States.StringSplit('a,b;c', ',;')", ["a", "b", "c"]),
    ("States.MathRandom(1, 1)", 1),
])
def test_intrinsic(expr: str, want: Any) -> None:
    assert ev(expr, {"xs": [1, 2, 3, 4, 5], "o": {"k": 1}}) == want


def test_uuid_and_seeded_random() -> None:
    assert len(ev("States.UUID()")) == 36
    assert ev("States.MathRandom(1, 1000, 7)") == ev("States.MathRandom(1, 1000, 7)")


@pytest.mark.parametrize("expr", [
    "States.ArrayPartition($.xs, 0)", "States.ArrayGetItem($.xs, 9)",
    "States.Hash('x', 'SHA-999')", "States.JsonMerge($.o, $.o, true)",
    "States.Format('{} {}', 1)", "States.Base64Decode('%%%')",
    "States.ArrayRange(1, 5000, 1)", "States.StringToJson('{')",
])
def test_intrinsic_failures(expr: str) -> None:
    with pytest.raises(StatesError) as info:
        ev(expr, {"xs": [1], "o": {}})
    assert info.value.error == "States.IntrinsicFailure"


@pytest.mark.parametrize("expr", ["States.Nope()", "States.MathAdd(1, '2')",
                                  "States.UUID(1)", "States.Format('x'", "States.Array(1,)"])
def test_intrinsic_syntax_errors_at_parse(expr: str) -> None:
    with pytest.raises(intrinsics.IntrinsicSyntaxError):
        intrinsics.parse(expr)


DATA = {"s": "b", "n": 5, "f": 2.5, "t": True, "ts": "2020-06-01T12:00:00Z", "nul": None,
        "s2": "b", "n2": 5, "t2": True, "ts2": "2020-06-01T12:00:00Z"}


@pytest.mark.parametrize("op,value,want", [
    ("StringEquals", "b", True), ("StringLessThan", "c", True), ("StringGreaterThan", "a", True),
    ("StringLessThanEquals", "b", True), ("StringGreaterThanEquals", "c", False),
    ("NumericEquals", 5, True), ("NumericLessThan", 6, True), ("NumericGreaterThan", 4, True),
    ("NumericLessThanEquals", 5, True), ("NumericGreaterThanEquals", 6, False),
    ("TimestampEquals", "2020-06-01T12:00:00Z", True),
    ("TimestampLessThan", "2021-01-01T00:00:00Z", True),
    ("TimestampGreaterThan", "2021-01-01T00:00:00Z", False),
    ("TimestampLessThanEquals", "2020-06-01T14:00:00+02:00", True),
    ("TimestampGreaterThanEquals", "2020-06-01T12:00:00.000Z", True),
])
def test_comparisons(op: str, value: Any, want: bool) -> None:
    var = {"S": "$.s", "N": "$.n", "T": "$.ts"}[op[0]]
    rule = {"Variable": var, op: value}
    assert choice.evaluate(rule, DATA, lambda p: paths.get(p, DATA)) is want


@pytest.mark.parametrize("op,other,want", [
    ("StringEqualsPath", "$.s2", True), ("NumericEqualsPath", "$.n2", True),
    ("BooleanEqualsPath", "$.t2", True), ("TimestampEqualsPath", "$.ts2", True),
    ("NumericLessThanPath", "$.n2", False), ("StringGreaterThanEqualsPath", "$.s2", True),
])
def test_path_comparisons(op: str, other: str, want: bool) -> None:
    var = {"S": "$.s", "N": "$.n", "B": "$.t", "T": "$.ts"}[op[0]]
    rule = {"Variable": var, op: other}
    assert choice.evaluate(rule, DATA, lambda p: paths.get(p, DATA)) is want


@pytest.mark.parametrize("var,op,want", [
    ("$.nul", "IsNull", True), ("$.n", "IsNumeric", True), ("$.s", "IsNumeric", False),
    ("$.s", "IsString", True), ("$.t", "IsBoolean", True), ("$.ts", "IsTimestamp", True),
    ("$.s", "IsTimestamp", False), ("$.missing", "IsPresent", False), ("$.n", "IsPresent", True),
])
def test_type_tests(var: str, op: str, want: bool) -> None:
    rule = {"Variable": var, op: True}
    assert choice.evaluate(rule, DATA, lambda p: paths.get(p, DATA)) is want


@pytest.mark.parametrize("value,pattern,want", [
    ("log-2020.txt", "log-*.txt", True), ("a*b", "a\\*b", True), ("axb", "a\\*b", False),
    ("back\\slash", "back\\\\slash", True), ("", "*", True), ("abc", "a*c*", True),
])
def test_string_matches(value: str, pattern: str, want: bool) -> None:
    data = {"v": value}
    rule = {"Variable": "$.v", "StringMatches": pattern}
    assert choice.evaluate(rule, data, lambda p: paths.get(p, data)) is want


def test_type_mismatch_is_false_and_missing_variable_raises() -> None:
    assert choice.evaluate({"Variable": "$.s", "NumericEquals": 1}, DATA,
                           lambda p: paths.get(p, DATA)) is False
    with pytest.raises(paths.PathNotFound):
        choice.evaluate({"Variable": "$.zz", "NumericEquals": 1}, DATA,
                        lambda p: paths.get(p, DATA))
