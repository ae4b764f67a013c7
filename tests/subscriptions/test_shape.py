"""Shape: parsing outcomes, keys, projection, index terms, memory."""

from __future__ import annotations

import gc
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from pgsift.subscriptions import Catalog, PolicyError, QueryError, Shape
from pgsift.subscriptions.parse import parse_select

CATALOG = Catalog.from_dict(
    {
        "public.issues": {
            "columns": {
                "id": "int8", "team_id": "int4", "title": "text", "status": "issue_status",
                "score": "float8", "weight": "float4", "estimate": "numeric", "archived": "bool",
                "created_at": "timestamptz", "updated_at": "timestamp", "code": "bpchar",
            },
            "primary_key": ["id"],
        }
    },
    enums={"issue_status": ["open", "doing", "done"]},
)  # fmt: skip


def shape(sql: str, *params: object) -> Shape:
    return Shape.parse(sql, params=list(params), catalog=CATALOG)


def test_public_attributes() -> None:
    s = shape("SELECT title, id FROM issues WHERE team_id = $1", 7)
    assert s.table == "public.issues"
    assert s.columns == ("title", "id")
    assert s.primary_key == ("id",)
    assert s.project({"id": 1, "title": "t", "team_id": 7}) == {"title": "t", "id": 1}
    assert s.to_sql() == (
        'SELECT "title", "id" FROM "public"."issues" WHERE "team_id" = %s::int4',
        [7],
    )


def test_equal_shapes_have_equal_keys() -> None:
    a = shape("SELECT id FROM issues WHERE team_id = 7 AND status IN ('open', 'doing')")
    b = shape(
        "select ID from public.issues where team_id = $1 and status = any($2)", 7, ["doing", "open"]
    )
    c = shape("SELECT id FROM issues WHERE team_id = 8 AND status IN ('open', 'doing')")
    assert a.key == b.key
    assert a == b and hash(a) == hash(b)
    assert a.key != c.key


def test_key_is_stable_across_processes() -> None:
    sql = "SELECT id FROM issues WHERE team_id = 7 AND estimate > 1.5 AND created_at > '2026-01-01'"
    code = f"from tests.subscriptions.test_shape import shape;print(shape({sql!r}).key)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == shape(sql).key


def test_three_valued_logic() -> None:
    not_in = shape("SELECT id FROM issues WHERE team_id NOT IN (1, NULL)")
    assert not not_in.matches({"id": 1, "team_id": 2})  # NULL, not true
    assert not not_in.matches({"id": 1, "team_id": 1})
    is_not_true = shape("SELECT id FROM issues WHERE (team_id > 1) IS NOT TRUE")
    assert is_not_true.matches({"id": 1, "team_id": None})
    distinct = shape("SELECT id FROM issues WHERE team_id IS DISTINCT FROM NULL")
    assert distinct.matches({"id": 1, "team_id": 0}) and not distinct.matches(
        {"id": 1, "team_id": None}
    )
    empty_any = shape("SELECT id FROM issues WHERE NOT (team_id = ANY($1))", [])
    assert empty_any.matches({"id": 1, "team_id": None})  # = ANY('{}') is false, even for NULL


def test_numbers_compare_as_postgres() -> None:
    assert shape("SELECT id FROM issues WHERE score = 'NaN'").matches(
        {"id": 1, "score": float("nan")}
    )
    assert shape("SELECT id FROM issues WHERE score > 1e308").matches(
        {"id": 1, "score": float("nan")}
    )
    assert shape("SELECT id FROM issues WHERE estimate = 1.0").matches(
        {"id": 1, "estimate": Decimal("1.000")}
    )
    # int8 vs float8 compares as float8: 2^53 + 1 rounds to 2^53.
    big = shape("SELECT id FROM issues WHERE id = $1::float8", 2.0**53)
    assert big.matches({"id": 2**53 + 1})
    exact = shape("SELECT id FROM issues WHERE id = 9007199254740993.0")
    assert not exact.matches({"id": 2**53})
    # A real column read as "0.1" is the single-precision 0.1, not the double 0.1.
    assert not shape("SELECT id FROM issues WHERE weight = 0.1").matches({"id": 1, "weight": 0.1})
    assert shape("SELECT id FROM issues WHERE weight = 0.1::float4").matches(
        {"id": 1, "weight": 0.1}
    )


def test_text_semantics() -> None:
    assert shape("SELECT id FROM issues WHERE title < 'a'").matches(
        {"id": 1, "title": "Z"}
    )  # code points
    assert shape("SELECT id FROM issues WHERE lower(title) = 'i'").matches({"id": 1, "title": "İ"})
    assert shape("SELECT id FROM issues WHERE upper(title) = 'ß'").matches({"id": 1, "title": "ß"})
    assert shape("SELECT id FROM issues WHERE lower(title) = 'σσ'").matches(  # noqa: RUF001
        {"id": 1, "title": "ΣΣ"}
    )
    assert shape("SELECT id FROM issues WHERE title ILIKE 'i%'").matches({"id": 1, "title": "İx"})
    assert shape("SELECT id FROM issues WHERE code = 'ab'").matches({"id": 1, "code": "ab  "})
    assert not shape("SELECT id FROM issues WHERE code LIKE 'ab'").matches(
        {"id": 1, "code": "ab  "}
    )
    assert shape("SELECT id FROM issues WHERE title LIKE 'a\\%'").matches({"id": 1, "title": "a%"})


def test_timestamps_assume_utc_for_timestamp_vs_timestamptz() -> None:
    s = shape("SELECT id FROM issues WHERE created_at = '2026-03-29 01:30:00'::timestamp")
    assert s.matches({"id": 1, "created_at": datetime(2026, 3, 29, 1, 30, tzinfo=UTC)})
    zoned = shape("SELECT id FROM issues WHERE created_at < '2026-03-29 03:00:00+02'")
    assert zoned.matches({"id": 1, "created_at": datetime(2026, 3, 29, 0, 59, tzinfo=UTC)})
    assert not zoned.matches({"id": 1, "created_at": datetime(2026, 3, 29, 1, 0, tzinfo=UTC)})


def test_index_terms() -> None:
    s = shape(
        "SELECT id FROM issues WHERE team_id = $1 AND status IN ('open', 'doing') AND archived"
        " AND estimate = 2 AND code = 'x' AND (score = 1 OR score = 2) AND score IN (1, 'NaN')",
        7,
    )
    terms = dict(s.index_terms)
    assert terms == {
        "team_id": frozenset({7}),
        "status": frozenset({"open", "doing"}),
        "archived": frozenset({True}),
        "estimate": frozenset({2}),
    }
    assert shape("SELECT id FROM issues WHERE 5 = team_id").index_terms == (
        ("team_id", frozenset({5})),
    )
    assert shape("SELECT id FROM issues WHERE team_id = NULL").index_terms == (
        ("team_id", frozenset()),
    )
    assert shape("SELECT id FROM issues WHERE title ILIKE '%x%'").index_terms == ()
    assert shape("SELECT id FROM issues WHERE title ILIKE '%x%'").like_terms == (
        ("title", "%x%", True),
    )


def test_refusals_carry_positions() -> None:
    with pytest.raises(QueryError) as info:
        shape("SELECT id\nFROM issues\nWHERE  nope = 1")
    assert (info.value.line, info.value.column, info.value.position) == (3, 8, 29)
    with pytest.raises(QueryError, match="parameter"):
        shape("SELECT id FROM issues", 1)


def test_policies_given_but_none_for_the_table_refuses() -> None:
    from pgsift.subscriptions import Policy

    other = Policy.from_config("public.other", {"row": "true"})
    with pytest.raises(PolicyError, match=r"no policy allows reading public\.issues"):
        Shape.parse("SELECT id FROM issues", catalog=CATALOG, policies={"public.other": other})


def test_memory_per_indexed_shape_is_under_2_kb() -> None:
    count = 3000
    shape("SELECT id, title FROM issues WHERE team_id = 0 AND status IN ('open', 'doing')")
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    shapes = [
        shape(f"SELECT id, title FROM issues WHERE team_id = {k} AND status IN ('open', 'doing')")
        for k in range(1000, 1000 + count)
    ]
    parse_select.cache_clear()  # a bounded cache of recent query texts, not per shape
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(shapes) == count
    assert used / count < 2048, used / count


def test_client_text_is_never_spliced_into_sql() -> None:
    hostile = "'; DROP TABLE issues; -- \\ %s $1 \"x"
    s = shape("SELECT id FROM issues WHERE title = $1 OR title LIKE 'x''; DROP TABLE y'", hostile)
    sql, params = s.to_sql()
    assert "DROP" not in sql and "x'" not in sql
    assert params == [hostile, "x'; DROP TABLE y"]
    odd = Catalog.from_dict({"public.t": {"columns": {"a%s": "int4", 'b"c': "text"},
                                          "primary_key": ["a%s"]}})  # fmt: skip
    odd_shape = Shape.parse('SELECT "a%s", "b""c" FROM t WHERE "a%s" = 1', catalog=odd)
    assert odd_shape.to_sql() == (
        'SELECT "a%%s", "b""c" FROM "public"."t" WHERE "a%%s" = %s::int4',
        [1],
    )
