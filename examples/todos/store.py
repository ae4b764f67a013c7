"""The example apps' own data access: todos in Postgres (plain psycopg, as an app has it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

SCHEMA = Path(__file__).with_name("schema.sql")


def apply_schema(database_url: str) -> None:
    """Create the `todos` table (idempotent)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCHEMA.read_text(encoding="utf-8"))  # type: ignore[arg-type]


async def count_open(database_url: str, list_id: int) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM todos WHERE list_id = %s AND NOT done", (list_id,)
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else 0


async def add(database_url: str, list_id: int, title: str) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(
            "INSERT INTO todos (list_id, title) VALUES (%s, %s) RETURNING id, list_id, title, done",
            (list_id, title),
        )
        row = await cursor.fetchone()
        assert row is not None  # INSERT ... RETURNING returns the row
        return row
