"""Hostile client input and pathological data: only `QueryError` ever escapes, nothing hangs.

Client text and parameters may be anything; `Shape.parse` refuses what it cannot
take with a `QueryError` (or `PolicyError`), never a RecursionError, ValueError
or decimal.InvalidOperation. Deep json in the application's rows is one row's
clear error (`UnrepresentableValue`) or compared without recursion.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgsift.subscriptions import (
    Catalog,
    Policy,
    PolicyError,
    QueryError,
    Shape,
    policies_from_config,
)
from pgsift.subscriptions import template as template_module
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.classify import PreparedChange, same_value
from pgsift.subscriptions.parse import MAX_NESTING, MAX_SQL_LENGTH
from pgsift.subscriptions.pgtext import UnrepresentableValue, parse_text
from pgsift.subscriptions.wire import from_json

FIXTURES = Path(__file__).parent.parent / "fixtures" / "subscriptions"
SPEC = json.loads((FIXTURES / "catalog.json").read_text(encoding="utf-8"))
CATALOG = Catalog.from_dict(SPEC["tables"], enums=SPEC["enums"])
POLICIES = policies_from_config(SPEC["policies"], catalog=CATALOG)
WHERE = "SELECT id FROM issues WHERE "


def parse(sql: str, params: list[Any] | None = None) -> Shape:
    return Shape.parse(sql, params=params or [], catalog=CATALOG)


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


# -- LIKE ---------------------------------------------------------------------


def test_backtracking_like_pattern_is_decided_in_a_shape() -> None:
    shape = parse(WHERE + "title LIKE '%a%a%a%a%a%a%a%a%b'")
    assert shape.matches({"id": 1, "title": "a" * 50}) is False
    assert shape.matches({"id": 1, "title": "a" * 50 + "b"}) is True
    insensitive = parse(WHERE + "title ILIKE '%A%A%A%A%A%A%A%A%B'")
    assert insensitive.matches({"id": 1, "title": "a" * 50}) is False
    assert insensitive.matches({"id": 1, "title": "a" * 40 + "B"}) is True


# -- size and nesting of the text ---------------------------------------------------


def test_long_or_and_and_chains_are_taken() -> None:
    ors = parse(WHERE + " OR ".join(f"team_id = {i}" for i in range(400)))
    assert ors.matches({"id": 1, "team_id": 399}) is True
    assert ors.matches({"id": 1, "team_id": 400}) is False
    ands = parse(WHERE + " AND ".join(f"(team_id <> {i})" for i in range(400)))
    assert ands.matches({"id": 1, "team_id": 400}) is True
    assert ands.matches({"id": 1, "team_id": 3}) is False
    mixed = parse(WHERE + " OR ".join(f"(team_id = {i} AND NOT archived)" for i in range(400)))
    assert mixed.matches({"id": 1, "team_id": 7, "archived": False}) is True


def test_nesting_up_to_the_limit_is_taken() -> None:
    depth = MAX_NESTING - 1
    shape = parse(WHERE + "(" * depth + "archived" + ")" * depth)
    assert shape.matches({"id": 1, "archived": True}) is True
    assert parse(WHERE + "NOT " * depth + "archived").matches({"id": 1, "archived": True}) is (
        depth % 2 == 0
    )


@pytest.mark.parametrize(
    "sql",
    [
        WHERE + "(" * 2000 + "archived" + ")" * 2000,
        WHERE + "NOT " * 2000 + "archived",
        WHERE + "team_id = ANY(" + "ARRAY[" * 500 + "1" + "]" * 500 + ")",
        WHERE + "(" * 2000,
        WHERE + "title = '" + "x" * MAX_SQL_LENGTH + "'",
    ],
    ids=["parens", "nots", "arrays", "unbalanced", "too-long"],
)
def test_deep_or_long_text_is_a_query_error(sql: str) -> None:
    with pytest.raises(QueryError, match=r"nested too deeply|too long"):
        parse(sql)


def test_recursion_on_a_deep_stack_is_a_query_error() -> None:
    # Whatever the caller's stack depth, a RecursionError becomes a QueryError.
    depth = MAX_NESTING
    sql = WHERE + "(" * depth + "archived" + ")" * depth + " -- not cached"

    def deep(n: int) -> Any:
        return parse(sql) if n == 0 else deep(n - 1)

    with pytest.raises(QueryError, match="nested too deeply"):
        deep(sys.getrecursionlimit() - 150)


# -- numbers ----------------------------------------------------------------------


def test_numbers_with_thousands_of_digits() -> None:
    digits = "9" * 5000
    shape = parse(WHERE + f"estimate = {digits}")
    assert shape.params == (Decimal(digits),)
    assert shape.matches({"id": 1, "estimate": shape.params[0]}) is True
    assert parse(WHERE + f"estimate = -{digits}").matches({"id": 1, "estimate": 1}) is False
    with pytest.raises(QueryError, match="out of range for type int4"):
        parse(WHERE + f"team_id = '{digits}'")
    with pytest.raises(QueryError, match="out of range for type int4"):
        parse(WHERE + "team_id = $1", [digits])


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("id = 1e99999::int8", "out of range for type int8"),
        ("id = -1e99999::int4", "out of range for type int4"),
        ("score = 1e99999::float8", "out of range for type float8"),
        ("score = '1e400'", "out of range for type float8"),
        ("weight = 1e99999::float4", "out of range for type float4"),
    ],
)
def test_huge_exponents_are_out_of_range(where: str, message: str) -> None:
    with pytest.raises(QueryError, match=re.escape(message)):
        parse(WHERE + where)


# -- parameters ---------------------------------------------------------------------


def test_array_parameters_nest_at_most_six_levels() -> None:
    assert parse(WHERE + "team_id = ANY($1)", [nested(5, [1, 2])]).matches({"id": 1, "team_id": 2})
    for depth in (6, 3000):
        with pytest.raises(QueryError, match="dimensions"):
            parse(WHERE + "team_id = ANY($1)", [nested(depth, [1])])
    with pytest.raises(QueryError, match="dimensions"):
        parse(WHERE + "team_id = ANY('" + "{" * 3000 + "1" + "}" * 3000 + "')")


def test_deep_json_parameters_are_refused() -> None:
    deep: Any = {}
    for _ in range(5000):
        deep = {"a": deep}
    with pytest.raises(QueryError, match="nested deeper"):
        parse(WHERE + "$1::jsonb IS NULL", [deep])
    with pytest.raises(QueryError):
        parse(WHERE + "payload IS NOT DISTINCT FROM $1", [deep])


def test_deep_json_text_parameters_are_refused_like_json_values() -> None:
    # The same value sent as its JSON text (the wire form of json / jsonb) gets the same bound.
    text = "[" * 101 + "]" * 101
    with pytest.raises(QueryError, match="nested deeper than 100 levels"):
        parse(WHERE + "$1::jsonb IS NULL", [text])
    assert parse(WHERE + "$1::jsonb IS NULL", ["[" * 100 + "]" * 100]) is not None


# -- garbage in, QueryError out -----------------------------------------------------

TOKENS = [
    "(", ")", "[", "]", "NOT", "AND", "OR", "=", "<", ">=", "<>", "IN", "ANY", "ALL",
    "ARRAY", "$1", "$2", "$3", "'x'", "'{1,2}'", "'{{1}}'", "1", "-", "1.5", "1e99999",
    "::int8", "::int4[]", "::jsonb", "::interval", "::date", "::numeric", "::text[]",
    "team_id", "title", "tags", "payload", "labels", "score", "estimate", "due", "status",
    "IS", "NULL", "TRUE", "LIKE", "ILIKE", "'%a\\'", "BETWEEN", "lower(", "upper(", ",",
    "auth.sub", "auth.team_ids", "E'x'", "$$x$$", "--", "/*", "*/", ";", "SELECT", "CAST(",
    "AS", "int4", "9" * 30, "DISTINCT", "FROM", "issues", "'", '"', "U&'x'", "ESCAPE", "*",
    "9" * 5000, "now()", "''", "\\", "\x00", "😀",
]  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=20,
)
SQL = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(TOKENS), max_size=30).map(lambda t: WHERE + " ".join(t)),
    st.lists(st.sampled_from(TOKENS), max_size=30).map(" ".join),
)


def _only_query_errors(sql: str, params: list[Any], claims: dict[str, Any] | None) -> None:
    try:
        result = Shape.parse(
            sql,
            params=params,
            catalog=CATALOG,
            claims=claims,
            policies=POLICIES if claims is not None else None,
        )
    except QueryError as exc:
        str(exc)
        return
    result.matches({"id": 1, "team_id": 1, "title": "x", "tags": ["a"]})
    result.to_sql()
    assert result.key


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sql=SQL, params=st.lists(JSON, max_size=3))
def test_garbage_is_only_ever_a_query_error(sql: str, params: list[Any]) -> None:
    _only_query_errors(sql, params, None)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sql=SQL,
    params=st.lists(JSON, max_size=3),
    claims=st.dictionaries(st.sampled_from(["sub", "team_ids", "x"]), JSON, max_size=3),
)
def test_garbage_under_a_policy_is_only_ever_a_query_error(
    sql: str, params: list[Any], claims: dict[str, Any]
) -> None:
    _only_query_errors(sql, params, claims)


# -- deep json in the application's rows ------------------------------------------


def test_same_value_walks_deep_json_without_recursion() -> None:
    assert same_value(nested(20_000), nested(20_000)) is True
    assert same_value(nested(20_000, 1), nested(20_000, 1.0)) is False
    deep_a: Any = {"k": 1}
    deep_b: Any = {"k": True}
    for _ in range(20_000):
        deep_a, deep_b = {"k": deep_a}, {"k": deep_b}
    assert same_value(deep_a, deep_b) is False


def test_an_update_of_deep_json_is_prepared() -> None:
    old = {"id": 1, "payload": nested(20_000, 1)}
    new = {"id": 1, "payload": nested(20_000, 2)}
    prepared = PreparedChange(Change("public.issues", "update", None, new, old), ("id",))
    assert prepared.changed == frozenset({"payload"})


@pytest.mark.parametrize("type_name", ["json", "jsonb"])
def test_json_too_deep_for_python_is_one_values_error(type_name: str) -> None:
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(UnrepresentableValue, match="nested too deeply"):
        parse_text(type_name, text)
    assert parse_text(type_name, "[" * 50 + "]" * 50) == nested(49, [])


# -- the template cache under threads -------------------------------------------------


def test_template_cache_is_safe_under_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template_module, "_MAX_TEMPLATES", 3)
    monkeypatch.setattr(template_module, "_templates", {})
    errors: list[BaseException] = []
    columns = ["id", "title", "team_id", "score", "status", "due"]

    def work(offset: int) -> None:
        try:
            for i in range(300):
                selected = ", ".join(columns[: 1 + (i + offset) % len(columns)])
                parse(f"SELECT {selected} FROM issues WHERE team_id = {i % 7}")
        except BaseException as exc:
            errors.append(exc)

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    assert errors == []
    assert len(template_module._templates) <= 3


def test_from_json_arrays_nest_at_most_six_levels() -> None:
    assert from_json("int4[]", nested(5, [1])) == nested(5, [1])
    for depth in (6, 5000):
        with pytest.raises(ValueError, match="dimensions"):
            from_json("int4[]", nested(depth, [1]))


# -- values Postgres refuses ----------------------------------------------------------

NUL = "a\u0000b"
SURROGATE = "\ud800"
REFUSED = [
    ("title = $1", [NUL], "U+0000"),
    ("title = $1", [SURROGATE], "lone surrogate"),
    (f"title = '{NUL}'", [], "U+0000"),
    (f"title = '{SURROGATE}'", [], "lone surrogate"),
    ("title IN ('a', $1)", [SURROGATE], "lone surrogate"),
    ("title = ANY($1)", [["ok", NUL]], "U+0000"),
    (f"title = ANY('{{a,\"{NUL}\"}}')", [], "U+0000"),
    ("title LIKE $1", [f"%{NUL}%"], "U+0000"),
    ("lower(title) = $1", [SURROGATE], "lone surrogate"),
    ("estimate = 1e999999", [], "out of range for type numeric"),
    ("estimate = $1", ["1e999999"], "out of range for type numeric"),
    ("estimate = $1", ["1e-16384"], "out of range for type numeric"),
    ("estimate = -1e131072::numeric", [], "out of range for type numeric"),
    ("score = 1e999999", [], "out of range for type numeric"),
    ("$1::jsonb IS NULL", ['{"k": "\\u0000"}'], "U+0000"),
    ("$1::jsonb IS NULL", [{SURROGATE: 1}], "lone surrogate"),
    # Inside subqueries, nested ones included: the same checks on the same constants.
    ("team_id IN (SELECT id FROM teams WHERE org = $1)", [NUL], "U+0000"),
    (f"team_id IN (SELECT id FROM teams WHERE org = '{SURROGATE}')", [], "lone surrogate"),
    ("EXISTS (SELECT 1 FROM projects WHERE name LIKE $1)", [f"%{NUL}"], "U+0000"),
    ("team_id IN (SELECT team_id FROM projects WHERE team_id IN "
     "(SELECT team_id FROM app.members WHERE role = ANY($1)))", [["x", NUL]], "U+0000"),
    ("$1 IN (SELECT title FROM issues)", [SURROGATE], "lone surrogate"),
    ("EXISTS (SELECT 1 FROM issues WHERE estimate = 1e999999)", [], "out of range"),
    ("EXISTS (SELECT 1 FROM issues WHERE estimate = -1e131072::numeric)", [], "out of range"),
    ("EXISTS (SELECT 1 FROM issues WHERE $1::jsonb IS NULL)", ['{"\\u0000": 1}'], "U+0000"),
]


@pytest.mark.parametrize(("where", "params", "message"), REFUSED)
def test_values_postgres_refuses_are_query_errors(
    where: str, params: list[Any], message: str
) -> None:
    with pytest.raises(QueryError, match=re.escape(message)):
        parse(WHERE + where, params)


def test_values_at_the_edge_of_what_postgres_takes_are_taken() -> None:
    assert parse(WHERE + "estimate = $1", ["1e131071"]).params == (Decimal("1e131071"),)
    assert parse(WHERE + "estimate = $1", ["1e-16383"]).params == (Decimal("1e-16383"),)
    assert parse(WHERE + "estimate = $1", ["NaN"]).params[0].is_nan()
    assert parse(WHERE + "title = $1", ["\u00e9\U0001f600"]).params == ("\u00e9\U0001f600",)
    # json (unlike jsonb) holds any text, as in Postgres.
    assert parse(WHERE + "$1::json IS NULL", ['"\\u0000"']).params == ('"\\u0000"',)


def test_a_refused_claim_is_a_policy_error() -> None:
    with pytest.raises(PolicyError, match=re.escape("U+0000")):
        Shape.parse(
            "SELECT team_id, user_id FROM app.members", catalog=CATALOG,
            claims={"sub": NUL}, policies=POLICIES,
        )


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"sub": NUL, "team_ids": [1]}, "U+0000"),
        ({"sub": "u1", "team_ids": None}, "claim 'team_ids' is null"),
        ({"sub": None, "team_ids": [1]}, "claim 'sub' is null"),
    ],
)
def test_claims_inside_subqueries_are_checked_like_any_claim(
    claims: dict[str, Any], message: str
) -> None:
    """comments' rule reads auth.sub and auth.team_ids only inside its subqueries."""
    with pytest.raises(PolicyError, match=re.escape(message)):
        Shape.parse("SELECT id FROM comments", catalog=CATALOG, claims=claims, policies=POLICIES)


@pytest.mark.parametrize(("sub", "message"), [(NUL, "U+0000"), (None, "claim 'sub' is null")])
def test_a_client_inner_select_checks_the_claims_of_its_tables_policy(
    sub: Any, message: str
) -> None:
    """teams' (empty) policy reads no claim; app.members' rule, ANDed into the inner
    select, reads auth.sub."""
    policies = {"public.teams": Policy("public.teams"), "app.members": POLICIES["app.members"]}
    with pytest.raises(PolicyError, match=re.escape(message)):
        Shape.parse(
            "SELECT id FROM teams WHERE id IN (SELECT team_id FROM app.members)",
            catalog=CATALOG, claims={"sub": sub}, policies=policies,
        )
    shape = Shape.parse(
        "SELECT id FROM teams WHERE id IN (SELECT team_id FROM app.members)",
        catalog=CATALOG, claims={"sub": "u1"}, policies=policies,
    )
    assert shape.inner_sets[0].params == ("u1",)
