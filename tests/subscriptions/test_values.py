"""Value decoding, with psycopg 3 on a real Postgres as the oracle."""

from __future__ import annotations

import copy
import json
import math
import pickle
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
import pytest

from pgsift.middleware.pgtypes import configure
from pgsift.subscriptions import Catalog, Shape
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.classify import PreparedChange, classify, same_value
from pgsift.subscriptions.durations import format_duration, parse_duration
from pgsift.subscriptions.jsonvalues import JSON_NULL, JsonNull, nested_deeper_than
from pgsift.subscriptions.pgtext import UnrepresentableValue, parse_text
from pgsift.subscriptions.typenames import element_type, is_known_type
from pgsift.subscriptions.wire import RowWire, encoder_for, from_json, to_wire, untyped_json

# (type name, SQL expression of that type). psycopg 3, configured as pgsift's
# connections are (`pgtypes.configure`), reads the typed value, Postgres renders
# the same expression as text; both must agree.
CASES: list[tuple[str, str]] = [
    ("int2", "(-32768)::int2"),
    ("int2", "32767::int2"),
    ("int4", "(-2147483648)::int4"),
    ("int4", "0::int4"),
    ("int8", "(-9223372036854775808)::int8"),
    ("int8", "9223372036854775807::int8"),
    ("numeric", "0::numeric"),
    ("numeric", "(-1.50)::numeric"),
    ("numeric", "0.000::numeric"),
    ("numeric", "123456789012345678901234567890.123456789::numeric"),
    ("numeric", "1e-30::numeric"),
    ("numeric", "'NaN'::numeric"),
    ("numeric", "'Infinity'::numeric"),
    ("numeric", "'-Infinity'::numeric"),
    ("numeric", "12.5::numeric(10,3)"),
    ("float4", "1.1::float4"),
    ("float4", "3.4e38::float4"),
    ("float4", "1e-45::float4"),
    ("float4", "'-0'::float4"),
    ("float4", "'NaN'::float4"),
    ("float4", "'Infinity'::float4"),
    ("float8", "0.1::float8"),
    ("float8", "1e308::float8"),
    ("float8", "5e-324::float8"),
    ("float8", "(1/3.0)::float8"),
    ("float8", "'NaN'::float8"),
    ("float8", "'-Infinity'::float8"),
    ("bool", "true"),
    ("bool", "false"),
    ("text", "''::text"),
    ("text", "'héllo wörld ✓ 🎉'::text"),
    ("text", "E'tab\\there\\nnewline \\\\ \"quoted\" ''single'''::text"),
    ("text", "'NULL'::text"),
    ("varchar", "'abc'::varchar(5)"),
    ("bpchar", "'ab'::char(4)"),
    ("bpchar", "'x'::char"),
    ("uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid"),
    ("date", "'2024-02-29'::date"),
    ("date", "'0001-01-01'::date"),
    ("date", "'9999-12-31'::date"),
    ("time", "'00:00'::time"),
    ("time", "'23:59:59.999999'::time"),
    ("time", "'12:34:56.5'::time"),
    ("timetz", "'12:00:01.25+05:30'::timetz"),
    ("timestamp", "'2024-01-02 03:04:05.123456'::timestamp"),
    ("timestamp", "'0001-01-01 00:00'::timestamp"),
    ("timestamp", "'9999-12-31 23:59:59.999999'::timestamp"),
    ("timestamp", "'2000-01-01 00:00:00.1'::timestamp"),
    ("timestamptz", "'2024-01-02 03:04:05.123456+00'::timestamptz"),
    ("timestamptz", "'2024-06-30 23:59:59.5-03:30'::timestamptz"),
    ("timestamptz", "'1900-01-01 00:00:00 Europe/Amsterdam'::timestamptz"),
    ("timestamptz", "'0001-01-02 00:00:00+00'::timestamptz"),
    ("interval", "'0'::interval"),
    ("interval", "'1 year 2 mons 3 days 04:05:06.789'::interval"),
    ("interval", "'-1 day 2 hours'::interval"),
    ("interval", "'-1.5 years'::interval"),
    ("interval", "'1 year -2 mons 3 days -04:05:06.5'::interval"),
    ("interval", "'100000000 hours'::interval"),
    ("interval", "'-0.000001 seconds'::interval"),
    ("interval", "'13 months 40 days'::interval"),
    ("json", '\'{"a": [1, 2.5, null, true], "b": {"c": "ü"}}\'::json'),
    ("json", "'\"just a string\"'::json"),
    ("json", "'3'::json"),
    ("jsonb", '\'{"z": 1, "a": [1.0, "x"], "n": null}\'::jsonb'),
    ("jsonb", "'[]'::jsonb"),
    ("jsonb", "'null'::jsonb"),
    ("jsonb", "'\"null\"'::jsonb"),
    ("jsonb", "'{}'::jsonb"),
    ("json", "'null'::json"),
    ("json", "' null '::json"),
    ("bytea", "''::bytea"),
    ("bytea", "'\\x00ff10'::bytea"),
    ("bytea", "convert_to('hello \\ world', 'UTF8')"),
    ("int4[]", "'{1,2,NULL}'::int4[]"),
    ("int4[]", "'{}'::int4[]"),
    ("int4[]", "'[0:1]={1,2}'::int4[]"),
    ("int4[]", "'{{1,2},{3,NULL}}'::int4[]"),
    ("int4[]", "'[1:1][-2:-1]={{1,2}}'::int4[]"),
    ("int4[]", "'{{{1},{2}},{{3},{4}}}'::int4[]"),
    ("int4[]", "'{{NULL}}'::int4[]"),
    ("int2[]", "'{-1,1}'::int2[]"),
    ("int8[]", "ARRAY[9223372036854775807]::int8[]"),
    ("text[]", "ARRAY['', 'NULL', NULL, 'a b', 'q\"x', 'back\\slash', '{brace}', 'c,d', ' lead']"),
    ("text[]", "ARRAY[ARRAY['a','b'],ARRAY['NULL',NULL]]"),
    ("varchar[]", "ARRAY['x', 'null']::varchar[]"),
    ("bpchar[]", "ARRAY['ab']::char(3)[]"),
    ("bool[]", "ARRAY[true, false, NULL]"),
    ("numeric[]", "ARRAY[1.5, 'NaN', NULL, '-Infinity']::numeric[]"),
    ("float4[]", "ARRAY[1.1, 'Infinity']::float4[]"),
    ("float8[]", "ARRAY[0.1, 'NaN', '-Infinity', NULL]::float8[]"),
    ("uuid[]", "ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, NULL]"),
    ("date[]", "ARRAY['2024-01-01'::date, NULL]"),
    ("time[]", "ARRAY['01:02:03.4'::time]"),
    ("timestamp[]", "ARRAY['2024-01-01 01:02:03'::timestamp]"),
    ("timestamptz[]", "ARRAY['2024-01-01 01:02:03+02'::timestamptz, NULL]"),
    ("interval[]", "ARRAY['1 day -01:00'::interval, '1 mon'::interval]"),
    ("json[]", "ARRAY['{\"a\": \"b,c\"}'::json, '[1]'::json, NULL]"),
    ("jsonb[]", "ARRAY['{\"k\": \"\\\\\"}'::jsonb, 'null'::jsonb]"),
    ("jsonb[]", "ARRAY['null'::jsonb, NULL, '\"null\"'::jsonb, '[null]'::jsonb]"),
    ("bytea[]", "ARRAY['\\x01'::bytea, ''::bytea, NULL]"),
]


def same(left: Any, right: Any) -> bool:
    """Equality that treats NaN as equal to NaN (float and Decimal) and checks types."""
    if type(left) is not type(right):
        return False
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, float | Decimal) and left != left:
        return bool(right != right)
    if isinstance(left, float) and left == 0.0:
        return math.copysign(1, left) == math.copysign(1, right)
    return bool(left == right)


@pytest.fixture(scope="module")
def oracle(postgres_server: Any) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        configure(conn)  # TimeZone UTC; JSON null is JSON_NULL, as capture decodes it
        yield conn


def _fetch(conn: psycopg.Connection[Any], expr: str) -> tuple[Any, str]:
    """The value psycopg 3 loads and the raw text the type's output function wrote
    (exactly what pgoutput sends for the column)."""
    cursor = conn.execute(f"SELECT {expr}")
    row = cursor.fetchone()
    assert row is not None and cursor.pgresult is not None
    raw = cursor.pgresult.get_value(0, 0)
    assert raw is not None
    return row[0], raw.decode()


def _text(conn: psycopg.Connection[Any], expr: str) -> str:
    cursor = conn.execute(f"SELECT {expr}::text")
    assert cursor.pgresult is not None
    raw = cursor.pgresult.get_value(0, 0)
    assert raw is not None
    return raw.decode()


@pytest.mark.parametrize(("type_name", "expr"), CASES, ids=[expr for _, expr in CASES])
def test_parse_text_matches_psycopg(
    oracle: psycopg.Connection[Any], type_name: str, expr: str
) -> None:
    expected, text = _fetch(oracle, expr)
    value = parse_text(type_name, text)
    assert same(value, expected), (text, value, expected)


@pytest.mark.parametrize(("type_name", "expr"), CASES, ids=[expr for _, expr in CASES])
def test_wire_round_trip(oracle: psycopg.Connection[Any], type_name: str, expr: str) -> None:
    _, text = _fetch(oracle, expr)
    value = parse_text(type_name, text)
    wire = json.loads(json.dumps(to_wire(type_name, value), allow_nan=False))
    assert js_safe(wire), wire
    assert same(from_json(type_name, wire), value), (wire, value)


def js_safe(wire: Any) -> bool:
    """No number a JavaScript client would round (JSON numbers are doubles there)."""
    if isinstance(wire, list):
        return all(map(js_safe, wire))
    if isinstance(wire, int) and not isinstance(wire, bool):
        return abs(wire) <= 2**53
    return not isinstance(wire, dict)  # json values travel as their text


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "America/St_Johns", "Europe/Amsterdam"])
def test_timestamptz_in_any_session_timezone(postgres_server: Any, zone: str) -> None:
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f"SET TimeZone = '{zone}'")
        for literal in [
            "2024-01-02 03:04:05.5+00",
            "1890-07-01 12:00:00+00",
            "2024-07-01 00:00+00",
        ]:
            expected, text = _fetch(conn, f"'{literal}'::timestamptz")
            value = parse_text("timestamptz", text)
            assert value == expected
            assert value.tzinfo is UTC


def test_bytea_escape_output(postgres_server: Any) -> None:
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute("SET bytea_output = 'escape'")
        expected, text = _fetch(conn, "'\\x005c41ff0a'::bytea")
        assert parse_text("bytea", text) == expected == b"\x00\\A\xff\n"


def test_enum_and_enum_array(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TYPE issue_status AS ENUM ('open', 'in progress', 'NULL', 'a\"b')")
        expected, text = _fetch(conn, "'in progress'::issue_status")
        assert parse_text("issue_status", text) == expected == "in progress"
        # psycopg 3 returns an unregistered enum array as one string; pgsift
        # uses a list of str (as for text[]), the contract for arrays.
        _, text = _fetch(conn, "ARRAY['open', 'in progress', 'NULL', 'a\"b', NULL]::issue_status[]")
        expected = conn.execute(
            "SELECT ARRAY['open', 'in progress', 'NULL', 'a\"b', NULL]::issue_status[]::text[]"
        ).fetchone()
        assert expected is not None
        assert parse_text("issue_status[]", text) == expected[0]
        assert from_json("issue_status[]", to_wire("issue_status[]", expected[0])) == expected[0]
    assert not is_known_type("issue_status")
    assert not is_known_type("issue_status[]")


@pytest.mark.parametrize(
    ("type_name", "text", "expected"),
    [
        ("date", "infinity", date.max),
        ("date", "-infinity", date.min),
        ("timestamp", "infinity", datetime.max),
        ("timestamp", "-infinity", datetime.min),
        ("timestamptz", "infinity", datetime.max.replace(tzinfo=UTC)),
        ("timestamptz", "-infinity", datetime.min.replace(tzinfo=UTC)),
        ("date[]", "{infinity,-infinity}", [date.max, date.min]),
    ],
)
def test_infinity_maps_to_the_extremes(type_name: str, text: str, expected: Any) -> None:
    # psycopg 3 raises on these by default; capture must not stall on a valid row.
    assert parse_text(type_name, text) == expected
    assert from_json(type_name, to_wire(type_name, expected)) == expected


def test_from_json_accepts_infinity_strings() -> None:
    assert from_json("date", "infinity") == date.max
    assert from_json("timestamptz", "-infinity") == datetime.min.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("type_name", "expr"),
    [
        ("date", "'0001-01-01 BC'::date"),
        ("date", "'10000-01-01'::date"),
        ("timestamp", "'0044-03-15 12:00 BC'::timestamp"),
        ("timestamptz", "'20000-01-01 00:00+00'::timestamptz"),
        ("time", "'24:00:00'::time"),
    ],
)
def test_unrepresentable_values_raise(
    oracle: psycopg.Connection[Any], type_name: str, expr: str
) -> None:
    with pytest.raises(psycopg.DataError):
        _fetch(oracle, expr)
    with pytest.raises(UnrepresentableValue, match=r"24:00:00|BC|10000|20000"):
        parse_text(type_name, _text(oracle, expr))


@pytest.mark.parametrize(
    ("value", "depth"),
    [(1, 0), ("[[", 0), ([], 1), ({}, 1), ([1, {"a": []}], 3), ({"a": [{"b": 2}]}, 3),
     ((1, (2,)), 2)],
)
def test_nesting_depth(value: Any, depth: int) -> None:
    assert not nested_deeper_than(value, depth)
    assert depth == 0 or nested_deeper_than(value, depth - 1)


def test_nesting_far_past_the_recursion_limit() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    assert nested_deeper_than(deep, 64) and not nested_deeper_than(deep, 100_001)


def test_unknown_type_is_text() -> None:
    assert parse_text("mood", "happy") == "happy"
    assert parse_text("mood[]", '{happy,"so sad",NULL}') == ["happy", "so sad", None]
    assert from_json("mood", "happy") == "happy"
    with pytest.raises(TypeError, match="mood"):
        from_json("mood", 3)


@pytest.mark.parametrize("text", ["{1,2", '{"a}', "{1}x", "1,2", "{{1}", "[1:2]"])
def test_malformed_arrays_raise(text: str) -> None:
    with pytest.raises(ValueError, match="array text"):
        parse_text("int4[]", text)


def test_huge_interval_is_unrepresentable() -> None:
    with pytest.raises(UnrepresentableValue, match="interval"):
        parse_text("interval", "178000000 years")


def test_type_names() -> None:
    assert element_type("int4[]") == "int4"
    assert element_type("_int4") == "int4"
    assert element_type("issue_status[]") == "issue_status"
    with pytest.raises(ValueError, match="not an array"):
        element_type("int4")
    assert is_known_type("int4") and is_known_type("timestamptz[]") and is_known_type("integer")
    assert is_known_type("timestamp with time zone")
    assert not is_known_type("issue_status")
    assert parse_text("integer", "5") == 5
    assert parse_text("INT4", "5") == 5
    assert parse_text("_int4", "{5}") == [5]
    assert parse_text("timestamp with time zone[]", "{NULL}") == [None]
    # `_x` means an array only for builtins: a user type may start with "_".
    assert parse_text("_status", "{a}") == "{a}"
    with pytest.raises(ValueError, match="not an array"):
        element_type("_status")
    assert element_type("MyEnum[]") == "MyEnum"


@pytest.mark.parametrize(
    ("delta", "iso"),
    [
        (timedelta(0), "PT0S"),
        (timedelta(days=1), "P1D"),
        (timedelta(days=-1, seconds=7200), "-PT22H"),
        (timedelta(days=400, hours=1, minutes=2, seconds=3, microseconds=4), "P400DT1H2M3.000004S"),
        (timedelta(seconds=61, microseconds=500000), "PT1M1.5S"),
        (timedelta(microseconds=-1), "-PT0.000001S"),
    ],
)
def test_duration_format(delta: timedelta, iso: str) -> None:
    assert format_duration(delta) == iso
    assert parse_duration(iso) == delta


def test_duration_parse_forms() -> None:
    assert parse_duration("P1Y2M3W4DT5H6M7,5S") == timedelta(
        days=365 + 60 + 21 + 4, hours=5, minutes=6, seconds=7.5
    )
    assert from_json("interval", "1 day 02:00:00") == timedelta(days=1, hours=2)
    for bad in ["P", "PT", "1D", "P1H", "PT1D", ""]:
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_untyped_json_forms() -> None:
    moment = datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert untyped_json(
        [
            1,
            1.5,
            float("nan"),
            float("inf"),
            float("-inf"),
            Decimal("1.50"),
            Decimal("NaN"),
            moment,
            moment.date(),
            time(1, 2),
            UUID(int=1),
            b"\x00\xff",
            {"a": [1]},
            True,
            None,
        ]
    ) == [
        1,
        1.5,
        "NaN",
        "Infinity",
        "-Infinity",
        "1.50",
        "NaN",
        "2024-01-02T03:04:05.000006+00:00",
        "2024-01-02",
        "01:02:00",
        "00000000-0000-0000-0000-000000000001",
        "\\x00ff",
        {"a": [1]},
        True,
        None,
    ]
    with pytest.raises(TypeError, match="set"):
        untyped_json({1, 2})
    assert untyped_json(JSON_NULL) == "null"


WIRE_FORMS: list[tuple[str, Any, Any]] = [
    ("int2", -32768, -32768),
    ("int4", 2**31 - 1, 2**31 - 1),
    ("int8", 2**53 + 1, "9007199254740993"),
    ("int8", -(2**63), "-9223372036854775808"),
    ("int8", 7, "7"),
    ("numeric", Decimal("1234567890123456789012345678901234567890"),
     "1234567890123456789012345678901234567890"),
    ("numeric", Decimal("0.0000001"), "0.0000001"),
    ("numeric", Decimal("1.50"), "1.50"),
    ("numeric", Decimal("-Infinity"), "-Infinity"),
    ("numeric", Decimal("NaN"), "NaN"),
    ("float8", 0.1, 0.1),
    ("float8", -0.0, -0.0),
    ("float8", math.inf, "Infinity"),
    ("float4", math.nan, "NaN"),
    ("timestamptz", datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
     "2024-01-02T03:04:05.000006+00:00"),
    ("timestamp", datetime(2024, 1, 2, 3, 4, 5, 120000), "2024-01-02T03:04:05.120000"),
    ("interval", timedelta(days=1, microseconds=1), "P1DT0.000001S"),
    ("jsonb", JSON_NULL, "null"),
    ("jsonb", "null", '"null"'),
    ("jsonb", {}, "{}"),
    ("jsonb", [], "[]"),
    ("json", {"a": [1, None, "ü"], "big": 2**70},
     '{"a":[1,null,"ü"],"big":1180591620717411303424}'),
    ("jsonb[]", [JSON_NULL, None, [1], "null"], ["null", None, "[1]", '"null"']),
    ("int8[]", [[2**60, None], [1, 2]], [["1152921504606846976", None], ["1", "2"]]),
    ("numeric[]", [Decimal("1E+2")], ["100"]),
    ("int4[]", [1, None], [1, None]),
    ("mood", "happy", "happy"),
    ("mood[]", ["happy", None], ["happy", None]),
    ("bytea", b"\x00\xff", "\\x00ff"),
    ("uuid", UUID(int=1), "00000000-0000-0000-0000-000000000001"),
]  # fmt: skip


@pytest.mark.parametrize(("type_name", "value", "wire"), WIRE_FORMS)
def test_wire_forms(type_name: str, value: Any, wire: Any) -> None:
    encoded = to_wire(type_name, value)
    assert same(encoded, wire) or encoded == wire, encoded
    assert same(from_json(type_name, json.loads(json.dumps(encoded))), value)
    assert to_wire(type_name, None) is None


def test_row_wire_encodes_tuples_and_dicts_by_column_type() -> None:
    wire = RowWire(("id", "meta", "n"), ("int8", "jsonb", "numeric"))
    assert wire.values((2**62, JSON_NULL, None)) == {"id": str(2**62), "meta": "null", "n": None}
    assert wire.values((1, None, Decimal("1.0"))) == {"id": "1", "meta": None, "n": "1.0"}
    assert wire.mapping({"id": 5}) == {"id": "5"}
    assert encoder_for("int4") is None and encoder_for("mood[]") is None
    with pytest.raises(ValueError, match="columns"):
        RowWire(("a",), ())


def test_every_known_type_has_a_wire_encoder() -> None:
    from pgsift.subscriptions.typenames import KNOWN_TYPES
    from pgsift.subscriptions.wire import ENCODERS

    assert ENCODERS.keys() == KNOWN_TYPES


def test_every_known_type_has_a_text_parser_and_a_json_converter() -> None:
    """The tables of the other directions (Postgres text -> value, JSON -> value) list
    the same types: a type added to one and not the others would fall back to text."""
    from pgsift.subscriptions.pgtext import PARSERS
    from pgsift.subscriptions.typenames import KNOWN_TYPES
    from pgsift.subscriptions.wire import CONVERTERS

    assert PARSERS.keys() == KNOWN_TYPES
    assert CONVERTERS.keys() == KNOWN_TYPES


@pytest.mark.parametrize(
    ("type_name", "value", "error"),
    [
        ("int4", "abc", TypeError),
        ("int4", 1.5, TypeError),
        ("int4", True, TypeError),
        ("int2", 40000, ValueError),
        ("int8", 2**63, ValueError),
        ("numeric", "1.2.3", ValueError),
        ("numeric", [1], TypeError),
        ("float8", "x", ValueError),
        ("bool", "true", TypeError),
        ("text", 5, TypeError),
        ("uuid", "nope", ValueError),
        ("date", 20240101, TypeError),
        ("date", "2024-13-01", ValueError),
        ("timestamptz", "yesterday", ValueError),
        ("timestamptz", "0001-01-01T00:00:00+05:00", ValueError),
        ("interval", "P1X", ValueError),
        ("bytea", "00ff", TypeError),
        ("bytea", "\\xzz", ValueError),
        ("int4[]", 5, TypeError),
        ("int4[]", ["a"], TypeError),
    ],
)
def test_from_json_rejects(type_name: str, value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=type_name.removesuffix("[]")):
        from_json(type_name, value)


def test_from_json_conveniences() -> None:
    assert from_json("int8", "9223372036854775807") == 2**63 - 1
    assert from_json("int4", 3.0) == 3
    assert from_json("numeric", 0.1) == Decimal("0.1")
    assert from_json("float8", "Infinity") == math.inf
    assert from_json("timestamptz", "2024-01-01T05:30:00+05:30") == datetime(2024, 1, 1, tzinfo=UTC)
    assert from_json("timestamptz", "2024-01-01T00:00:00Z") == datetime(2024, 1, 1, tzinfo=UTC)
    # Naive input: UTC. A timestamp drops an offset, as Postgres does.
    assert from_json("timestamptz", "2024-01-01 00:00") == datetime(2024, 1, 1, tzinfo=UTC)
    assert from_json("timestamp", "2024-01-01T00:00+02:00") == datetime(2024, 1, 1)
    assert from_json("int4[]", [[1, None], [3, 4]]) == [[1, None], [3, 4]]
    assert from_json("jsonb", {"a": [1]}) == {"a": [1]}  # a typed value, as is
    assert from_json("jsonb", '{"a": [1]}') == {"a": [1]}  # the wire form: JSON text
    assert from_json("jsonb", "null") is JSON_NULL
    assert from_json("jsonb", '"null"') == "null"
    assert from_json("jsonb[]", [[1, 2], {"a": 1}]) == [[1, 2], {"a": 1}]
    assert from_json("jsonb[]", ["null", None, "[1]"]) == [JSON_NULL, None, [1]]
    assert from_json("int8", 2**60) == 2**60  # a number is fine where it is exact
    assert from_json("uuid", UUID(int=5)) == UUID(int=5)
    naive = datetime(2024, 1, 1)
    assert from_json("timestamptz", naive) == naive.replace(tzinfo=UTC)
    assert from_json("timestamp", naive.replace(tzinfo=UTC)) == naive
    assert from_json("date", date(2024, 1, 1)) == date(2024, 1, 1)
    assert from_json("int4", None) is None


def test_json_null_is_not_sql_null() -> None:
    assert parse_text("jsonb", "null") is JSON_NULL
    assert parse_text("json", " null ") is JSON_NULL
    assert parse_text("jsonb", '"null"') == "null"
    assert parse_text("jsonb", '{"a": null}') == {"a": None}  # nested: unambiguous
    assert parse_text("jsonb[]", '{"null",NULL,"\\"null\\""}') == [JSON_NULL, None, "null"]
    assert pickle.loads(pickle.dumps(JSON_NULL)) is JSON_NULL
    assert copy.deepcopy({"j": JSON_NULL})["j"] is JSON_NULL
    assert JSON_NULL is not None and JsonNull() is JSON_NULL


def test_json_null_and_sql_null_in_predicates_and_classification() -> None:
    catalog = Catalog.from_dict(
        {"public.docs": {"columns": {"id": "int8", "meta": "jsonb"}, "primary_key": ["id"]}}
    )
    present = Shape.parse("SELECT id, meta FROM docs WHERE meta IS NOT NULL", catalog=catalog)
    absent = Shape.parse("SELECT id, meta FROM docs WHERE meta IS NULL", catalog=catalog)
    assert present.matches({"id": 1, "meta": JSON_NULL}) and not absent.matches(
        {"id": 1, "meta": JSON_NULL}
    )
    assert not same_value(JSON_NULL, None) and same_value([JSON_NULL], [JSON_NULL])
    # JSON null -> SQL NULL moves the row from one shape to the other.
    change = Change("public.docs", "update", {"id": 1}, {"id": 1, "meta": None},
                    {"id": 1, "meta": JSON_NULL})
    prepared = PreparedChange(change, ("id",))
    assert prepared.changed == frozenset({"meta"})
    assert [e.op for e in classify(present, prepared)] == ["delete"]
    assert [e.op for e in classify(absent, prepared)] == ["insert"]
    # A jsonb constant `'null'` is the JSON null, not SQL NULL; Postgres gets its text.
    constant = Shape.parse("SELECT id FROM docs WHERE 'null'::jsonb IS NULL", catalog=catalog)
    assert constant.params == ("null",) and not constant.matches({"id": 1, "meta": None})


def test_same_value_of_plain_scalars_is_strict_about_types() -> None:
    """The fast path for text, integers, booleans, bytes and None keeps `same_value`
    stricter than `==`: 1, True and 1.0 are different values to a client."""
    assert same_value("a", "a") and same_value(7, 7) and same_value(None, None)
    assert same_value(b"\x00", b"\x00") and same_value(True, True)
    assert not same_value("a", "b") and not same_value(7, 8) and not same_value(b"a", b"b")
    assert not same_value(1, True) and not same_value(True, 1) and not same_value(1, 1.0)
    assert not same_value(0, None) and not same_value("1", 1) and not same_value(False, 0)
