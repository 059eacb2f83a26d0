"""Intrinsic functions: `States.Format('Hi {}', $.name)` and the rest, as AWS runs them.

`parse` turns the text into a small call tree (checked at declaration time: unknown
function, bad syntax); `evaluate` runs it against the state input and the context object.
Argument checks follow AWS's documented constraints (types, ranges, the 1000-item
ArrayRange and 10000-character Hash/Base64 limits, shallow-only JsonMerge); a violation is
States.IntrinsicFailure, a missing path is States.Runtime (raised by the resolver).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import uuid
from math import floor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from . import paths
from .errors import INTRINSIC_FAILURE, StatesError

__all__ = ["IntrinsicSyntaxError", "Call", "parse", "evaluate", "FUNCTIONS", "is_intrinsic"]


class IntrinsicSyntaxError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Any, ...]  # ("lit", v) | ("path", str) | ("ctx", str) | ("var", str) | Call


_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")


def is_intrinsic(text: Any) -> bool:
    return isinstance(text, str) and text.startswith("States.")


@lru_cache(maxsize=2048)
def parse(text: str) -> Call:
    pos, call = _call(text, 0)
    if text[pos:].strip():
        raise IntrinsicSyntaxError(f"{text!r}: unexpected text after the call: {text[pos:]!r}")
    return call


# literal argument types each function accepts, by position ("n" number, "s" string,
# "b" boolean, "*" anything); a path or a nested call is checked at run time
_ARITY: dict[str, tuple[int, int | None, str]] = {
    "States.Format": (1, None, "s"), "States.StringToJson": (1, 1, "s"),
    "States.JsonToString": (1, 1, "*"), "States.Array": (0, None, ""),
    "States.ArrayPartition": (2, 2, "*n"), "States.ArrayContains": (2, 2, "**"),
    "States.ArrayRange": (3, 3, "nnn"), "States.ArrayGetItem": (2, 2, "*n"),
    "States.ArrayLength": (1, 1, "*"), "States.ArrayUnique": (1, 1, "*"),
    "States.Base64Encode": (1, 1, "s"), "States.Base64Decode": (1, 1, "s"),
    "States.Hash": (2, 2, "*s"), "States.JsonMerge": (3, 3, "**b"),
    "States.MathRandom": (2, 3, "nnn"), "States.MathAdd": (2, 2, "nn"),
    "States.StringSplit": (2, 2, "ss"), "States.UUID": (0, 0, ""),
}
_LIT_OK = {"n": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
           "s": lambda v: isinstance(v, str), "b": lambda v: isinstance(v, bool),
           "*": lambda v: True}


def _check_static(text: str, call: Call) -> None:
    lo, hi, kinds = _ARITY[call.name]
    n = len(call.args)
    if n < lo or (hi is not None and n > hi):
        want = f"{lo}" if lo == hi else f"{lo} to {hi if hi is not None else 'any'}"
        raise IntrinsicSyntaxError(f"{text!r}: {call.name} takes {want} arguments, got {n}")
    for i, a in enumerate(call.args):
        if i < len(kinds) and not isinstance(a, Call) and a[0] == "lit" \
                and not _LIT_OK[kinds[i]](a[1]):
            raise IntrinsicSyntaxError(f"{text!r}: argument {i + 1} of {call.name} cannot be "
                                       f"{json.dumps(a[1])}")


def _call(text: str, i: int) -> tuple[int, Call]:
    m = re.compile(r"States\.([A-Za-z0-9]+)\(").match(text, i)
    if not m:
        raise IntrinsicSyntaxError(f"{text!r}: expected States.Name( at position {i}")
    name = "States." + m.group(1)
    if name not in FUNCTIONS:
        raise IntrinsicSyntaxError(f"{text!r}: unknown intrinsic function {name}")
    i = m.end()
    args: list[Any] = []
    i = _ws(text, i)
    if text.startswith(")", i):
        return i + 1, Call(name, ())
    while True:
        i = _ws(text, i)
        i, arg = _arg(text, i)
        args.append(arg)
        i = _ws(text, i)
        if text.startswith(",", i):
            i += 1
            continue
        if text.startswith(")", i):
            call = Call(name, tuple(args))
            _check_static(text, call)
            return i + 1, call
        raise IntrinsicSyntaxError(f"{text!r}: expected ',' or ')' at position {i}")


def _ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\n\r":
        i += 1
    return i


def _arg(text: str, i: int) -> tuple[int, Any]:
    if i >= len(text):
        raise IntrinsicSyntaxError(f"{text!r}: missing argument")
    c = text[i]
    if c == "'":
        out, j = [], i + 1
        while j < len(text):
            ch = text[j]
            if ch == "\\" and j + 1 < len(text):
                out.append(text[j:j + 2])  # keep escapes: States.Format reads \{ \}
                j += 2
                continue
            if ch == "'":
                return j + 1, ("lit", _unescape("".join(out)), "".join(out))
            out.append(ch)
            j += 1
        raise IntrinsicSyntaxError(f"{text!r}: unterminated string")
    if text.startswith("States.", i):
        return _call(text, i)
    if c == "$":
        j = i
        depth, quote = 0, None
        while j < len(text):
            ch = text[j]
            if quote:
                if ch == quote:
                    quote = None
            elif ch in "'\"" and depth:
                quote = ch
            elif ch in "[(":
                depth += 1
            elif ch in "])":
                if depth == 0:
                    break
                depth -= 1
            elif ch in ", " and depth == 0:
                break
            j += 1
        ref = text[i:j]
        if ref.startswith("$$"):
            paths.parse_path(ref[1:])
            return j, ("ctx", ref[1:])
        if ref == "$" or ref[1:2] in (".", "["):
            try:
                paths.parse_path(ref)
            except paths.PathError as exc:
                raise IntrinsicSyntaxError(str(exc)) from None
            return j, ("path", ref)
        return j, ("var", ref[1:])
    m = _NUMBER.match(text, i)
    if m:
        return m.end(), ("lit", json.loads(m.group()))
    for word, value in (("true", True), ("false", False), ("null", None)):
        if text.startswith(word, i):
            return i + len(word), ("lit", value)
    raise IntrinsicSyntaxError(f"{text!r}: cannot read an argument at position {i}")


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s)


Resolver = Callable[[str, str], Any]  # (kind: path|ctx|var, text) -> value


def evaluate(text_or_call: str | Call, resolve: Resolver, *, rng: random.Random | None = None
             ) -> Any:
    call = parse(text_or_call) if isinstance(text_or_call, str) else text_or_call
    return _eval(call, resolve, rng or random.Random())


def _eval(call: Call, resolve: Resolver, rng: random.Random) -> Any:
    args: list[Any] = []
    raw: list[str | None] = []
    for a in call.args:
        if isinstance(a, Call):
            args.append(_eval(a, resolve, rng))
            raw.append(None)
        elif a[0] == "lit":
            args.append(a[1])
            raw.append(a[2] if len(a) > 2 else None)
        else:
            args.append(resolve(a[0], a[1]))
            raw.append(None)
    fn = FUNCTIONS[call.name]
    if call.name == "States.Format":
        return _format(call.name, args, raw)
    if call.name == "States.MathRandom":
        return fn(call.name, args, rng)
    return fn(call.name, args)


def _fail(name: str, msg: str) -> StatesError:
    return StatesError(INTRINSIC_FAILURE, f"The {name} intrinsic function {msg}")


def _nargs(name: str, args: list[Any], lo: int, hi: int | None = None) -> None:
    hi = lo if hi is None else hi
    if not lo <= len(args) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        raise StatesError(INTRINSIC_FAILURE,
                          f"Invalid number of arguments in {name}: expected {want}, "
                          f"got {len(args)}")


def _is_int(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (
        isinstance(v, float) and v.is_integer())


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _json(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _format(name: str, args: list[Any], raw: list[str | None]) -> str:
    if not args or not isinstance(args[0], str):
        raise _fail(name, "needs a string template as its first argument")
    template = raw[0] if raw[0] is not None else args[0].replace("\\", "\\\\")
    values = args[1:]
    out, i, k = [], 0, 0
    while i < len(template):
        ch = template[i]
        if ch == "\\" and i + 1 < len(template):
            out.append(template[i + 1])
            i += 2
        elif template.startswith("{}", i):
            if k >= len(values):
                raise _fail(name, "has more placeholders than arguments")
            v = values[k]
            out.append(_java(v))
            k += 1
            i += 2
        else:
            out.append(ch)
            i += 1
    if k != len(values):
        raise _fail(name, f"has {k} placeholders but {len(values)} arguments")
    return "".join(out)


def _java(v: Any) -> str:
    """How AWS (Java) renders a value inside States.Format: {a=1, b=[x, y]}."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={_java(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_java(x) for x in v) + "]"
    return _json(v)


def _string_to_json(name: str, args: list[Any]) -> Any:
    _nargs(name, args, 1)
    if not isinstance(args[0], str):
        raise _fail(name, "needs a string")
    if not args[0].strip():
        return None
    try:
        return json.loads(args[0])
    except ValueError:
        raise _fail(name, f"could not parse {args[0]!r} as JSON") from None


def _json_to_string(name: str, args: list[Any]) -> str:
    _nargs(name, args, 1)
    return _json(args[0])


def _array(name: str, args: list[Any]) -> list[Any]:
    return list(args)


def _array_partition(name: str, args: list[Any]) -> list[Any]:
    _nargs(name, args, 2)
    arr, size = args
    if not isinstance(arr, list):
        raise _fail(name, "needs an array as its first argument")
    if not _is_int(size) or size <= 0:
        raise _fail(name, "needs a positive integer chunk size")
    size = int(size)
    return [arr[i:i + size] for i in range(0, len(arr), size)]


def _array_contains(name: str, args: list[Any]) -> bool:
    _nargs(name, args, 2)
    if not isinstance(args[0], list):
        raise _fail(name, "needs an array as its first argument")
    return any(_same(x, args[1]) for x in args[0])


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _array_range(name: str, args: list[Any]) -> list[Any]:
    _nargs(name, args, 3)
    if not all(_is_int(a) for a in args):
        raise _fail(name, "needs integer start, end and step")
    start, end, step = (int(a) for a in args)
    if step == 0:
        raise _fail(name, "needs a non-zero step")
    out = list(range(start, end + (1 if step > 0 else -1), step))
    if len(out) > 1000:
        raise _fail(name, "would produce more than 1000 items")
    return out


def _array_get_item(name: str, args: list[Any]) -> Any:
    _nargs(name, args, 2)
    arr, idx = args
    if not isinstance(arr, list):
        raise _fail(name, "needs an array as its first argument")
    if not _is_int(idx) or idx < 0:
        raise _fail(name, "needs a non-negative integer index")
    if int(idx) >= len(arr):
        raise _fail(name, f"index {int(idx)} is out of bounds (length {len(arr)})")
    return arr[int(idx)]


def _array_length(name: str, args: list[Any]) -> int:
    _nargs(name, args, 1)
    if not isinstance(args[0], list):
        raise _fail(name, "needs an array")
    return len(args[0])


def _array_unique(name: str, args: list[Any]) -> list[Any]:
    _nargs(name, args, 1)
    if not isinstance(args[0], list):
        raise _fail(name, "needs an array")
    out: list[Any] = []
    for x in args[0]:
        if not any(_same(x, y) and type(x) is type(y) for y in out):
            out.append(x)
    return out


def _b64encode(name: str, args: list[Any]) -> str:
    _nargs(name, args, 1)
    if not isinstance(args[0], str):
        raise _fail(name, "needs a string")
    if len(args[0]) > 10000:
        raise _fail(name, "input exceeds 10000 characters")
    return base64.b64encode(args[0].encode()).decode()


def _b64decode(name: str, args: list[Any]) -> str:
    _nargs(name, args, 1)
    if not isinstance(args[0], str):
        raise _fail(name, "needs a string")
    if len(args[0]) > 10000:
        raise _fail(name, "input exceeds 10000 characters")
    try:
        return base64.b64decode(args[0], validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise _fail(name, f"could not decode {args[0]!r} as base64") from None


_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384",
           "SHA-512": "sha512"}


def _hash(name: str, args: list[Any]) -> str:
    _nargs(name, args, 2)
    data, algo = args
    if data is None:
        raise _fail(name, "needs non-null data")
    if algo not in _HASHES:
        raise _fail(name, f"does not support algorithm {algo!r}: use one of "
                          f"{', '.join(_HASHES)}")
    text = data if isinstance(data, str) else _json(data)
    if len(text) > 10000:
        raise _fail(name, "input exceeds 10000 characters")
    return hashlib.new(_HASHES[algo], text.encode()).hexdigest()


def _json_merge(name: str, args: list[Any]) -> dict[str, Any]:
    _nargs(name, args, 3)
    a, b, deep = args
    if not isinstance(a, dict) or not isinstance(b, dict):
        raise _fail(name, "needs two JSON objects")
    if deep is not False:
        raise _fail(name, "supports only shallow merges: the third argument must be false")
    return {**a, **b}


def _math_random(name: str, args: list[Any], rng: random.Random) -> int:
    _nargs(name, args, 2, 3)
    if not all(_is_int(a) for a in args):
        raise _fail(name, "needs integer bounds (and seed)")
    lo, hi = int(args[0]), int(args[1])
    if lo > hi:
        raise _fail(name, "needs start <= end")
    r = random.Random(int(args[2])) if len(args) == 3 else rng
    return r.randint(lo, hi)


def _math_add(name: str, args: list[Any]) -> int:
    _nargs(name, args, 2)
    if not all(_is_num(a) for a in args):
        raise _fail(name, "needs two numbers")
    # AWS rounds each operand as Java's Math.round does: floor(x + 0.5)
    a, b = (int(floor(v + 0.5)) if isinstance(v, float) else v for v in args)
    if not (-2**31 <= a < 2**31 and -2**31 <= b < 2**31):
        raise _fail(name, "needs values between -2147483648 and 2147483647")
    return a + b


def _string_split(name: str, args: list[Any]) -> list[str]:
    _nargs(name, args, 2)
    s, sep = args
    if not isinstance(s, str) or not isinstance(sep, str):
        raise _fail(name, "needs a string and a string of delimiter characters")
    if not sep:
        return [s]
    parts = re.split("[" + re.escape(sep) + "]", s)
    return [p for p in parts if p != ""]


def _uuid(name: str, args: list[Any]) -> str:
    _nargs(name, args, 0)
    return str(uuid.uuid4())


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "States.Format": _format,
    "States.StringToJson": _string_to_json,
    "States.JsonToString": _json_to_string,
    "States.Array": _array,
    "States.ArrayPartition": _array_partition,
    "States.ArrayContains": _array_contains,
    "States.ArrayRange": _array_range,
    "States.ArrayGetItem": _array_get_item,
    "States.ArrayLength": _array_length,
    "States.ArrayUnique": _array_unique,
    "States.Base64Encode": _b64encode,
    "States.Base64Decode": _b64decode,
    "States.Hash": _hash,
    "States.JsonMerge": _json_merge,
    "States.MathRandom": _math_random,
    "States.MathAdd": _math_add,
    "States.StringSplit": _string_split,
    "States.UUID": _uuid,
}
