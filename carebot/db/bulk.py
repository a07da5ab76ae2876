"""Bulk inserts and updates for the inbound batch: one statement for many rows, per dialect.

SQLAlchemy's executemany spends ~40 µs per row on its own bookkeeping; these run the driver's
executemany directly and convert values with the column types' own bind processors (the same
storage format as every other write), looked up once per table, columns and dialect; SQLite
datetimes through `UTCDateTime.sqlite_text`, the same conversion without its overhead.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable
from typing import Any

from sqlalchemy import JSON, Table, Update, bindparam, update
from sqlalchemy.engine import Connection, Dialect

from carebot.db.types import UTCDateTime

Converter = Callable[[Any], Any] | None


def insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows (all with the same keys) with one statement; nothing returned."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        _sqlite_execute(conn, table, tuple(rows[0]), rows, "insert")
    else:
        _pg_insert(conn, table, rows, returning=False)


def insert_returning_ids(
    conn: Connection, table: Table, rows: list[dict[str, Any]], next_id: Callable[[int], int]
) -> list[int]:
    """Insert rows with one statement; their new ids, in the order given.

    PostgreSQL takes ids from the sequence. SQLite would insert row by row to order RETURNING
    ids; it has no sequences and one writer, so the caller numbers the rows from `next_id(n)`
    (the first of n free ids). Should anyone else have taken an id, the primary key refuses
    the insert and the transaction is retried.
    """
    if not rows:
        return []
    if conn.dialect.name != "sqlite":
        return _pg_insert(conn, table, rows, returning=True)
    first = next_id(len(rows))
    ids = list(range(first, first + len(rows)))
    numbered = [{**r, "id": i} for r, i in zip(rows, ids, strict=True)]
    _sqlite_execute(conn, table, tuple(numbered[0]), numbered, "insert")
    return ids


def update_by_id(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: list[dict[str, Any]]
) -> None:
    """`UPDATE table SET columns… WHERE id = …` for each row, as one executemany."""
    if not rows:
        return
    names = (*columns, "id")
    if conn.dialect.name == "sqlite":
        _sqlite_execute(conn, table, names, rows, "update")
        return
    conn.execute(_pg_update(table, columns),
                 [{"b_id": r["id"], **{k: r[k] for k in columns}} for r in rows])


@functools.cache
def _pg_update(table: Table, columns: tuple[str, ...]) -> Update:
    # Built once: building a statement and its cache key cost more than running it.
    return (update(table).where(table.c.id == bindparam("b_id"))
            .values({k: bindparam(k) for k in columns}))


@functools.cache
def _sqlite_plan(
    table: Table, names: tuple[str, ...], kind: str, dialect: Dialect
) -> tuple[str, tuple[Converter, ...]]:
    if kind == "insert":
        sql = (f"INSERT INTO {table.name} ({', '.join(names)}) "
               f"VALUES ({', '.join('?' for _ in names)})")
    else:
        sets = ", ".join(f"{n} = ?" for n in names[:-1])
        sql = f"UPDATE {table.name} SET {sets} WHERE {names[-1]} = ?"
    return sql, tuple(_converter(table, n, dialect) for n in names)


def _converter(table: Table, name: str, dialect: Dialect) -> Converter:
    column_type = table.c[name].type
    if dialect.name == "sqlite" and isinstance(column_type, UTCDateTime):
        return UTCDateTime.sqlite_text
    processor = column_type.dialect_impl(dialect).bind_processor(dialect)
    if processor is None:
        return None
    return processor


def _pg_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _values(
    converters: tuple[Converter, ...], names: tuple[str, ...], row: dict[str, Any]
) -> list[Any]:
    pick = operator.itemgetter(*names)
    values = list(pick(row)) if len(names) > 1 else [pick(row)]
    for i, convert in enumerate(converters):
        if convert is not None:
            values[i] = convert(values[i])
    return values


def _sqlite_execute(
    conn: Connection, table: Table, names: tuple[str, ...], rows: list[dict[str, Any]],
    kind: str,
) -> None:
    sql, converters = _sqlite_plan(table, names, kind, conn.dialect)
    conn.exec_driver_sql(sql, [tuple(_values(converters, names, r)) for r in rows])


# PostgreSQL: SQLAlchemy's multi-row VALUES has a different SQL text for every batch size,
# which asyncpg prepares anew each time; INSERT … SELECT FROM unnest(arrays) is one text for
# any size.


@functools.cache
def _pg_insert_sql(table: Table, names: tuple[str, ...], returning: bool, dialect: Any) -> str:
    casts = ", ".join(
        f"${i}::{table.c[n].type.compile(dialect=dialect)}[]" for i, n in enumerate(names, 1)
    )
    cols = ", ".join(names)
    # Ids come from the sequence in the SELECT's order (ORDER BY ordinality); the returned ids
    # are sorted, as SQLAlchemy does for its own ordered bulk inserts on PostgreSQL.
    return (f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM unnest({casts}) "
            f"WITH ORDINALITY AS u({cols}, ord_) ORDER BY ord_"
            + (f" RETURNING {table.name}.id" if returning else ""))


def _pg_insert(
    conn: Connection, table: Table, rows: list[dict[str, Any]], *, returning: bool
) -> list[int]:
    names = tuple(rows[0])
    json_cols = {n for n in names if isinstance(table.c[n].type, JSON)}
    columns = tuple(
        [_pg_json(r[n]) for r in rows] if n in json_cols else [r[n] for r in rows]
        for n in names
    )
    result = conn.exec_driver_sql(_pg_insert_sql(table, names, returning, conn.dialect), columns)
    return sorted(result.scalars()) if returning else []
