"""EventBridge event patterns: validate once, match many events.

`compile_pattern(pattern)` checks a pattern as EventBridge does (its rule engine is
aws/event-ruler, so the reasons read like AWS's: `Event pattern is not valid. Reason: ...`)
and returns a reusable `Pattern`; `Pattern.matches(event)` answers for one event.

Reading a pattern: keys join with "." into paths (`{"a": {"b": ..}}` and `{"a.b": ..}` are
the same field, in patterns and events alike); a leaf is a list of matchers, any of which
may match; every field must match; `$or` gives alternatives at any level. Compiling yields
branches (an OR of ANDs, as in event-ruler), each a tree of fields grouped by path.

Matching an event: an event array matches if any element does, but the fields that lie
inside one array must all match in the same element (event-ruler's array-consistent mode):
`{"d": [{"a": 1}, {"b": 2}]}` does not match `{"d": {"a": [1], "b": [2]}}`. `exists: false`
means no such leaf in the chosen elements, judged against the whole match (event-ruler
judges it against the fields that sort before it only). Only event keys on a pattern path
are visited. Wildcards match by segment search, never backtracking; rules whose wildcards
could keep too many states alive are rejected as AWS does; `$or` expansion is capped.
"""

from __future__ import annotations

import ipaddress
import json
import re
from decimal import Decimal
from itertools import product
from typing import Any, Callable

__all__ = ["InvalidPattern", "Pattern", "compile_pattern"]

Test = Callable[[Any], bool]
_NUM_LIMIT = 5e9            # event-ruler compares numbers in +-5e9 with 6 decimals
_WILDCARD_LIMIT = 10        # live wildcard states AWS admits per field (see _too_complex)
_WILDCARD_WORK = 20_000     # machine states explored before a rule counts as too complex
_MAX_BRANCHES = 1_000       # Squall's cap on the expansions ($or, exists:false) of a rule
_MAX_ASSIGNMENTS = 256      # see _mixed
_TOO_COMPLEX = ("Rule is too complex - try using fewer wildcard characters or fewer "
                "repeating character sequences after a wildcard character")
_RESERVED_IN_OR = frozenset((
    "exactly equals-ignore-case prefix suffix anything-but exists wildcard numeric cidr = < <= "
    "> >= regex not-wildcard not-equals-ignore-case date-after date-on-or-after date-before "
    "date-on-or-before in-date-range ip-address-in-range ip-address-not-in-range").split())
_IPV4 = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_IPV6 = re.compile(r"[0-9a-fA-F:]*:[0-9a-fA-F:]*")
_ABSENT = object()          # the `exists: false` matcher; also "no more tokens"
_STAR = 256                 # a `*` among a wildcard's UTF-8 bytes


class InvalidPattern(ValueError):
    """The event pattern is not valid; `reason` is the reason text alone."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"Event pattern is not valid. Reason: {reason}")


class _OrShape(InvalidPattern):
    """`$or` is not usable as the operator here: event-ruler then reads it as a field name."""


def _is_num(v: Any) -> bool:
    return type(v) is int or type(v) is float       # bool is not a number here


def _text(v: Any) -> str:           # how a (non-string) JSON token reads in event-ruler
    return "]" if v is _ABSENT else {list: "[", dict: "{"}.get(type(v)) or json.dumps(v)


def _comparable(v: int | float) -> bool:
    """Whether event-ruler compares this number numerically (else only by its text)."""
    if not -_NUM_LIMIT <= v <= _NUM_LIMIT:
        return False
    return type(v) is int or v.is_integer() or Decimal(repr(v)).as_tuple().exponent >= -6


def _pattern_number(v: int | float) -> int | float:
    if not _comparable(v):
        raise InvalidPattern("Only values upto 6 decimals are supported" if abs(v) <= _NUM_LIMIT
                             else "Value must be between -5.0E9 and 5.0E9, inclusive")
    return v


def _ip(s: str) -> tuple[int, int] | None:
    """(version, address) for an IPv4 or IPv6 literal, else None."""
    if _IPV4.fullmatch(s):
        a, b, c, d = (int(p) for p in s.split("."))
        return (4, a << 24 | b << 16 | c << 8 | d) if max(a, b, c, d) < 256 else None
    try:
        return (6, int(ipaddress.IPv6Address(s))) if _IPV6.fullmatch(s) else None
    except ValueError:
        return None


def _cidr(spec: str) -> Test:
    parts = spec.rstrip("/").split("/")         # as Java's split, without trailing empties
    if len(parts) != 2:
        raise InvalidPattern("Malformed CIDR, one '/' required")
    if not re.fullmatch(r"[+-]?[0-9]+", parts[1]):
        raise InvalidPattern("Malformed CIDR, mask bits must be an integer")
    bits = int(parts[1])
    if bits < 0:
        raise InvalidPattern("Malformed CIDR, mask bits must not be negative")
    if not (_IPV4.fullmatch(parts[0]) or _IPV6.fullmatch(parts[0])):
        raise InvalidPattern(f"Nonstandard IP address: {parts[0]}")
    if (base := _ip(parts[0])) is None:
        raise InvalidPattern(f"Invalid IP address: {parts[0]}")
    version, low = base
    width = 32 if version == 4 else 128
    if bits >= width:
        raise InvalidPattern(f"IPv{version} mask bits must be < {width}")
    high = low | ((1 << (width - bits)) - 1)        # event-ruler keeps the base's host bits

    def test(v: Any) -> bool:
        ip = _ip(v) if type(v) is str else None
        return ip is not None and ip[0] == version and low <= ip[1] <= high
    return test


def _ignore_case(kind: str, p: str) -> Test:
    """equals-ignore-case (whole, prefix or suffix): per pattern character, event-ruler
    accepts that character and its one-character lower and upper case forms."""
    sets = [c + "".join(m for m in (c.lower(), c.upper()) if len(m) == 1) for c in p]
    n = len(p)

    def test(v: Any) -> bool:
        if type(v) is not str or len(v) < n or (kind == "equals" and len(v) != n):
            return False
        start = len(v) - n if kind == "suffix" else 0
        return all(v[start + i] in allowed for i, allowed in enumerate(sets))
    return test


def _wildcard_tokens(raw: str) -> list[int]:
    """UTF-8 bytes of the quoted value, `*` as _STAR; errors worded (and placed) as AWS's."""
    data, out, i = ('"' + raw + '"').encode("utf-8", "surrogatepass"), [], 0
    while i < len(data):
        if data[i] == 42:
            if data[i + 1] == 42:
                raise InvalidPattern(f"Consecutive wildcard characters at pos {i}")
            out.append(_STAR)
        elif data[i] == 92:
            if data[i + 1] not in (42, 92):
                raise InvalidPattern(f"Invalid escape character at pos {i}")
            i += 1
            out.append(data[i])
        else:
            out.append(data[i])
        i += 1
    return out


def _wildcard(raw: str) -> Test:
    """Segments between stars, found by leftmost search: linear time, no backtracking."""
    toks = _wildcard_tokens(raw)[1:-1]
    cuts = [i for i, t in enumerate(toks) if t == _STAR]
    segs = [bytes(toks[a + 1:b]).decode("utf-8", "surrogatepass")
            for a, b in zip([-1, *cuts], [*cuts, len(toks)])]
    first, last, middle, need = segs[0], segs[-1], segs[1:-1], sum(map(len, segs))

    def test(v: Any) -> bool:
        if type(v) is not str or len(segs) == 1:
            return v == first and type(v) is str
        if len(v) < need or not v.startswith(first) or not v.endswith(last):
            return False
        pos, end = len(first), len(v) - len(last)
        for seg in middle:
            pos = v.find(seg, pos, end)
            if pos < 0:
                return False
            pos += len(seg)
        return True
    return test


class _State:
    """A byte-machine state: `lit` byte -> next states, `loop` states taken on any byte,
    `weight` the wildcard terms reachable, `trie`/`star` its shared successors."""

    __slots__ = ("lit", "loop", "weight", "trie", "star")

    def __init__(self) -> None:
        self.lit, self.loop, self.weight, self.trie, self.star = {}, [], set(), {}, None


def _too_complex(terms: list[list[str]]) -> bool:
    """Whether the wildcards of one field could keep more than _WILDCARD_LIMIT weighted states
    alive for some input, as event-ruler's MachineComplexityEvaluator measures (each live
    state counts the wildcard terms reachable from it) and AWS enforces. States follow
    event-ruler's byte machine: literal prefixes and the first star that follows them are
    shared between patterns, states after a star are private, a term ends in one state."""
    start, finals = _State(), {}
    for term, raws in enumerate(terms):
        for raw in raws:
            toks = _wildcard_tokens(raw)
            prev, cur, shared = start, start, True
            for i, t in enumerate(toks):
                if i == len(toks) - 1:
                    nxt, made = finals.setdefault(term, _State()), True
                elif t == _STAR:
                    nxt = cur.star if shared else None
                    nxt, made = nxt or _State(), nxt is None
                    cur.star = nxt if shared else cur.star
                    shared = False
                else:
                    nxt = cur.trie.get(t) if shared else None
                    nxt, made = nxt or _State(), nxt is None
                    if shared:
                        cur.trie[t] = nxt
                if t == _STAR:
                    if not nxt.loop:
                        cur.loop.append(nxt)
                        nxt.loop.append(nxt)
                elif made:
                    cur.lit.setdefault(t, []).append(nxt)
                    if i and toks[i - 1] == _STAR:          # the star may match nothing
                        prev.lit.setdefault(t, []).append(nxt)
                nxt.weight.add(term)
                prev, cur = cur, nxt
    seen: set[frozenset[_State]] = set()
    todo = [frozenset((start,))]
    while todo:
        live = todo.pop()
        for b in {-1}.union(*(s.lit for s in live)):      # -1: any byte with no edge here
            nxt_set = frozenset(n for s in live for n in (*s.loop, *s.lit.get(b, ())))
            if not nxt_set or nxt_set in seen:
                continue
            cost = sum(len(s.weight) + sum(len(w.weight) for w in s.loop if w not in nxt_set)
                       for s in nxt_set)
            if cost > _WILDCARD_LIMIT or len(seen) > _WILDCARD_WORK:
                return True
            seen.add(nxt_set)
            todo.append(nxt_set)
    return False


# -- compiling ------------------------------------------------------------------------------

_STRING_TESTS: dict[str, Callable[[str], Test]] = {
    "prefix": lambda s: lambda v: type(v) is str and v.startswith(s),
    "suffix": lambda s: lambda v: type(v) is str and v.endswith(s),
    "equals-ignore-case": lambda s: _ignore_case("equals", s),
    "wildcard": _wildcard,
    "exactly": lambda s: lambda v: v == s and type(v) is str,
    "cidr": _cidr,
}


def _anything_but(spec: Any, wildcards: list[list[str]]) -> Test:
    kind, extra = None, False
    if isinstance(spec, dict):
        if not spec:
            raise InvalidPattern("Anything-But expression name not found")
        kind, extra = next(iter(spec)), len(spec) > 1
        if kind not in ("equals-ignore-case", "prefix", "suffix", "wildcard"):
            raise InvalidPattern(f"Unsupported anything-but pattern: {kind}")
        spec = spec[kind]
    if not (isinstance(spec, (list, str)) or _is_num(spec)):
        raise InvalidPattern("Value of anything-but must be an array or single string/number "
                             "value.")
    values = spec if isinstance(spec, list) else [spec]
    if kind is None:
        if not all(isinstance(v, str) or _is_num(v) for v in values):
            raise InvalidPattern("Inside anything but list, start|null|boolean is not supported.")
        strings = {v for v in values if isinstance(v, str)}
        numbers = {_pattern_number(v) for v in values if _is_num(v)}
        if bool(strings) == bool(numbers):
            raise InvalidPattern("Inside anything but list, either all values are number or "
                                 "string, mixed type is not supported")
        if strings:
            return lambda v: not (type(v) is str and v in strings)
        return lambda v: not (_is_num(v) and v in numbers)
    for v in values:
        if not isinstance(v, str):
            raise InvalidPattern(
                "Inside anything-but/equals-ignore-case list, number|start|null|boolean is not "
                "supported." if kind == "equals-ignore-case" else "wildcard match pattern must "
                "be a string" if kind == "wildcard" else "prefix/suffix match pattern must be a "
                "string")
        if not v and kind in ("prefix", "suffix"):
            raise InvalidPattern("Null prefix/suffix not allowed")
    if not values:
        raise InvalidPattern("Empty arrays are not allowed")
    if extra:
        raise InvalidPattern("Too many elements in numeric expression")
    if kind == "wildcard":
        wildcards.append(values)
    tests = [_STRING_TESTS[kind](v) for v in values]
    return lambda v: not any(t(v) for t in tests)


def _numeric(spec: Any) -> Test:
    if not isinstance(spec, list):
        raise InvalidPattern("Value of numeric must be an array.")
    items = iter(spec)
    op = next(items, _ABSENT)
    if not isinstance(op, str):
        raise InvalidPattern(f"Invalid member in numeric match: {_text(op)}")
    if op not in ("=", "<", "<=", ">", ">="):
        raise InvalidPattern(f"Unrecognized numeric range operator: {op}")
    value = next(items, None)
    if not _is_num(value):
        raise InvalidPattern(f"Value of {'equals' if op == '=' else op} must be numeric")
    low, low_open, high, high_open = -_NUM_LIMIT, False, _NUM_LIMIT, False
    if op == "=":
        low = high = _pattern_number(value)
    elif op[0] == "<":
        high, high_open = _pattern_number(value), op == "<"
    else:
        low, low_open = _pattern_number(value), op == ">"
        if len(spec) > 2:
            top = next(items)
            if not isinstance(top, str):
                raise InvalidPattern(f"Bad value in numeric range: {_text(top)}")
            if top not in ("<", "<="):
                raise InvalidPattern(f"Bad numeric range operator: {top}")
            high = next(items, None)
            if not _is_num(high):
                raise InvalidPattern(f"Value of {top} must be numeric")
            high, high_open = _pattern_number(high), top == "<"
            if len(spec) > 4:
                raise InvalidPattern("Too many terms in numeric range expression")
    if len(spec) > 2 and op[0] != ">":
        raise InvalidPattern("Too many elements in numeric expression")
    if op != "=" and low >= high:
        raise InvalidPattern("Bottom must be less than top")

    def test(v: Any) -> bool:
        if not _is_num(v) or not _comparable(v):
            return False
        return (low < v if low_open else low <= v) and (v < high if high_open else v <= high)
    return test


def _expression(expr: dict, wildcards: list[list[str]]) -> Test | object:
    """One `{operator: value}` object in a leaf list."""
    if not expr:
        raise InvalidPattern("Match expression name not found")
    name = next(iter(expr))
    spec, one_key = expr[name], "Only one key allowed in match expression"
    if name in ("numeric", "anything-but"):
        test = _numeric(spec) if name == "numeric" else _anything_but(spec, wildcards)
        one_key = "Too many elements in numeric expression"
    elif name == "exists":
        if not isinstance(spec, bool):
            raise InvalidPattern("exists match pattern must be either true or false.")
        test = (lambda v: True) if spec else _ABSENT
    elif name in ("prefix", "suffix") and isinstance(spec, dict):
        op = next(iter(spec), None)
        if op is None:
            raise InvalidPattern(f"{name.capitalize()} expression name not found")
        if op != "equals-ignore-case":
            raise InvalidPattern(f"Unsupported {name} pattern: {op}")
        if not isinstance(spec[op], str):
            raise InvalidPattern("equals-ignore-case match pattern must be a string")
        if len(spec) > 1:
            raise InvalidPattern(one_key)
        test = _ignore_case(name, spec[op])
    elif name in _STRING_TESTS:
        if not isinstance(spec, str):
            noun = {"cidr": "prefix", "exactly": "exact"}.get(name, name)
            raise InvalidPattern(f"{noun} match pattern must be a string")
        test = _STRING_TESTS[name](spec)
        if name == "wildcard":
            wildcards.append([spec])
    else:
        raise InvalidPattern(f"Unrecognized match type {name}")
    if len(expr) > 1:
        raise InvalidPattern(one_key)
    return test


def _leaf(values: list, wildcards: list[list[str]]) -> tuple[Test | None, bool]:
    """A leaf list: the OR of its value matchers, and whether absence satisfies it too."""
    strings, numbers, ips, consts, tests, absent = set(), set(), set(), [], [], False
    for v in values:
        if isinstance(v, dict):
            test = _expression(v, wildcards)
            absent |= test is _ABSENT
            tests += [] if test is _ABSENT else [test]
        elif isinstance(v, str):
            strings.add(v)
            if (ip := _ip(v)) is not None:      # event-ruler compares IP literals as IPs
                ips.add(ip)
        elif _is_num(v):
            numbers.add(v)                      # 300 matches 300.0: compared as numbers
        elif v is None or isinstance(v, bool):
            consts.append(v)
        else:
            raise InvalidPattern("Match value must be String, number, true, false, or null")
    if not values:
        raise InvalidPattern("Empty arrays are not allowed")
    if strings or numbers or consts:
        def exact(v: Any) -> bool:
            if type(v) is str:
                return v in strings or (bool(ips) and _ip(v) in ips)
            return v in numbers if _is_num(v) else any(v is c for c in consts)
        tests.insert(0, exact)
    if len(tests) > 1:
        return (lambda v: any(t(v) for t in tests)), absent
    return (tests[0] if tests else None), absent


Branch = dict[tuple[str, ...], tuple[Test | None, bool]]


class _Compiler:
    """Walks a pattern into branches (path -> leaf); `$or` forks the branches so far."""

    def __init__(self, or_operator: bool) -> None:
        self.or_operator = or_operator
        self.wildcards: dict[tuple[str, ...], list[list[str]]] = {}

    def object(self, obj: dict, prefix: str, branches: list[Branch], in_or: bool) -> list[Branch]:
        if not obj:
            raise InvalidPattern("Empty objects are not allowed")
        for key, value in obj.items():
            if key == "$or" and self.or_operator:
                branches = self.alternatives(value, prefix, branches)
                continue
            if in_or and key in _RESERVED_IN_OR:
                raise _OrShape(f"{key} is Ruler reserved fieldName which cannot be used inside "
                               "$or.")
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                branches = self.object(value, path, branches, in_or)
            elif isinstance(value, list):
                field = tuple(path.split("."))
                leaf = _leaf(value, self.wildcards.setdefault(field, []))
                branches = branches or [{}]
                for branch in branches:
                    branch[field] = leaf        # a repeated path overrides, as in event-ruler
            else:
                raise InvalidPattern(f'"{key}" must be an object or an array')
        return branches

    def alternatives(self, value: Any, prefix: str, branches: list[Branch]) -> list[Branch]:
        if not isinstance(value, list):
            raise _OrShape("It must be an Array followed with $or.")
        out: list[Branch] = []
        for alternative in value:
            if not isinstance(alternative, dict):
                raise _OrShape("Only JSON object is allowed in array of $or relationship.")
            out += self.object(alternative, prefix, [dict(b) for b in branches] or [{}], True)
            if len(out) > _MAX_BRANCHES:
                raise InvalidPattern(f"Rule is too complex - over {_MAX_BRANCHES} $or combinations")
        if len(value) < 2:
            raise _OrShape("There must have at least 2 Objects in $or relationship.")
        return out


# -- matching -------------------------------------------------------------------------------

class _Group:
    """One branch's fields at and below one path; `test` is the field at the path itself."""

    __slots__ = ("atoms", "test", "absent", "kids", "has_test")

    def __init__(self, atoms: list[tuple[tuple[str, ...], Test | None]]) -> None:
        self.atoms, self.test, self.absent = atoms, None, False
        below: dict[str, list] = {}
        for rel, test in atoms:
            if rel:
                below.setdefault(rel[0], []).append((rel[1:], test))
            elif test is None:
                self.absent = True
            else:
                self.test = test
        self.kids = tuple((k, _Group(v)) for k, v in below.items())
        self.has_test = any(t is not None for _, t in atoms)


class _Node:
    """The part of an event at one path: its leaves, members, and arrays holding objects."""

    __slots__ = ("values", "kids", "arrays")

    def __init__(self) -> None:
        self.values, self.kids, self.arrays = [], {}, []


def _has_object(items: list) -> bool:
    return any(isinstance(x, dict) or (isinstance(x, list) and _has_object(x)) for x in items)


def _add(node: _Node, value: Any, trie: dict) -> None:
    """Put `value` into the event tree, visiting only keys that lie on a pattern path."""
    if isinstance(value, dict):
        for key, sub in value.items():
            parts, t = (key.split(".") if "." in key else (key,)), trie
            for part in parts:
                if (t := t.get(part)) is None:
                    break
            else:
                n = node
                for part in parts:
                    n = n.kids.get(part) or n.kids.setdefault(part, _Node())
                _add(n, sub, t)
    elif not isinstance(value, list):
        node.values.append(value)
    elif _has_object(value):
        node.arrays.append([_Node() for _ in value])
        for elem, item in zip(node.arrays[-1], value):
            _add(elem, item, trie)
    else:       # leaves alone bind no other field to their element: no index to keep
        for item in value:
            _add(node, item, trie)


def _direct(node: _Node, g: _Group) -> bool:
    if g.test is not None and not any(map(g.test, node.values)):
        return False
    if g.absent and node.values:
        return False
    for part, sub in g.kids:
        kid = node.kids.get(part)
        if (kid is None and sub.has_test) or (kid is not None and not _sat(kid, sub)):
            return False
    return True


def _in_array(elems: list[_Node], g: _Group) -> bool:
    # the fields inside one array share an element; with only absences, none may have them
    if g.has_test:
        return any(_sat(e, g) for e in elems)
    return all(_sat(e, g) for e in elems)


def _sat(node: _Node, g: _Group) -> bool:
    if not node.arrays:
        return _direct(node, g)
    if len(node.arrays) == 1 and not node.values and not node.kids:
        return _in_array(node.arrays[0], g)
    return _mixed(node, g)


def _mixed(node: _Node, g: _Group) -> bool:
    """A path holding an array beside other content, which only clashing keys produce
    (`{"a": [..], "a.b": ..}`): choose where each field is met, in at most _MAX_ASSIGNMENTS
    ways (past that the event does not match); absences must hold everywhere."""
    absent = [a for a in g.atoms if a[1] is None]
    wanted = [a for a in g.atoms if a[1] is not None]
    sources = range(len(node.arrays) + 1)           # 0: the content outside arrays

    def holds(src: int, atoms: list) -> bool:
        group = _Group(atoms + absent)
        return _direct(node, group) if src == 0 else _in_array(node.arrays[src - 1], group)
    options = [[s for s in sources if holds(s, [a])] for a in wanted]
    for n, choice in enumerate(product(*options)):
        if n == _MAX_ASSIGNMENTS:
            return False
        if all(holds(s, [a for a, c in zip(wanted, choice) if c == s]) for s in sources):
            return True
    return False


class Pattern:
    """A compiled event pattern: immutable, reusable, safe to share between threads."""

    __slots__ = ("source", "_branches", "_trie")

    def __init__(self, source: dict, branches: list[_Group], trie: dict) -> None:
        self.source, self._branches, self._trie = source, branches, trie

    def matches(self, event: dict) -> bool:
        """Whether `event` (a JSON object, as a dict) matches this pattern."""
        if not isinstance(event, dict):
            raise TypeError(f"an event is a JSON object (dict), not {type(event).__name__}")
        root = _Node()
        _add(root, event, self._trie)
        return any(_sat(root, g) for g in self._branches)

    def __repr__(self) -> str:
        return f"Pattern({json.dumps(self.source)})"


def _no_constants(name: str) -> Any:
    raise InvalidPattern(f"Unrecognized token '{name}'")


def compile_pattern(pattern: dict | str) -> Pattern:
    """Validate an EventBridge event pattern (a dict or its JSON text) and compile it.

    Raises InvalidPattern with AWS's reason when EventBridge would reject the pattern."""
    if isinstance(pattern, (str, bytes)):
        try:
            pattern = json.loads(pattern, parse_constant=_no_constants)
        except json.JSONDecodeError as exc:
            raise InvalidPattern(str(exc)) from None
    if not isinstance(pattern, dict):
        raise InvalidPattern("Filter is not an object")
    try:
        compiler = _Compiler(or_operator=True)
        branches = compiler.object(pattern, "", [], False)
    except _OrShape:            # as event-ruler does: retry with `$or` as a plain field name
        compiler = _Compiler(or_operator=False)
        branches = compiler.object(pattern, "", [], False)
    for terms in compiler.wildcards.values():
        if terms and _too_complex(list({tuple(t): t for t in terms}.values())):
            raise InvalidPattern(_TOO_COMPLEX)
    groups: list[_Group] = []
    trie: dict = {}
    for branch in branches:
        # a leaf such as [{"prefix": "a"}, {"exists": false}] is two alternatives
        forks = [[(f, t)] if not absent else [(f, None)] if t is None else [(f, t), (f, None)]
                 for f, (t, absent) in branch.items()]
        for atoms in product(*forks):
            groups.append(_Group(list(atoms)))
            if len(groups) > _MAX_BRANCHES:
                raise InvalidPattern(f"Rule is too complex - over {_MAX_BRANCHES} combinations")
        for field in branch:
            t = trie
            for part in field:
                t = t.setdefault(part, {})
    return Pattern(pattern, groups, trie)
