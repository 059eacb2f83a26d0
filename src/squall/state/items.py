"""Table semantics above the store: keys, conditions, updates and write plans.

Pure functions, no I/O. A backend only locks a row, runs a plan from here on it, and
persists what the plan returns (see squall.backends.state): so conditional writes,
versions, atomic counters, TTL and the change records they produce behave the same on
every backend.

Conditions are plain data (they cross the worker -> supervisor hop as JSON):

    {"status": "pending"}                         equality
    {"stock": {">=": 1}, "owner": {"exists": True}}
    {"sku": {"begins_with": "A-"}, "n": {"between": [1, 9]}, "tier": {"in": ["a", "b"]}}

All entries must hold. Attribute names may be dotted paths into maps ("address.city").
Operators: = != < <= > >= exists begins_with contains in between.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..backends.state import (ConditionFailed, FeedEntry, InvalidItem, InvalidKey,
                              InvalidRequest, Planned, SortKey, StoredItem, shard_of)
from .spec import TableConfig

MAX_ITEM_BYTES = 400 * 1024  # DynamoDB's item limit
MAX_PK_BYTES = 2048
MAX_SK_BYTES = 1024
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}

_MISSING = object()
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "exists", "begins_with", "contains", "in",
             "between")

# -- keys --------------------------------------------------------------------------------


def _check_key_value(spec: TableConfig, attr: str, value: Any, limit: int) -> None:
    where = f"table {spec.name!r}: key attribute {attr!r}"
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidKey(f"{where} must be a string or a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidKey(f"{where} must be a finite number, got {value!r}")
    if isinstance(value, str):
        if not value:
            raise InvalidKey(f"{where} must not be an empty string")
        if len(value.encode("utf-8", "surrogatepass")) > limit:
            raise InvalidKey(f"{where} is over {limit} bytes")


def encode_pk(spec: TableConfig, value: Any) -> str:
    """The partition key as canonical text: 1 and "1" are different keys."""
    _check_key_value(spec, spec.key, value, MAX_PK_BYTES)
    return json.dumps(value, ensure_ascii=False)


def decode_pk(pk: str) -> Any:
    return json.loads(pk)


def key_of(spec: TableConfig, key: Any) -> tuple[str, SortKey, dict[str, Any]]:
    """(pk text, sort key, key attributes) from what the user passed as a key: the
    partition key value (tables without a sort key), a (partition, sort) tuple, or a dict
    holding the key attributes (an item works too)."""
    if isinstance(key, dict):
        if spec.key not in key:
            raise InvalidKey(f"table {spec.name!r}: the key needs attribute {spec.key!r}; "
                             f"got {sorted(key)!r}")
        pk_value = key[spec.key]
        sk_value = key.get(spec.sort_key, _MISSING) if spec.sort_key else None
        if sk_value is _MISSING:
            raise InvalidKey(f"table {spec.name!r}: the key needs sort key attribute "
                             f"{spec.sort_key!r}")
    elif isinstance(key, tuple) and len(key) == 2 and spec.sort_key:
        pk_value, sk_value = key
    elif spec.sort_key:
        raise InvalidKey(f"table {spec.name!r} has a sort key ({spec.sort_key!r}): pass the "
                         f"key as a dict or a (partition, sort) tuple, got {key!r}")
    else:
        pk_value, sk_value = key, None
    pk = encode_pk(spec, pk_value)
    keys = {spec.key: pk_value}
    if spec.sort_key:
        _check_key_value(spec, spec.sort_key, sk_value, MAX_SK_BYTES)
        keys[spec.sort_key] = sk_value
    return pk, sk_value, keys


def describe_key(keys: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in keys.items())


# -- items -------------------------------------------------------------------------------


def check_item(spec: TableConfig, item: Any) -> str:
    """Validate an item; returns its JSON text (to measure it once)."""
    if not isinstance(item, dict):
        raise InvalidItem(f"table {spec.name!r}: an item must be a dict, got "
                          f"{type(item).__name__}")
    try:
        text = json.dumps(item, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidItem(f"table {spec.name!r}: the item is not JSON-serialisable: "
                          f"{exc}") from None
    if any(not isinstance(k, str) for k in item):
        raise InvalidItem(f"table {spec.name!r}: attribute names must be strings")
    size = len(text.encode())
    if size > MAX_ITEM_BYTES:
        raise InvalidItem(f"table {spec.name!r}: the item is {size} bytes, over the "
                          f"{MAX_ITEM_BYTES}-byte limit")
    return text


def expires_at(spec: TableConfig, item: dict[str, Any]) -> float | None:
    """The TTL attribute's value as an epoch time (DynamoDB: a number of seconds);
    anything else means the item does not expire."""
    if not spec.ttl_attribute:
        return None
    v = item.get(spec.ttl_attribute)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def live(current: StoredItem | None, now: float) -> StoredItem | None:
    """The item as readers see it: an expired one is gone even before the sweeper runs."""
    if current is None or (current.expires_at is not None and current.expires_at <= now):
        return None
    return current


# -- conditions --------------------------------------------------------------------------


def _path(item: dict[str, Any] | None, attr: str) -> Any:
    value: Any = item if item is not None else _MISSING
    for part in attr.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _is_ops(spec: Any) -> bool:
    return isinstance(spec, dict) and bool(spec) and all(k in OPERATORS for k in spec)


def _compare(op: str, a: Any, b: Any) -> bool:
    if a is _MISSING:
        return False
    try:
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        return a >= b
    except TypeError:
        return False


def _holds(value: Any, op: str, arg: Any) -> bool:
    if op == "=":
        if value is _MISSING:
            return False
        if isinstance(value, bool) or isinstance(arg, bool):  # True is not 1 here
            return isinstance(value, bool) and isinstance(arg, bool) and value == arg
        return value == arg
    if op == "!=":
        return not _holds(value, "=", arg)
    if op in ("<", "<=", ">", ">="):
        if isinstance(value, bool) or isinstance(arg, bool):
            return False
        if isinstance(value, (int, float)) != isinstance(arg, (int, float)):
            return False
        return _compare(op, value, arg)
    if op == "exists":
        return (value is not _MISSING) == bool(arg)
    if op == "begins_with":
        return isinstance(value, str) and value.startswith(arg)
    if op == "contains":
        if isinstance(value, str):
            return isinstance(arg, str) and arg in value
        return isinstance(value, list) and arg in value
    if op == "in":
        return value is not _MISSING and any(_holds(value, "=", a) for a in arg)
    lo, hi = arg  # between
    return _holds(value, ">=", lo) and _holds(value, "<=", hi)


def validate_condition(cond: Any, what: str = "condition") -> None:
    if cond is None:
        return
    if not isinstance(cond, dict):
        raise InvalidRequest(f"a {what} must be a dict of attribute -> value or "
                             f"{{operator: value}}, got {cond!r}")
    for attr, spec in cond.items():
        if not isinstance(attr, str) or not attr:
            raise InvalidRequest(f"{what}: attribute names must be non-empty strings")
        if not _is_ops(spec):
            continue
        for op, arg in spec.items():
            if op == "between" and not (isinstance(arg, (list, tuple)) and len(arg) == 2):
                raise InvalidRequest(f"{what}: {attr!r} between needs [low, high]")
            if op == "in" and not isinstance(arg, (list, tuple)):
                raise InvalidRequest(f"{what}: {attr!r} in needs a list")
            if op == "begins_with" and not isinstance(arg, str):
                raise InvalidRequest(f"{what}: {attr!r} begins_with needs a string")


def matches(cond: dict[str, Any] | None, item: dict[str, Any] | None) -> bool:
    """Does `item` (None: no item) satisfy every entry of `cond`?"""
    if not cond:
        return True
    for attr, spec in cond.items():
        value = _path(item, attr)
        ops = spec.items() if _is_ops(spec) else (("=", spec),)
        if not all(_holds(value, op, arg) for op, arg in ops):
            return False
    return True


# -- updates -----------------------------------------------------------------------------


def _set_path(item: dict[str, Any], attr: str, value: Any, table: str) -> None:
    parts = attr.split(".")
    target = item
    for part in parts[:-1]:
        nxt = target.get(part)
        if nxt is None:
            nxt = target[part] = {}
        if not isinstance(nxt, dict):
            raise InvalidItem(f"table {table!r}: cannot set {attr!r}: {part!r} is not a map")
        target = nxt
    target[parts[-1]] = value


def _del_path(item: dict[str, Any], attr: str) -> None:
    parts = attr.split(".")
    target: Any = item
    for part in parts[:-1]:
        target = target.get(part) if isinstance(target, dict) else None
    if isinstance(target, dict):
        target.pop(parts[-1], None)


def apply_update(spec: TableConfig, base: dict[str, Any], keys: dict[str, Any], *,
                 set: dict[str, Any] | None, remove: list[str] | None,
                 increment: dict[str, Any] | None, append: dict[str, list] | None) -> dict:
    item = json.loads(json.dumps(base))  # a deep copy of plain JSON data
    set_ = set or {}
    key_attrs = {spec.key, spec.sort_key} - {None}
    for attr in list(set_) + list(remove or []) + list(increment or {}) + list(append or {}):
        if attr.split(".")[0] in key_attrs:
            raise InvalidItem(f"table {spec.name!r}: an update cannot change key attribute "
                              f"{attr!r}")
    for attr, value in set_.items():
        _set_path(item, attr, value, spec.name)
    for attr in remove or []:
        _del_path(item, attr)
    for attr, by in (increment or {}).items():
        if isinstance(by, bool) or not isinstance(by, (int, float)):
            raise InvalidItem(f"table {spec.name!r}: increment of {attr!r} must be a number, "
                              f"got {by!r}")
        now = _path(item, attr)
        if now is _MISSING:
            now = 0
        if isinstance(now, bool) or not isinstance(now, (int, float)):
            raise InvalidItem(f"table {spec.name!r}: cannot increment {attr!r} of "
                              f"{describe_key(keys)}: it holds {now!r}, not a number")
        _set_path(item, attr, now + by, spec.name)
    for attr, values in (append or {}).items():
        now = _path(item, attr)
        if now is _MISSING:
            now = []
        if not isinstance(now, list) or not isinstance(values, list):
            raise InvalidItem(f"table {spec.name!r}: append to {attr!r} needs lists")
        _set_path(item, attr, now + values, spec.name)
    item.update(keys)
    return item


# -- write plans -------------------------------------------------------------------------


def change_entry(spec: TableConfig, pk: str, event: str, keys: dict[str, Any],
                 old: dict[str, Any] | None, new: dict[str, Any] | None, version: int,
                 user_identity: dict[str, str] | None = None) -> FeedEntry:
    body = {"keys": keys, "old": old, "new": new, "version": version}
    if user_identity:
        body["user_identity"] = user_identity
    return FeedEntry(shard_of(pk, spec.shards), pk, event,
                     json.dumps(body, ensure_ascii=False, separators=(",", ":")))


def _guard(spec: TableConfig, keys: dict[str, Any], current: StoredItem | None,
           condition: dict[str, Any] | None, expected_version: int | None) -> None:
    if expected_version is not None:
        have = current.version if current is not None else 0
        if have != expected_version:
            state = f"version {have}" if current is not None else "no item"
            raise ConditionFailed(f"table {spec.name!r}: item {describe_key(keys)}: expected "
                                  f"version {expected_version}, found {state}")
    if condition and not matches(condition, current.data if current else None):
        raise ConditionFailed(f"table {spec.name!r}: item {describe_key(keys)}: the "
                              f"condition {condition!r} does not hold")


def _expired_removal(spec: TableConfig, pk: str, keys: dict[str, Any],
                     stored: StoredItem | None, now: float) -> tuple[FeedEntry, ...]:
    """An expired row replaced or deleted before the sweeper got to it still leaves the
    TTL removal in the change stream."""
    if stored is not None and live(stored, now) is None:
        return (change_entry(spec, pk, "remove", keys, stored.data, None, stored.version,
                             TTL_IDENTITY),)
    return ()


def _check_expected(expected_version: Any) -> None:
    if expected_version is not None and (
            isinstance(expected_version, bool) or not isinstance(expected_version, int)
            or expected_version < 0):
        raise InvalidRequest(f"expected_version must be a whole number >= 0 (0: the item "
                             f"must not exist), got {expected_version!r}")


def plan_put(spec: TableConfig, item: dict[str, Any], *, now: float,
             condition: dict[str, Any] | None = None, expected_version: int | None = None):
    check_item(spec, item)
    validate_condition(condition)
    _check_expected(expected_version)
    pk, sk, keys = key_of(spec, item)
    data = json.loads(json.dumps(item))

    def plan(stored: StoredItem | None) -> Planned:
        current = live(stored, now)
        _guard(spec, keys, current, condition, expected_version)
        version = (current.version if current else 0) + 1
        if stored is not None and current is None:  # replaces an expired row
            version = stored.version + 1
        new = StoredItem(data, version, expires_at(spec, data))
        event = "modify" if current is not None else "insert"
        changes = _expired_removal(spec, pk, keys, stored, now) + (change_entry(
            spec, pk, event, keys, current.data if current else None, data, version),)
        return Planned(new, changes)

    return pk, sk, plan


def plan_update(spec: TableConfig, key: Any, *, now: float, set: dict | None = None,
                remove: list | None = None, increment: dict | None = None,
                append: dict | None = None, condition: dict | None = None,
                expected_version: int | None = None):
    pk, sk, keys = key_of(spec, key)
    validate_condition(condition)
    _check_expected(expected_version)
    for name, value, kind in (("set", set, dict), ("remove", remove, list),
                              ("increment", increment, dict), ("append", append, dict)):
        if value is not None and not isinstance(value, kind):
            raise InvalidRequest(f"table {spec.name!r}: update {name}= must be a "
                                 f"{kind.__name__}")
    if not (set or remove or increment or append):
        raise InvalidRequest(f"table {spec.name!r}: an update needs set=, remove=, "
                             "increment= or append=")

    def plan(stored: StoredItem | None) -> Planned:
        current = live(stored, now)
        _guard(spec, keys, current, condition, expected_version)
        base = current.data if current else {}
        data = apply_update(spec, base, keys, set=set, remove=remove, increment=increment,
                            append=append)
        check_item(spec, data)
        version = (stored.version if stored else 0) + 1
        new = StoredItem(data, version, expires_at(spec, data))
        event = "modify" if current is not None else "insert"
        changes = _expired_removal(spec, pk, keys, stored, now) + (change_entry(
            spec, pk, event, keys, current.data if current else None, data, version),)
        return Planned(new, changes)

    return pk, sk, plan


def plan_delete(spec: TableConfig, key: Any, *, now: float, condition: dict | None = None,
                expected_version: int | None = None):
    pk, sk, keys = key_of(spec, key)
    validate_condition(condition)
    _check_expected(expected_version)

    def plan(stored: StoredItem | None) -> Planned:
        current = live(stored, now)
        _guard(spec, keys, current, condition, expected_version)
        if current is None:
            expired = _expired_removal(spec, pk, keys, stored, now)
            return Planned(None, expired, write=bool(expired))
        return Planned(None, (change_entry(spec, pk, "remove", keys, current.data, None,
                                           current.version),))

    return pk, sk, plan


def plan_expire(spec: TableConfig, pk: str, sk: SortKey, *, now: float):
    """The TTL sweeper's delete: only if the item is still expired at that moment."""

    def plan(stored: StoredItem | None) -> Planned:
        if stored is None or live(stored, now) is not None:
            return Planned(stored, (), write=False)
        keys = {spec.key: stored.data.get(spec.key)}
        if spec.sort_key:
            keys[spec.sort_key] = stored.data.get(spec.sort_key)
        return Planned(None, (change_entry(spec, pk, "remove", keys, stored.data, None,
                                           stored.version, TTL_IDENTITY),))

    return plan
