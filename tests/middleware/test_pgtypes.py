"""psycopg connections configured by pgsift return what capture decodes."""

from __future__ import annotations

import psycopg
import pytest

from pgsift.middleware.bootstrap.snapshot import snapshot_pool, take_snapshot
from pgsift.middleware.catalog import load_catalog
from pgsift.middleware.pgtypes import configure, configure_async
from pgsift.subscriptions.pgtext import parse_text
from pgsift.subscriptions.shape import Shape
from tests.workers.schema import ODD_COLUMNS, create_odd, odd_expected

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


# Types psycopg decodes to its own classes, unknown to `pgtext`: their output text,
# as pgoutput sends it (inet's `::text` would add a /32 the output omits).
TEXT_CASES = [
    ("'192.168.1.1'::inet", "inet", "192.168.1.1"),
    ("'10.0.0.0/8'::cidr", "cidr", "10.0.0.0/8"),
    ("'[1,5)'::int4range", "int4range", "[1,5)"),
    ("'[2026-03-29 01:30:00+02,)'::tstzrange", "tstzrange", '["2026-03-28 23:30:00+00",)'),
    ("'{[1,2), [5,6)}'::int4multirange", "int4multirange", "{[1,2),[5,6)}"),
    ("ARRAY['192.168.1.1', '::1']::inet[]", "inet[]", "{192.168.1.1,::1}"),
]


def test_types_unknown_to_values_load_as_their_output_text(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("SET TimeZone = 'Europe/Paris'")
        conn.commit()
        configure(conn)  # pins UTC
        for expression, type_name, text in TEXT_CASES:
            row = conn.execute(f"SELECT {expression}").fetchone()
            assert row is not None
            assert row[0] == parse_text(type_name, text), expression
        row = conn.execute("SELECT '2026-03-29 01:30:00+02'::timestamptz").fetchone()
        assert row is not None and row[0].utcoffset().total_seconds() == 0


async def test_the_gateway_snapshot_pool_reads_values_as_capture_decodes(
    database_url: str,
) -> None:
    create_odd(database_url)  # also makes the database's TimeZone Asia/Kolkata
    with psycopg.connect(database_url) as conn:
        catalog = load_catalog(conn)
    shape = Shape.parse(f"SELECT {ODD_COLUMNS} FROM odd", catalog=catalog)
    pool = snapshot_pool(database_url, max_size=1)
    await pool.open()
    try:
        sql, params = shape.to_sql()
        async with pool.connection() as conn, take_snapshot(conn) as read:
            named = [dict(zip(shape.columns, row, strict=True))
                     async for rows in read.rows(sql, params) for row in rows]
        got = {row["id"]: row for row in named}
    finally:
        await pool.close()
    expected = odd_expected(database_url)
    assert got == expected
    assert [str(got[3]["at"])] == ["2026-03-28 23:30:00+00:00"]  # in UTC
