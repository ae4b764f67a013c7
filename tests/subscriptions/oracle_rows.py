"""Random rows for the differential tests against Postgres: tables `t`, `u`, `w` and their values.

The table `t` has a column of every type the oracles cover, with values where
Postgres and Python are easy to confuse (case folding, float4 rounding, DST,
NaN and infinities, JSON null beside SQL NULL); the inner tables `u` and `w`
have the same columns, so subqueries over them are drawn like any clause.
"""

from __future__ import annotations

import math
import struct
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

from hypothesis import strategies as st

from pgsift.subscriptions.jsonvalues import JSON_NULL
from tests.subscriptions.databases import jsonb_param

ENUM_LABELS = ("sad", "ok", "happy")
TABLE_DDL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE t (
    id int8 PRIMARY KEY,
    i2 int2, i4 int4, i8 int8, n numeric, f4 real, f8 float8,
    t text, v varchar, c char(4), b bool,
    d date, ts timestamp, tz timestamptz, u uuid, e mood,
    ai int4[], at text[], j jsonb
);
CREATE TABLE u (LIKE t INCLUDING ALL);
CREATE TABLE w (LIKE t INCLUDING ALL);
"""
INNER_TABLES = ("u", "w")
COLUMNS = (
    "i2",
    "i4",
    "i8",
    "n",
    "f4",
    "f8",
    "t",
    "v",
    "c",
    "b",
    "d",
    "ts",
    "tz",
    "u",
    "e",
    "ai",
    "at",
    "j",
)
NUMBER_COLUMNS = ("i2", "i4", "i8", "n", "f4", "f8")
TEXT_COLUMNS = ("t", "v", "c")
TIME_COLUMNS = ("d", "ts", "tz")
COLUMN_TYPES = {
    "i2": "int2", "i4": "int4", "i8": "int8", "n": "numeric", "f4": "float4", "f8": "float8",
    "t": "text", "v": "varchar", "c": "bpchar", "b": "bool", "d": "date", "ts": "timestamp",
    "tz": "timestamptz", "u": "uuid", "e": "mood", "ai": "int4[]", "at": "text[]",
    "j": "jsonb",
}  # fmt: skip

# Characters where case folding, LIKE or collation are easy to get wrong.
CHARS = "aAzZ0 %_\\'\"éÉßẞİiıIΣσςǅᾳᾼﬀÅÅ\u212a\u00b5Ωω😀\u0130\u03c2"  # noqa: RUF001
TEXTS = st.text(alphabet=CHARS, max_size=4)
UUIDS = [
    UUID(int=0),
    UUID(int=1),
    UUID("123e4567-e89b-12d3-a456-426614174000"),
    UUID(int=2**128 - 1),
]
DST = [
    datetime(2026, 3, 29, 0, 30), datetime(2026, 3, 29, 1, 0), datetime(2026, 3, 29, 1, 30),
    datetime(2026, 3, 29, 2, 30), datetime(2026, 10, 25, 0, 59, 59), datetime(2026, 10, 25, 1, 0),
    datetime(2026, 10, 25, 1, 0, 0, 1), datetime(2026, 1, 1), datetime(1999, 12, 31, 23, 59, 59),
]  # fmt: skip
ZONES = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30)),
         timezone(timedelta(hours=14))]  # fmt: skip
INTS = st.one_of(
    st.sampled_from([0, 1, -1, 2, 7, 42, 127, 255, 32767, -32768]),
    st.integers(-3, 3),
)
BIG_INTS = st.one_of(
    INTS,
    st.sampled_from([2**31 - 1, -(2**31), 2**53 + 1, 2**53, 2**63 - 1, -(2**63), 10**15 + 1]),
)
DECIMALS = st.one_of(
    st.sampled_from(
        ["0", "-0", "1", "1.0", "1.50", "-2.5", "0.1", "42", "1e20", "9007199254740993",
         "123456789012345678901234567890.123456789", "NaN", "Infinity", "-Infinity",
         "0.30000000000000004", "3.4028235e38", "2147483647.5"]
    ).map(Decimal),
    st.decimals(min_value=-1000, max_value=1000, places=3, allow_nan=False),
)  # fmt: skip
FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 1.5, -2.5, 0.1, 42.0, 1e20, 2.0**53, 9007199254740993.0,
                     float("nan"), float("inf"), float("-inf"), 1e308, 5e-324, 0.3]),
    st.floats(-1000, 1000, width=32),
)  # fmt: skip


# jsonb values where JSON `null` and SQL NULL are easy to confuse (None is SQL NULL).
JSONB = st.sampled_from([JSON_NULL, {}, [], "null", {"a": None}, [None], 0, False, ""])


def float4(value: float) -> float:
    """`value` as a real column stores it (out-of-range values become infinities)."""
    if value != value or abs(value) >= 3.4e38:
        return value if value != value else math.copysign(math.inf, value)
    return float(struct.unpack("f", struct.pack("f", value))[0])


def timestamps() -> st.SearchStrategy[datetime]:
    return st.one_of(
        st.sampled_from(DST),
        st.datetimes(datetime(2026, 3, 28), datetime(2026, 3, 30)).map(
            lambda d: d.replace(microsecond=0)
        ),
    )


def row_values(index: int) -> st.SearchStrategy[dict[str, Any]]:
    def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(st.none(), strategy, strategy)

    return st.fixed_dictionaries(
        {
            "id": st.just(index),
            "i2": maybe(INTS),
            "i4": maybe(st.one_of(INTS, st.sampled_from([2**31 - 1, -(2**31)]))),
            "i8": maybe(BIG_INTS),
            "n": maybe(DECIMALS),
            "f4": maybe(FLOATS.map(float4)),
            "f8": maybe(FLOATS),
            "t": maybe(TEXTS),
            "v": maybe(TEXTS),
            "c": maybe(st.text(alphabet="aA %_\\ß", max_size=4)),
            "b": maybe(st.booleans()),
            "d": maybe(st.sampled_from([date(2026, 3, 29), date(2026, 3, 28), date(2026, 10, 25)])),
            "ts": maybe(timestamps()),
            "tz": maybe(
                st.builds(lambda d, z: d.replace(tzinfo=z), timestamps(), st.sampled_from(ZONES))
            ),
            "u": maybe(st.sampled_from(UUIDS)),
            "e": maybe(st.sampled_from(ENUM_LABELS)),
            "ai": maybe(st.lists(st.one_of(st.none(), INTS), max_size=3)),
            "at": maybe(st.lists(st.one_of(st.none(), TEXTS), max_size=3)),
            "j": maybe(JSONB),
        }
    )


def rows(least: int = 1, most: int = 14) -> st.SearchStrategy[list[dict[str, Any]]]:
    return (
        st.integers(least, most)
        .flatmap(lambda n: st.tuples(*(row_values(i) for i in range(n))))
        .map(list)
    )


def inner_rows() -> st.SearchStrategy[dict[str, list[dict[str, Any]]]]:
    """Rows of the inner tables; small pools of values make duplicates common, and a
    table may be empty."""
    return st.fixed_dictionaries({table: rows(0, 8) for table in INNER_TABLES})


def bound_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row's values as psycopg parameters (jsonb values wrapped, JSON null included)."""
    return {
        name: jsonb_param(value) if COLUMN_TYPES.get(name) == "jsonb" else value
        for name, value in row.items()
    }
