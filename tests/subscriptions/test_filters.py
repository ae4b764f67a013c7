"""Typed filters: the SQL a `where` input compiles to, its edge cases, errors and bounds."""

from __future__ import annotations

from typing import Any

import pytest

from pgsift.subscriptions import Catalog, Policy, PolicyError, QueryError, Shape
from pgsift.subscriptions.filters import MAX_DEPTH, FilterError, compile_filter
from pgsift.subscriptions.parse import MAX_NESTING
from pgsift.subscriptions.typed_schema import typed_schema

CATALOG = Catalog.from_dict(
    {"issues": {"columns": {"id": "int8", "team_id": "int8", "status": "issue_status",
                            "priority": "int2", "title": "text", "tags": "text[]",
                            "secret": "text"},
                "primary_key": ["id"], "not_null": ["team_id"]}},
    enums={"issue_status": ["todo", "doing", "done"]},
)  # fmt: skip
POLICIES = {
    "public.issues": Policy(
        "public.issues",
        columns=("id", "team_id", "status", "priority", "title", "tags"),
        row="team_id = ANY(auth.team_ids)",
    )
}
CLAIMS = {"team_ids": [3]}
TABLE = typed_schema(CATALOG, POLICIES).table("issues")
ROWS = [
    {"id": 1, "team_id": 3, "status": "todo", "priority": 1, "title": "Crash", "tags": None},
    {"id": 2, "team_id": 3, "status": "done", "priority": 3, "title": "crash!", "tags": []},
    {"id": 3, "team_id": 3, "status": None, "priority": None, "title": "Slow", "tags": ["a"]},
    {"id": 4, "team_id": 4, "status": "todo", "priority": 4, "title": "Hidden", "tags": None},
]


def _shape(where: dict[str, Any] | None, **kwargs: Any) -> Shape:
    query = compile_filter(TABLE, where, **kwargs)
    return query.to_shape(catalog=CATALOG, claims=CLAIMS, policies=POLICIES)


def _ids(where: dict[str, Any] | None) -> list[int]:
    shape = _shape(where)
    return [row["id"] for row in ROWS if shape.matches(row)]


def test_the_issue_example_compiles_to_parameterized_sql() -> None:
    where = {
        "teamId": {"_eq": 3},
        "_or": [{"status": {"_in": ["todo", "doing"]}}, {"priority": {"_gt": 2}}],
        "_not": {"title": {"_ilike": "%slow%"}},
    }
    query = compile_filter(TABLE, where, select=["title"])
    assert query.sql == (
        'SELECT "id", "title" FROM "public"."issues" WHERE "team_id" = $1 AND '
        '("status" = ANY($2) OR "priority" > $3) AND NOT ("title" ILIKE $4)'
    )
    assert query.params == (3, ["todo", "doing"], 2, "%slow%")
    assert _ids(where) == [1, 2]
    # The same shape as the SQL a client could have written: one key, one routing entry.
    by_hand = Shape.parse(
        "SELECT id, title FROM issues WHERE team_id = $1 AND (status IN ('todo', 'doing') "
        "OR priority > $2) AND NOT (title ILIKE '%slow%')",
        [3, 2], catalog=CATALOG, claims=CLAIMS, policies=POLICIES,
    )  # fmt: skip
    assert _shape(where, select=["title"]).key == by_hand.key


@pytest.mark.parametrize(
    ("where", "ids"),
    [
        (None, [1, 2, 3]),
        ({}, [1, 2, 3]),
        ({"_and": []}, [1, 2, 3]),
        ({"_or": []}, []),
        ({"_not": {}}, []),
        ({"_not": {"_or": []}}, [1, 2, 3]),
        ({"status": {}}, [1, 2, 3]),
        ({"status": {"_in": []}}, []),
        ({"status": {"_nin": []}}, [1, 2, 3]),  # NULL included, as <> ALL('{}')
        ({"status": {"_nin": ["done"]}}, [1]),  # NULL is not "not in"
        ({"status": {"_neq": "done"}}, [1]),
        ({"status": {"_isDistinctFrom": "done"}}, [1, 3]),
        ({"status": {"_isNull": True}}, [3]),
        ({"tags": {"_isNull": False}}, [2, 3]),
        ({"priority": {"_gte": 1, "_lt": 3}}, [1]),  # operators of one column: AND
        ({"status": {"_gt": "todo"}}, [2]),  # enum order, not text order
        ({"title": {"_like": "crash%"}}, [2]),
        ({"title": {"_ilike": "CRASH%"}}, [1, 2]),
        ({"_or": [{}, {"status": {"_eq": "todo"}}]}, [1, 2, 3]),
        ({"_and": [{"priority": {"_isNull": False}}, {"_not": {"priority": {"_eq": 1}}}]}, [2]),
    ],
)
def test_edge_cases(where: dict[str, Any] | None, ids: list[int]) -> None:
    assert _ids(where) == ids


def test_an_empty_where_is_the_unfiltered_shape() -> None:
    assert compile_filter(TABLE, {}).sql == compile_filter(TABLE, None).sql
    assert _shape({"_and": [{}, {"_and": []}]}).key == _shape(None).key


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ({"teamid": {"_eq": 1}}, "where.teamid: unknown field 'teamid' of IssuesBoolExp; did "
                                 "you mean teamId?"),
        ({"secret": {"_eq": "x"}}, "where.secret: unknown field"),  # not readable
        ({"teamId": {"_foo": 1}}, "where.teamId._foo: unknown operator '_foo'; "
                                  "BigIntComparisonExp has _eq, "),
        ({"teamId": {"_like": "1"}}, "where.teamId._like: _like is not available for int8"),
        ({"tags": {"_eq": ["a"]}}, "where.tags._eq: _eq is not available for text[] columns; "
                                   "StringArrayComparisonExp has _isNull"),
        ({"teamId": {"_eq": None}}, "where.teamId._eq: null is not a value to compare with; "
                                    "use _isNull"),
        ({"status": {"_in": ["todo", None]}}, "where.status._in[1]: expected a single value, "
                                              "not null"),
        ({"status": {"_in": "todo"}}, "where.status._in: expected a list, got a string"),
        ({"status": {"_isNull": None}}, "where.status._isNull: _isNull takes true or false"),
        ({"_or": [{"teamId": {"_eq": 3}}, {"status": {"_eq": "nope"}}]},
         'where._or[1].status._eq: invalid input value for enum issue_status: "nope"'),
        ({"_not": {"_and": [{}, {"teamId": {"_in": [1, "x"]}}]}},
         "where._not._and[1].teamId._in: invalid input syntax for type int8: 'x'"),
        ({"title": {"_like": "a\\"}}, "where.title._like: LIKE pattern must not end with"),
        ({"teamId": {"_eq": 2**70}}, "where.teamId._eq: int8: 1180591620717411303424 is out"),
        ({"_and": {}}, "where._and: expected a list, got an object"),
        ({"_not": None}, "where._not: expected an object (IssuesBoolExp), got null"),
        ({"teamId": 3}, "where.teamId: expected an object (BigIntComparisonExp), got a number"),
        ({"_or": [[]]}, "where._or[0]: expected an object (IssuesBoolExp), got a list"),
    ],
)  # fmt: skip
def test_refusals_name_the_path_in_the_input(where: dict[str, Any], message: str) -> None:
    with pytest.raises(FilterError) as caught:
        _shape(where)
    assert str(caught.value).startswith(message), str(caught.value)
    assert isinstance(caught.value, QueryError)


def test_a_value_that_tries_sql_stays_a_parameter() -> None:
    hostile = "x' OR 1=1 --"
    query = compile_filter(TABLE, {"title": {"_eq": hostile}, "status": {"_in": [hostile]}})
    assert hostile not in query.sql and query.params == (hostile, [hostile])
    with pytest.raises(FilterError, match=r"where\.status\._in: invalid input value for enum"):
        query.to_shape(catalog=CATALOG, claims=CLAIMS, policies=POLICIES)


def test_a_field_name_that_tries_sql_is_an_unknown_field() -> None:
    with pytest.raises(FilterError, match="unknown field"):
        compile_filter(TABLE, {'title" = \'a\' OR "id': {"_eq": "a"}})


def test_policy_errors_stay_policy_errors() -> None:
    query = compile_filter(TABLE, {"teamId": {"_eq": 3}})
    with pytest.raises(PolicyError, match="team_ids"):
        query.to_shape(catalog=CATALOG, claims={}, policies=POLICIES)
    assert _shape({"teamId": {"_eq": 4}}).matches(ROWS[3]) is False  # the policy is ANDed in


def test_select_picks_the_columns_and_always_the_key() -> None:
    assert _shape(None, select=["title", "teamId"]).columns == ("id", "team_id", "title")
    assert _shape(None).columns == ("id", "team_id", "status", "priority", "title", "tags")
    with pytest.raises(FilterError, match="select: unknown field 'secret'"):
        compile_filter(TABLE, None, select=["secret"])


def _nested(kind: str, depth: int) -> dict[str, Any]:
    where: dict[str, Any] = {"priority": {"_in": [1]}}
    for _ in range(depth):
        where = {"_not": where} if kind == "_not" else {kind: [where, {"title": {"_eq": "a"}}]}
    return where


@pytest.mark.parametrize("kind", ["_not", "_and", "_or"])
def test_nesting_is_bounded_and_the_deepest_accepted_input_parses(kind: str) -> None:
    shape = _shape(_nested(kind, MAX_DEPTH))  # within the parser's own nesting limit
    assert shape.table == "public.issues"
    with pytest.raises(FilterError, match=f"nested too deeply .more than {MAX_DEPTH} levels"):
        compile_filter(TABLE, _nested(kind, MAX_DEPTH + 1))
    assert MAX_NESTING >= 2 * MAX_DEPTH + 1


def test_hostile_inputs_are_refused_without_recursing_into_them() -> None:
    deep: dict[str, Any] = {}
    for _ in range(100_000):
        deep = {"_not": deep}
    with pytest.raises(FilterError, match="nested too deeply"):
        compile_filter(TABLE, deep)
    wide = {"_or": [{"priority": {"_eq": i}} for i in range(10_000)]}
    with pytest.raises(FilterError, match="too many conditions"):
        compile_filter(TABLE, wide)
    deep_value: list[Any] = []
    for _ in range(100_000):
        deep_value = [deep_value]
    with pytest.raises(FilterError, match=r"where\.teamId\._in\[0\]: expected a single value"):
        compile_filter(TABLE, {"teamId": {"_in": deep_value}})
    with pytest.raises(FilterError, match=r"where\.teamId\._eq: int8: expected an integer"):
        _shape({"teamId": {"_eq": deep_value}})


def test_a_long_in_list_is_one_parameter() -> None:
    ids = list(range(50_000))
    shape = _shape({"priority": {"_in": [1, 3]}, "id": {"_in": ids}})
    assert [row["id"] for row in ROWS if shape.matches(row)] == [1, 2]
    assert len(shape.to_sql()[1]) == 3  # the policy's claim, and one array per list
