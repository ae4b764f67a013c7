"""A table with a value of every common type, for checking dumps against Postgres."""

from __future__ import annotations

from typing import Any

import psycopg

from pgsift.subscriptions import pgtext

SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE things (
    id        bigint PRIMARY KEY,
    team      int NOT NULL,
    name      text,
    small     smallint,
    price     numeric(10, 2),
    ratio     float8,
    ok        boolean,
    at        timestamptz,
    local_at  timestamp,
    day       date,
    span      interval,
    uid       uuid,
    doc       jsonb,
    nums      int4[],
    raw       bytea,
    feeling   mood
);
ALTER TABLE things REPLICA IDENTITY FULL;
"""

INSERT = """
INSERT INTO things
SELECT n, mod(n, 3), CASE WHEN mod(n, 7) = 0 THEN NULL ELSE 'thing ' || n || ' «ü»' END,
       mod(n, 100)::smallint, (n * 1.25)::numeric(10, 2),
       CASE WHEN mod(n, 11) = 0 THEN 'NaN'::float8 ELSE n / 3.0 END,
       mod(n, 2) = 0, '2024-01-01 00:00:00+00'::timestamptz + n * interval '1 minute',
       '2024-01-01'::timestamp + n * interval '1 second', '2024-01-01'::date + mod(n, 365)::int,
       n * interval '1 second', md5(n::text)::uuid,
       jsonb_build_object('n', n, 'tags', jsonb_build_array('a', n)),
       ARRAY[n, n + 1], decode(md5(n::text), 'hex'),
       (ARRAY['sad', 'ok', 'happy']::mood[])[mod(n, 3) + 1]
FROM generate_series(%s::bigint, %s::bigint) AS n
"""

THINGS_TYPES = {
    "id": "int8", "team": "int4", "name": "text", "small": "int2", "price": "numeric",
    "ratio": "float8", "ok": "bool", "at": "timestamptz", "local_at": "timestamp",
    "day": "date", "span": "interval", "uid": "uuid", "doc": "jsonb", "nums": "int4[]",
    "raw": "bytea", "feeling": "mood",
}  # fmt: skip
COLUMNS = ("id, team, name, small, price, ratio, ok, at, local_at, day, span, uid, doc, nums, "
           "raw, feeling")


def create_things(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        if rows:
            conn.execute(INSERT, [1, rows])


def select(url: str, sql: str) -> dict[Any, dict[str, Any]]:
    """Rows of `sql` by id, as psycopg returns them."""
    with psycopg.connect(url) as conn:
        cur = conn.execute(sql)
        names = [d.name for d in cur.description or ()]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cur}


# Values psycopg's defaults get wrong for pgsift (see pgsift.middleware.pgtypes):
# enum arrays, infinite dates and timestamps, types `pgtext` does not know, and
# a database whose default TimeZone is not UTC.
ODD_SCHEMA = """
CREATE TYPE shade AS ENUM ('red', 'blue');
CREATE TABLE odd (
    id        int8 PRIMARY KEY,
    tags      shade[],
    at        timestamptz,
    local_at  timestamp,
    day       date,
    addr      inet,
    span      int4range,
    addrs     inet[]
);
ALTER TABLE odd REPLICA IDENTITY FULL;
INSERT INTO odd VALUES
    (1, '{red,blue}', 'infinity', '-infinity', 'infinity', '192.168.1.1', '[1,5)',
     '{10.0.0.1,::1}'),
    (2, '{}', '-infinity', '2026-01-01 10:00', '-infinity', '10.0.0.0/8', 'empty', NULL),
    (3, '{red,NULL}', '2026-03-29 01:30+02', 'infinity', '2026-03-29', NULL, '(,3]', '{}');
"""
ODD_TYPES = {"id": "int8", "tags": "shade[]", "at": "timestamptz", "local_at": "timestamp",
             "day": "date", "addr": "inet", "span": "int4range", "addrs": "inet[]"}
ODD_COLUMNS = ", ".join(ODD_TYPES)


def create_odd(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ODD_SCHEMA)
        name = conn.info.dbname
        conn.execute(f"ALTER DATABASE \"{name}\" SET TimeZone = 'Asia/Kolkata'")


def odd_expected(url: str) -> dict[int, dict[str, Any]]:
    """Rows of `odd` as capture decodes them: each value's output text (what pgoutput
    sends; `format('%s')` calls the type's output function) through `pgtext.parse_text`."""
    texts = ", ".join(f"format('%s', {c}), {c} IS NULL" for c in ODD_TYPES)
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT {texts} FROM odd").fetchall()
    expected = {}
    for row in rows:
        parsed = {
            column: None if row[2 * n + 1] else pgtext.parse_text(type_name, row[2 * n])
            for n, (column, type_name) in enumerate(ODD_TYPES.items())
        }
        expected[parsed["id"]] = parsed
    return expected
