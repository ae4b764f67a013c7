"""Rows from the loader equal what capture decodes, for values psycopg's defaults get
wrong: enum arrays, infinite dates and timestamps, inet and ranges, a non-UTC TimeZone."""

from __future__ import annotations

import psycopg

from pgsift.middleware.loader import BatchLoader
from pgsift.middleware.loader.http import row_json
from tests.wire import wire_rows
from tests.workers.schema import ODD_TYPES, create_odd, odd_expected


async def test_loaded_rows_equal_the_values_capture_decodes(database_url: str) -> None:
    create_odd(database_url)
    expected = odd_expected(database_url)
    loader = await BatchLoader.connect(database_url)  # catalog read from the database
    try:
        rows = await loader.load_many("odd", [1, 2, 3, 4], {})
        encoding = loader.row_wire("odd")  # by the catalog's column types
    finally:
        await loader.close()
    assert rows[3] is None
    assert {row["id"]: row for row in rows if row is not None} == expected
    # The wire form (POST /v1/rows) of each row, with no type left unencodable.
    wanted = wire_rows(expected.values(), ODD_TYPES)
    assert [row_json(row, encoding) for row in rows[:3]] == [wanted[str(n)] for n in (1, 2, 3)]


async def test_rows_keyed_by_a_type_values_does_not_know(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE hosts (addr inet PRIMARY KEY, name text)")
        conn.execute("INSERT INTO hosts VALUES ('10.0.0.1', 'a'), ('::1', 'b')")
    loader = await BatchLoader.connect(database_url)
    try:
        rows = await loader.load_many("hosts", ["::1", "10.0.0.1", "10.0.0.2"], {})
    finally:
        await loader.close()
    assert rows == [{"addr": "::1", "name": "b"}, {"addr": "10.0.0.1", "name": "a"}, None]
