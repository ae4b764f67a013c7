"""Postgres as the oracle: what a client's copy must equal."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgsift.middleware.pgtypes import configure_async
from tests.wire import described


def key_of(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True)


async def expected(
    database_url: str, sql: str, params: list[Any], primary_key: tuple[str, ...] = ("id",)
) -> dict[str, dict[str, Any]]:
    """`sql`'s rows, keyed and JSON-encoded exactly as the gateway sends them."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await configure_async(conn)  # values as pgsift reads them (JSON null is not None)
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(sql.replace("$1", "%s").replace("$2", "%s"), params)
        rows = await cursor.fetchall()
        wire = described(cursor.description)
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        encoded = wire.mapping(row)
        out[key_of({c: encoded[c] for c in primary_key})] = encoded
    return out


async def execute(database_url: str, *statements: str) -> None:
    """Run `statements` in one transaction."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        for statement in statements:
            await conn.execute(statement)
