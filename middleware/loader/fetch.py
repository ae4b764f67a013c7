"""One statement for a batch of keys of one table, and running it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection, sql

from pgsift.middleware.loader.cache import Row, RowKey
from pgsift.middleware.loader.request import row_key
from pgsift.subscriptions.catalog import Table


def select_by_keys(
    table: Table, keys: Sequence[RowKey]
) -> tuple[sql.Composed, list[list[object]]]:
    """`SELECT <every column> FROM <table> WHERE <pk> = ANY(%s)`, and its parameters.

    Every column: callers' policies test columns they do not select, and the
    cache serves any later caller's projection from the same row. No policy in
    the WHERE clause: one batch serves callers with different claims, so each
    caller's `BoundPolicy.matches` (Postgres semantics) filters afterwards.
    The arrays are cast to the key columns' types, so that the statement text
    depends on the table only and psycopg prepares it once per connection.
    """
    columns = sql.SQL(", ").join(sql.Identifier(column) for column in table.columns)
    source = sql.Identifier(*table.name.split(".", 1))
    primary_key = table.primary_key
    arrays = [
        sql.SQL("%s::{}[]").format(sql.Identifier(*table.columns[column].split(".", 1)))
        for column in primary_key
    ]
    if len(primary_key) == 1:
        where = sql.SQL("{} = ANY({})").format(sql.Identifier(primary_key[0]), arrays[0])
    else:
        where = sql.SQL("({}) IN (SELECT * FROM unnest({}))").format(
            sql.SQL(", ").join(sql.Identifier(column) for column in primary_key),
            sql.SQL(", ").join(arrays),
        )
    query = sql.SQL("SELECT {} FROM {} WHERE {}").format(columns, source, where)
    params = [[key[position] for key in keys] for position in range(len(primary_key))]
    return query, params


async def fetch_rows(
    conn: AsyncConnection[tuple[object, ...]],
    table: Table,
    keys: Sequence[RowKey],
    where: tuple[str, list[Any]] | None = None,
) -> dict[RowKey, Row]:
    """The existing rows among `keys`, by primary key; with `where` (a bound policy's
    `to_sql_where()`), only those it allows."""
    query, params = select_by_keys(table, keys)
    bound: list[Any] = list(params)
    if where is not None:
        query = sql.Composed([query, sql.SQL(" AND "), sql.SQL(where[0])])
        bound.extend(where[1])
    cursor = await conn.execute(query, bound)
    names = list(table.columns)
    rows = (dict(zip(names, values, strict=True)) for values in await cursor.fetchall())
    return {row_key(table, row): row for row in rows}
