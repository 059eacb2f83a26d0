"""The embedded store's tables: items by (table, pk, sk), written through plans in one
transaction with their change records. A mixin of SqliteStateStore."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Callable

from ..state import FeedEntry, Plan, SortKey, SortRange, StoredItem

_NO_SK = ""  # tables without a sort key store this in the sk column


def _sk(sk: SortKey) -> Any:
    return _NO_SK if sk is None else sk


def _item(row: tuple) -> StoredItem:
    data, version, expires_at = row
    return StoredItem(json.loads(data), version, expires_at)


def _typed(value: Any) -> str:
    """Keep a bound to values of its own type (numbers sort before text in SQLite)."""
    return ("typeof(sk) IN ('integer', 'real')" if isinstance(value, (int, float))
            else "typeof(sk) = 'text'")


class TableOps:
    clock: Callable[[], float]
    _tx: Any
    _read: Any
    _append: Callable[[sqlite3.Connection, str, FeedEntry, float], int]

    def get_item(self, table: str, pk: str, sk: SortKey) -> StoredItem | None:
        rows = self._read("SELECT data, version, expires_at FROM items WHERE tbl = ? AND "
                          "pk = ? AND sk = ?", (table, pk, _sk(sk)))
        return _item(rows[0]) if rows else None

    def write_item(self, table: str, pk: str, sk: SortKey,
                   plan: Plan) -> tuple[StoredItem | None, StoredItem | None]:
        with self._tx() as db:
            row = db.execute("SELECT data, version, expires_at FROM items WHERE tbl = ? AND "
                             "pk = ? AND sk = ?", (table, pk, _sk(sk))).fetchone()
            current = _item(row) if row else None
            planned = plan(current)
            if not planned.write:
                return current, current
            new = planned.item
            if new is None:
                db.execute("DELETE FROM items WHERE tbl = ? AND pk = ? AND sk = ?",
                           (table, pk, _sk(sk)))
            else:
                db.execute(
                    "INSERT INTO items (tbl, pk, sk, data, version, expires_at) "
                    "VALUES (?,?,?,?,?,?) ON CONFLICT(tbl, pk, sk) DO UPDATE SET "
                    "data = excluded.data, version = excluded.version, "
                    "expires_at = excluded.expires_at",
                    (table, pk, _sk(sk), json.dumps(new.data, ensure_ascii=False,
                                                    separators=(",", ":")),
                     new.version, new.expires_at))
            now = self.clock()
            for change in planned.changes:
                self._append(db, f"table:{table}", change, now)
            return current, new

    def query_items(self, table: str, pk: str, where: SortRange, *, after: SortKey,
                    limit: int, reverse: bool = False) -> list[StoredItem]:
        sql = "SELECT data, version, expires_at FROM items WHERE tbl = ? AND pk = ?"
        args: list[Any] = [table, pk]
        if where.lower is not None:
            sql += f" AND sk {'>=' if where.lower_inclusive else '>'} ? AND {_typed(where.lower)}"
            args.append(where.lower)
        if where.upper is not None:
            sql += f" AND sk {'<=' if where.upper_inclusive else '<'} ? AND {_typed(where.upper)}"
            args.append(where.upper)
        if where.prefix is not None:
            sql += " AND sk >= ? AND typeof(sk) = 'text' AND substr(sk, 1, ?) = ?"
            args += [where.prefix, len(where.prefix), where.prefix]
        if after is not None:
            sql += f" AND sk {'<' if reverse else '>'} ?"
            args.append(after)
        sql += f" ORDER BY sk {'DESC' if reverse else 'ASC'} LIMIT ?"
        args.append(limit)
        return [_item(r) for r in self._read(sql, args)]

    def scan_items(self, table: str, *, after: tuple[str, SortKey] | None,
                   limit: int) -> list[tuple[str, SortKey, StoredItem]]:
        sql = "SELECT pk, sk, data, version, expires_at FROM items WHERE tbl = ?"
        args: list[Any] = [table]
        if after is not None:
            sql += " AND (pk > ? OR (pk = ? AND sk > ?))"
            args += [after[0], after[0], _sk(after[1])]
        sql += " ORDER BY pk, sk LIMIT ?"
        args.append(limit)
        return [(r[0], None if r[1] == _NO_SK else r[1], _item(r[2:]))
                for r in self._read(sql, args)]

    def expired_items(self, table: str, now: float, limit: int) -> list[tuple[str, SortKey]]:
        rows = self._read("SELECT pk, sk FROM items WHERE tbl = ? AND expires_at IS NOT NULL "
                          "AND expires_at <= ? ORDER BY expires_at LIMIT ?", (table, now, limit))
        return [(pk, None if sk == _NO_SK else sk) for pk, sk in rows]
