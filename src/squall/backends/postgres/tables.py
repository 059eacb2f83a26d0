"""The shared store's tables: items by (table, pk, sk), written through plans in one
transaction with their change records. A mixin of PgStateStore.

A write: BEGIN; lock the key (advisory, see state.py); read the row; run the plan in
Python; write or delete the row and append the plan's change records; COMMIT. A plan
that raises rolls the transaction back: nothing is written.

Sort order. The sort key is stored as (sk_type, sk_num, sk_bin): 0 for tables without a
sort key, 1 for a number (exact in `numeric`: a float goes in as its exact decimal value,
so 1 and 1.0 are one key, as in SQLite, and no two floats collide), 2 for a string (its
UTF-8 bytes: bytea compares bytewise, which for UTF-8 is code point order, needs no
collation and takes any character). Ordering by the three columns puts numbers,
numerically, before strings, by code point. Partition keys are canonical JSON text,
compared in the "C" collation (code point order for UTF-8).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Callable

from ..state import Plan, SortKey, SortRange, StoredItem

ITEM_TABLES = (
    """CREATE TABLE IF NOT EXISTS state_items (
        tbl text NOT NULL,
        pk text COLLATE "C" NOT NULL,
        sk_type smallint NOT NULL,
        sk_num numeric NOT NULL,
        sk_bin bytea NOT NULL,
        data text NOT NULL,
        version bigint NOT NULL,
        expires_at double precision,
        PRIMARY KEY (tbl, pk, sk_type, sk_num, sk_bin))""",
    """CREATE INDEX IF NOT EXISTS state_items_expiry ON state_items (tbl, expires_at)
        WHERE expires_at IS NOT NULL""",
)

_NONE, _NUMBER, _STRING = 0, 1, 2
_SK = "sk_type, sk_num, sk_bin"
_KEY = "tbl = %s AND pk = %s AND sk_type = %s AND sk_num = %s AND sk_bin = %s"


def _sk(sk: SortKey) -> tuple[int, Decimal, bytes]:
    """The stored form of a sort key: (type, number, UTF-8 bytes)."""
    if sk is None:
        return _NONE, Decimal(0), b""
    if isinstance(sk, str):
        return _STRING, Decimal(0), sk.encode("utf-8", "surrogatepass")
    return _NUMBER, Decimal(sk), b""  # Decimal(float) is exact


def _sk_value(sk_type: int, num: Decimal, raw: bytes) -> SortKey:
    if sk_type == _NONE:
        return None
    if sk_type == _STRING:
        return bytes(raw).decode("utf-8", "surrogatepass")
    return int(num) if num == num.to_integral_value() else float(num)


def _lock_text(sk: SortKey) -> str:
    """The sort key as it names a row: equal numbers (1, 1.0) give the same text."""
    t, num, raw = _sk(sk)
    if t == _NUMBER:
        return f"n{num.normalize() if num else 0}"
    return f"s{sk}" if t == _STRING else ""


def _item(row: tuple) -> StoredItem:
    data, version, expires_at = row
    return StoredItem(json.loads(data), version, expires_at)


def _bound(op: str, value: SortKey) -> tuple[str, list[Any]]:
    """A sort-key bound, kept to values of its own type (as SQLite's comparison does)."""
    t, num, raw = _sk(value)
    if t == _NUMBER:
        return f"sk_type = {_NUMBER} AND sk_num {op} %s", [num]
    return f"sk_type = {_STRING} AND sk_bin {op} %s", [raw]


class TableOps:
    db: Any
    schema: str
    _lock: Callable[..., None]
    _now: Callable[[], float | None]
    _append: Callable[..., int]

    def get_item(self, table: str, pk: str, sk: SortKey) -> StoredItem | None:
        rows = self.db.rows(f"cannot read table {table!r}",
                            f"SELECT data, version, expires_at FROM state_items WHERE {_KEY}",
                            (table, pk, *_sk(sk)))
        return _item(rows[0]) if rows else None

    def write_item(self, table: str, pk: str, sk: SortKey,
                   plan: Plan) -> tuple[StoredItem | None, StoredItem | None]:
        key = (table, pk, *_sk(sk))
        with self.db.transaction(f"cannot write to table {table!r}") as conn:
            self._lock(conn, ("item", table, pk, _lock_text(sk)))
            row = conn.execute(f"SELECT data, version, expires_at FROM state_items "
                               f"WHERE {_KEY}", key).fetchone()
            current = _item(row) if row else None
            planned = plan(current)
            if not planned.write:
                return current, current
            new = planned.item
            if new is None:
                if current is not None:
                    conn.execute(f"DELETE FROM state_items WHERE {_KEY}", key)
            else:
                conn.execute(
                    f"INSERT INTO state_items (tbl, pk, {_SK}, data, version, expires_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                    f"ON CONFLICT (tbl, pk, {_SK}) DO UPDATE SET data = excluded.data, "
                    "version = excluded.version, expires_at = excluded.expires_at",
                    (*key, json.dumps(new.data, ensure_ascii=False, separators=(",", ":")),
                     new.version, new.expires_at))
            now = self._now()
            for change in planned.changes:
                self._append(conn, f"table:{table}", change, now)
            return current, new

    def query_items(self, table: str, pk: str, where: SortRange, *, after: SortKey,
                    limit: int, reverse: bool = False) -> list[StoredItem]:
        query = "SELECT data, version, expires_at FROM state_items WHERE tbl = %s AND pk = %s"
        args: list[Any] = [table, pk]
        if where.lower is not None:
            cond, a = _bound(">=" if where.lower_inclusive else ">", where.lower)
            query += f" AND {cond}"
            args += a
        if where.upper is not None:
            cond, a = _bound("<=" if where.upper_inclusive else "<", where.upper)
            query += f" AND {cond}"
            args += a
        if where.prefix is not None:
            prefix = where.prefix.encode("utf-8", "surrogatepass")
            query += (f" AND sk_type = {_STRING} AND sk_bin >= %s "
                      "AND substring(sk_bin FROM 1 FOR %s) = %s")
            args += [prefix, len(prefix), prefix]
        if after is not None:
            query += f" AND ({_SK}) {'<' if reverse else '>'} (%s, %s, %s)"
            args += _sk(after)
        order = " DESC" if reverse else ""
        query += f" ORDER BY sk_type{order}, sk_num{order}, sk_bin{order} LIMIT %s"
        args.append(limit)
        return [_item(r) for r in self.db.rows(f"cannot query table {table!r}", query, args)]

    def scan_items(self, table: str, *, after: tuple[str, SortKey] | None,
                   limit: int) -> list[tuple[str, SortKey, StoredItem]]:
        query = f"SELECT pk, {_SK}, data, version, expires_at FROM state_items WHERE tbl = %s"
        args: list[Any] = [table]
        if after is not None:
            query += f" AND (pk, {_SK}) > (%s, %s, %s, %s)"
            args += [after[0], *_sk(after[1])]
        query += f" ORDER BY pk, {_SK} LIMIT %s"
        args.append(limit)
        return [(r[0], _sk_value(*r[1:4]), _item(r[4:]))
                for r in self.db.rows(f"cannot scan table {table!r}", query, args)]

    def expired_items(self, table: str, now: float, limit: int) -> list[tuple[str, SortKey]]:
        rows = self.db.rows(f"cannot look for expired items in table {table!r}",
                            f"SELECT pk, {_SK} FROM state_items WHERE tbl = %s AND "
                            "expires_at IS NOT NULL AND expires_at <= %s "
                            "ORDER BY expires_at LIMIT %s", (table, now, limit))
        return [(r[0], _sk_value(*r[1:])) for r in rows]


__all__ = ["ITEM_TABLES", "TableOps"]
