"""`to_sql()` agrees with `matches` whatever the column collation and the session TimeZone.

The table's text columns use an ICU collation (which orders `a < B < b`, where
code-point order has `B < a`), and the snapshot queries run with TimeZone
America/New_York: pgsift pins `COLLATE "C"` and `AT TIME ZONE 'UTC'`, so its
SQL returns exactly the rows its predicate accepts. The same clauses run
as written do not, which shows the data tells the difference.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pgsift.middleware.catalog import load_catalog
from pgsift.subscriptions import Shape

TEXTS = ["a", "B", "b", "Z", "_", "ä", "ab", None]
TIMES = [
    datetime(2026, 3, 29, 1, 30),
    datetime(2026, 3, 29, 6, 0),
    datetime(2026, 3, 28, 23, 0),
    None,
]
CLAUSES = [
    "t < 'b'",
    "t >= 'B'",
    "t BETWEEN 'B' AND 'a'",
    "t NOT BETWEEN 'B' AND 'a'",
    "'Z' < t",
    "lower(t) > 'a'",
    "upper(t) <= 'B'",
    "t > ALL(ARRAY['B', 'Z'])",
    "t < ANY($1)",
    "c < 'b'",
    "t < v",
    "ts < '2026-03-29 03:00:00+00'::timestamptz",
    "ts >= $2::timestamptz",
    "tz >= '2026-03-29'::date",
    "d < tz",
    "ts IN ('2026-03-29 01:30:00+00'::timestamptz, '2026-03-29 06:00:00+00'::timestamptz)",
    "tz IS DISTINCT FROM ts",
    "tz = ts",
    "d = ANY(ARRAY['2026-03-29 00:00:00+00'::timestamptz])",
]


def _rows() -> list[dict[str, Any]]:
    rows = []
    for i, text in enumerate(TEXTS):
        stamp = TIMES[i % len(TIMES)]
        rows.append(
            {
                "id": i,
                "t": text,
                "v": TEXTS[(i + 3) % len(TEXTS)],
                "c": text,
                "ts": stamp,
                "tz": None if stamp is None else TIMES[(i + 1) % len(TIMES)],
                "d": None if stamp is None else stamp.date(),
            }
        )
    for row in rows:
        if row["tz"] is not None:
            row["tz"] = row["tz"].replace(tzinfo=UTC)
    rows.append({"id": 99, "t": "b", "v": "a", "c": "B", "ts": None, "tz": None,
                 "d": date(2026, 3, 29)})  # fmt: skip
    return rows


def _ids(conn: psycopg.Connection[Any], sql: str, params: list[Any]) -> set[int]:
    return {row[0] for row in conn.execute(sql, params).fetchall()}


def test_to_sql_pins_collation_and_time_zone(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """
            CREATE TABLE t (id int8 PRIMARY KEY, t text COLLATE "und-x-icu",
                            v varchar(5) COLLATE "und-x-icu", c char(2) COLLATE "und-x-icu",
                            ts timestamp, tz timestamptz, d date)
            """
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO t VALUES (%(id)s, %(t)s, %(v)s, %(c)s, %(ts)s, %(tz)s, %(d)s)",
                _rows(),
            )
        catalog = load_catalog(conn)
        conn.execute("SET TimeZone = 'UTC'")
        with conn.cursor(row_factory=dict_row) as cur:
            table = cur.execute("SELECT * FROM t").fetchall()
        conn.execute("SET TimeZone = 'America/New_York'")
        params = [["b", "B"], "2026-03-29T02:00:00+00:00"]
        pg_params = ["{b,B}", "2026-03-29 02:00:00+00"]
        as_written_differs = 0
        for clause in CLAUSES:
            used = [i for i in (1, 2) if f"${i}" in clause]
            sql = f"SELECT id FROM t WHERE {clause}"
            if used == [2]:
                sql = sql.replace("$2", "$1")
            shape = Shape.parse(sql, params=[params[i - 1] for i in used], catalog=catalog)
            expected = {row["id"] for row in table if shape.matches(row)}
            snapshot_sql, snapshot_params = shape.to_sql()
            assert _ids(conn, snapshot_sql, snapshot_params) == expected, (clause, snapshot_sql)
            result = conn.pgconn.exec_params(
                sql.encode(), [pg_params[i - 1].encode() for i in used]
            )
            assert result.status == psycopg.pq.ExecStatus.TUPLES_OK, clause
            as_written = {int(result.get_value(i, 0) or b"0") for i in range(result.ntuples)}
            as_written_differs += as_written != expected
        # Without the pins, the server's collation and TimeZone change the answer.
        assert as_written_differs >= len(CLAUSES) // 3


@pytest.mark.parametrize("collation", ["C", "und-x-icu"])
def test_equality_needs_no_pin(database_url: str, collation: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE t (id int8 PRIMARY KEY, t text COLLATE "{collation}")')
        conn.execute("INSERT INTO t VALUES (1, 'a'), (2, 'A'), (3, 'ä'), (4, 'a ')")
        shape = Shape.parse("SELECT id FROM t WHERE t IN ('a', 'ä')", catalog=load_catalog(conn))
        sql, params = shape.to_sql()
        assert "COLLATE" not in sql
        assert _ids(conn, sql, params) == {1, 3}
