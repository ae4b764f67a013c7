"""psycopg connections configured by pgsift return what capture decodes."""

from __future__ import annotations

import psycopg
import pytest
from pgsift.middleware.pgtypes import configure, configure_async
from pgsift.subscriptions.values import parse_text

CASES = [
    ("'infinity'::date", "date"),
    ("'-infinity'::date", "date"),
    ("'2026-03-29'::date", "date"),
    ("'infinity'::timestamp", "timestamp"),
    ("'-infinity'::timestamptz", "timestamptz"),
    ("'2026-03-29 01:30:00+02'::timestamptz", "timestamptz"),
    ("ARRAY['open', NULL, 'in progress']::mood[]", "mood[]"),
    ("'open'::mood", "mood"),
]


def _setup(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute("CREATE TYPE mood AS ENUM ('open', 'in progress', 'done')")
    conn.execute("SET TimeZone = 'UTC'")


def test_sync_connection_matches_capture_values(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        _setup(conn)
        configure(conn)
        for expression, type_name in CASES:
            row = conn.execute(f"SELECT {expression}, ({expression})::text").fetchone()
            assert row is not None
            assert row[0] == parse_text(type_name, row[1]), expression


@pytest.mark.parametrize("autocommit", [True, False])
async def test_async_connection_matches_capture_values(database_url: str, autocommit: bool) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        _setup(conn)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=autocommit) as conn:
        await configure_async(conn)
        await conn.execute("SET TimeZone = 'UTC'")
        for expression, type_name in CASES:
            cursor = await conn.execute(f"SELECT {expression}, ({expression})::text")
            row = await cursor.fetchone()
            assert row is not None
            assert row[0] == parse_text(type_name, row[1]), expression
