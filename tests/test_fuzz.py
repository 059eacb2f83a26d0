"""Fuzzing (Hypothesis) of the parsers that take untrusted input: the JSON depth limit and
a request's JSON body, schedule expressions, event patterns and the matcher, webhook
signature headers, and object keys. Each may only raise its documented error type, and
no input may take more than a second (Hypothesis's per-example deadline).

The default run is short; SQUALL_FUZZ_EXAMPLES=N runs N examples per target.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from squall.events.http import BadRequest, Request
from squall.events.patterns import InvalidPattern, compile_pattern
from squall.events.schedule import InvalidSchedule, parse_schedule
from squall.security.validation import too_deep
from squall.sources.webhooks import VERIFIERS, SignatureError, _hmac_hex
from squall.state.keys import MAX_KEY_BYTES, check_object_key
from squall.backends.state import InvalidKey
from squall.types import HttpRequest

EXAMPLES = int(os.environ.get("SQUALL_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=1),
                suppress_health_check=[HealthCheck.too_slow], derandomize=True)

# -- JSON -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=30)


def depth(v: object) -> int:
    if isinstance(v, list):
        return 1 + max(map(depth, v), default=0)
    if isinstance(v, dict):
        return 1 + max(map(depth, v.values()), default=0)
    return 0


def nested(n: int, inner: object) -> object:
    for i in range(n):
        inner = [inner] if i % 2 else {"k[{": inner}  # brackets inside strings too
    return inner


@FUZZ
@given(value=json_values, wrap=st.integers(0, 80), limit=st.integers(0, 64))
def test_the_depth_limit_agrees_with_the_parsed_depth(value, wrap, limit):
    body = json.dumps(nested(wrap, value)).encode()
    assert too_deep(body, limit) == (depth(json.loads(body)) > limit)


@FUZZ
@given(body=st.binary(max_size=2000) | st.text(alphabet="[]{}\"\\,:1a ", max_size=3000)
       .map(str.encode), limit=st.integers(0, 64))
def test_the_depth_limit_takes_any_bytes(body, limit):
    assert too_deep(body, limit) in (True, False)


@FUZZ
@given(body=st.binary(max_size=500)
       | st.sampled_from([b"[" * 100_000, b"1" * 5000, b'{"a":1,"a":2}', b"NaN", b"1e999999",
                          b'"\\ud800"', b"\xef\xbb\xbf{}", b"{\"a\":"]))
def test_a_request_body_is_json_or_a_400(body):
    req = Request(HttpRequest(method="POST", path="/", body=body))
    try:
        req.json()
    except BadRequest as exc:
        assert exc.status == 400 and exc.message


# -- schedules ------------------------------------------------------------------------

CRON_TOKENS = ["*", "?", "0", "5", "59", "60", "61", "23", "24", "31", "32", "1-5", "5-1",
               "*/0", "*/15", "0/5", "1,2,3", "L", "W", "15W", "LW", "3#2", "6L", "MON-FRI",
               "JAN", "FOO", "-", ",", "/", "#", "\u0661", "2026", "1970-2199", "99999999999",
               "1-99999999999", ""]
fields = st.lists(st.sampled_from(CRON_TOKENS), min_size=0, max_size=7).map(" ".join)
expressions = (fields.map(lambda f: f"cron({f})") | fields
               | st.builds(lambda n, u: f"rate({n} {u})",
                           st.sampled_from(["0", "1", "5", "-1", "99999999999999", "1.5",
                                            "\u0665"]),
                           st.sampled_from(["minute", "minutes", "hours", "day", "weeks", ""]))
               | st.text(max_size=40))
NOW = datetime(2026, 3, 29, 0, 30, tzinfo=timezone.utc)  # the night Berlin springs forward


@FUZZ
@given(expr=expressions, tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York",
                                             "Nowhere/Else", ""]))
def test_schedule_expressions_parse_or_raise_invalid_schedule(expr, tz):
    try:
        s = parse_schedule(expr, tz)
    except InvalidSchedule as exc:
        assert str(exc)
        return
    nxt = s.next_after(NOW)
    assert nxt is None or nxt > NOW
    last = s.last_at_or_before(NOW)
    assert last is None or last <= NOW
    ticks = s.firings_between(NOW, NOW + timedelta(days=2), limit=50)
    assert ticks == sorted(set(ticks))  # each instant once, in order


# -- event patterns -------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats()
           | st.text(max_size=6))
operators = st.one_of(
    st.builds(lambda v: {"prefix": v}, scalars), st.builds(lambda v: {"suffix": v}, scalars),
    st.builds(lambda v: {"equals-ignore-case": v}, scalars),
    st.builds(lambda v: {"anything-but": v}, scalars | st.lists(scalars, max_size=3)
              | st.builds(lambda p: {"prefix": p}, scalars)),
    st.builds(lambda v: {"numeric": v}, st.lists(
        st.sampled_from(["<", ">", "=", "<=", ">=", "!"]) | scalars, max_size=5)),
    st.builds(lambda v: {"exists": v}, scalars),
    st.builds(lambda v: {"wildcard": v}, st.text(alphabet="ab*\\", max_size=30)),
    st.builds(lambda v: {"cidr": v}, st.sampled_from(["10.0.0.0/8", "::1/128", "x/99",
                                                      "1.2.3.4/33", ""])),
    st.dictionaries(st.text(max_size=5), scalars, max_size=2))
patterns = st.recursive(
    st.lists(scalars | operators, max_size=4),
    lambda inner: st.dictionaries(st.text(alphabet="ab$or", max_size=3), inner, min_size=1,
                                  max_size=3)
    | st.builds(lambda alts: {"$or": alts}, st.lists(inner, max_size=3)),
    max_leaves=12)
events = st.dictionaries(st.text(alphabet="ab$or", max_size=3), json_values, max_size=4)


@FUZZ
@given(pattern=patterns | st.text(max_size=60), event=events)
def test_patterns_compile_or_raise_invalid_pattern_and_matching_never_fails(pattern, event):
    try:
        compiled = compile_pattern(pattern)
    except InvalidPattern as exc:
        assert str(exc)
        return
    assert compiled.matches(event) in (True, False)


@FUZZ
@given(n=st.integers(1, 60), text=st.text(alphabet="a*", min_size=0, max_size=2000))
def test_wildcards_do_not_backtrack(n, text):
    try:
        p = compile_pattern({"a": [{"wildcard": "*a" * n + "*b"}]})
    except InvalidPattern:
        return
    assert p.matches({"a": text}) is False  # no 'b': never matches, and never slowly


# -- webhook signatures ---------------------------------------------------------------

header_values = (st.text(max_size=80) | st.sampled_from([
    "sha256=", "sha1=abc", "t=1,v1=", "t=,v1=x", "t=1,t=2,v1=x", "v0=", "=", ",,,",
    "t=" + "9" * 5000, "t=\u0661\u0662,v1=00", "sha256=" + "0" * 64, "v1=" + "f" * 64]))


@FUZZ
@given(verify=st.sampled_from(sorted(VERIFIERS)), body=st.binary(max_size=200),
       headers=st.dictionaries(st.sampled_from([
           "x-hub-signature-256", "stripe-signature", "x-slack-signature",
           "x-slack-request-timestamp", "x-signature-256"]), header_values, max_size=5))
def test_signature_headers_verify_or_raise_signature_error(verify, body, headers):
    try:
        VERIFIERS[verify](b"secret", body, headers, now=1_750_000_000.0)
    except SignatureError as exc:
        assert str(exc)


@FUZZ
@given(body=st.binary(max_size=200), ts=st.integers(1_749_999_800, 1_750_000_200))
def test_good_signatures_verify(body, ts):
    now = 1_750_000_000.0
    VERIFIERS["github"](b"s", body, {"x-hub-signature-256": "sha256=" + _hmac_hex(b"s", body)})
    sig = _hmac_hex(b"s", f"{ts}.".encode() + body)
    VERIFIERS["stripe"](b"s", body, {"stripe-signature": f"t={ts},v1=bad,v1={sig}"}, now=now)
    slack = _hmac_hex(b"s", f"v0:{ts}:".encode() + body)
    VERIFIERS["slack"](b"s", body, {"x-slack-signature": f"v0={slack}",
                                    "x-slack-request-timestamp": str(ts)}, now=now)


# -- object keys ----------------------------------------------------------------------

key_parts = st.sampled_from(["a", "..", ".", "%2e%2e", "%2E.", "%2f", "%5c", "%00", "\\", "/",
                             "\x00", "\x7f", "C:", "\u2024\u2024", "\ud800", "é", "x" * 300])
keys = st.lists(key_parts, max_size=8).map("".join) | st.text(max_size=80)


@FUZZ
@given(key=keys | st.integers() | st.none())
def test_object_keys_are_safe_or_refused(key):
    try:
        ok = check_object_key("b", key)
    except InvalidKey as exc:
        assert "object key" in str(exc)
        return
    assert isinstance(ok, str) and ok == key
    assert 0 < len(ok.encode("utf-8")) <= MAX_KEY_BYTES
    assert not ok.startswith("/") and "\\" not in ok
    assert all(ord(c) >= 0x20 and ord(c) != 0x7F for c in ok)
    assert not {".", ".."} & set(ok.split("/"))

