"""IN (SELECT ...) and EXISTS: three-valued verdicts, inner sets, policies on inner selects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from pgsift.subscriptions import Catalog, PolicyError, QueryError, Shape, policies_from_config
from pgsift.subscriptions.sets import SetError, SetState

CATALOG = Catalog.from_dict(
    {
        "items": {"columns": {"id": "int8", "project_id": "int8", "owner": "text",
                              "tag": "text"}, "primary_key": ["id"]},
        "projects": {"columns": {"id": "int8", "org": "text", "secret": "text",
                                 "archived": "bool"}, "primary_key": ["id"]},
        "grants": {"columns": {"project_id": "int8", "user_id": "text", "tag": "text"},
                   "primary_key": ["project_id", "user_id"]},
    }
)  # fmt: skip
POLICIES = policies_from_config(
    {
        "items": {"row": "project_id IN (SELECT project_id FROM grants WHERE user_id = auth.sub)"},
        "projects": {"columns": ["id", "org", "archived"], "row": "org = auth.org"},
    },
    catalog=CATALOG,
)


@dataclass(frozen=True)
class FrozenSet:
    """A set state held as plain values."""

    members: frozenset[Any] = frozenset()
    partial: frozenset[tuple[Any, ...]] = frozenset()
    rows: int = 0

    @property
    def empty(self) -> bool:
        return self.rows == 0


class Sets:
    """A provider over plain states, by key."""

    def __init__(self, states: dict[str, SetState]) -> None:
        self.states = states

    def state(self, key: str) -> SetState:
        return self.states[key]


def values(*members: Any, partial: tuple[tuple[Any, ...], ...] = ()) -> FrozenSet:
    rows = len(members) + len(partial)
    return FrozenSet(frozenset(members), frozenset(partial), rows)


def verdict(shape: Shape, row: dict[str, Any], *states: SetState) -> bool:
    sets = Sets({inner.key: state for inner, state in zip(shape.inner_sets, states, strict=True)})
    return shape.matches(row, sets)


def parse(sql: str, *params: Any, **options: Any) -> Shape:
    return Shape.parse(sql, list(params), catalog=CATALOG, **options)


def test_in_select_is_three_valued() -> None:
    s = parse("SELECT id FROM items WHERE NOT (project_id IN (SELECT id FROM projects))")
    row, null = {"id": 1, "project_id": 7}, {"id": 2, "project_id": None}
    # Empty set: IN is false, even for NULL, so NOT IN is true.
    assert verdict(s, row, values()) and verdict(s, null, values())
    # A NULL in the set makes a miss NULL: NOT IN matches nothing.
    assert not verdict(s, row, values(1, partial=((None,),)))
    assert not verdict(s, null, values(1))
    assert verdict(s, row, values(1, 2))
    assert not verdict(s, row, values(7))


def test_row_in_select_compares_like_rows() -> None:
    s = parse(
        "SELECT id FROM items WHERE (project_id, owner) IN (SELECT project_id, user_id FROM grants)"
    )
    n = parse(
        "SELECT id FROM items WHERE (project_id, owner) NOT IN "
        "(SELECT project_id, user_id FROM grants)"
    )
    row = {"id": 1, "project_id": 7, "owner": "a"}
    assert verdict(s, row, values((7, "a")))
    assert not verdict(s, row, values((7, "b"))) and verdict(n, row, values((7, "b")))
    # (7, NULL) may equal (7, 'a'): NULL, so neither IN nor NOT IN matches.
    partial = values((8, "z"), partial=((7, None),))
    assert not verdict(s, row, partial) and not verdict(n, row, partial)
    # (8, NULL) differs from (7, 'a') in a known component: NOT IN holds.
    assert verdict(n, row, values(partial=((8, None),)))
    # A NULL in the row: never equal; NULL where no known component differs.
    half = {"id": 2, "project_id": 7, "owner": None}
    assert not verdict(n, half, values((7, "q"))) and verdict(n, half, values((8, "q")))


def test_exists_reads_only_emptiness() -> None:
    s = parse("SELECT id FROM items WHERE NOT EXISTS (SELECT 1 FROM projects WHERE archived)")
    assert verdict(s, {"id": 1}, values()) and not verdict(s, {"id": 1}, values(()))


def test_matches_needs_the_sets() -> None:
    s = parse("SELECT id FROM items WHERE project_id IN (SELECT id FROM projects)")
    with pytest.raises(SetError, match="pass sets="):
        s.matches({"id": 1, "project_id": 1})
    assert parse("SELECT id FROM items").matches({"id": 1})


def test_same_subquery_is_one_inner_set() -> None:
    inner = "SELECT project_id FROM grants WHERE user_id = $1"
    a = parse(f"SELECT id FROM items WHERE project_id IN ({inner})", "u1")
    b = parse(f"SELECT id, tag FROM items WHERE tag = 'x' AND project_id IN ({inner})", "u1")
    c = parse(f"SELECT id FROM items WHERE project_id IN ({inner})", "u2")
    d = parse("SELECT id FROM items WHERE project_id IN (SELECT project_id FROM grants "
              "WHERE user_id = 'u1')")  # fmt: skip
    assert a.inner_sets[0].key == b.inner_sets[0].key == d.inner_sets[0].key
    assert a.inner_sets[0].key != c.inner_sets[0].key
    assert a.inner_sets[0].to_sql() == (
        'SELECT "project_id", "user_id" FROM "public"."grants" WHERE "user_id" = %s::text',
        ["u1"],
    )
    assert a.key != c.key and a.key == d.key


def test_keying_is_part_of_the_set() -> None:
    # owner (text) and tag compared with a float column would key differently: here
    # one inner select compared with an int8 and with a numeric-typed constant.
    a = parse("SELECT id FROM items WHERE project_id IN (SELECT project_id FROM grants)")
    b = parse("SELECT id FROM items WHERE 1.5 IN (SELECT project_id FROM grants)")
    assert a.inner_sets[0].key != b.inner_sets[0].key


def test_nesting_depth_is_a_parse_option() -> None:
    sql = (
        "SELECT id FROM items WHERE project_id IN (SELECT project_id FROM grants WHERE "
        "project_id IN (SELECT id FROM projects WHERE archived))"
    )
    s = parse(sql)
    (outer,) = s.inner_sets
    (nested,) = outer.dependencies
    assert outer.walk() == (nested, outer)
    with pytest.raises(QueryError, match=r"nested too deeply \(at most 1 levels\)"):
        parse(sql, max_subquery_depth=1)


def test_param_in_select_and_outside_shares_its_type() -> None:
    s = parse("SELECT id FROM items WHERE owner = $1 OR project_id IN "
              "(SELECT project_id FROM grants WHERE user_id = $1)", "u1")  # fmt: skip
    assert s.params == ("u1", "u1")
    assert s.to_sql()[0].count("%s::text") == 2


# -- policies --------------------------------------------------------------------------


def secure(sql: str, *params: Any, claims: dict[str, Any] | None = None) -> Shape:
    return Shape.parse(
        sql, list(params), catalog=CATALOG, policies=POLICIES,
        claims=claims if claims is not None else {"sub": "u1", "org": "acme"},
    )  # fmt: skip


def test_inner_select_may_not_name_hidden_columns() -> None:
    # Which items arrive would tell the client which projects have secret 'x'.
    with pytest.raises(PolicyError, match=r"'secret' of public\.projects is not allowed"):
        secure("SELECT id FROM items WHERE project_id IN "
               "(SELECT id FROM projects WHERE secret = 'x')")  # fmt: skip
    with pytest.raises(PolicyError, match=r"'secret' of public\.projects is not allowed"):
        secure("SELECT id FROM items WHERE owner IN (SELECT secret FROM projects)")
    with pytest.raises(PolicyError, match=r"no policy allows reading public\.grants"):
        secure("SELECT id FROM items WHERE project_id IN (SELECT project_id FROM grants)")


def test_inner_select_reads_under_the_inner_policy() -> None:
    s = secure("SELECT id FROM items WHERE project_id IN (SELECT id FROM projects WHERE archived)")
    projects, grants = s.inner_sets
    # The client's select keeps to the rows of projects its policy shows (org = 'acme').
    assert projects.matches({"id": 1, "org": "acme", "archived": True})
    assert not projects.matches({"id": 2, "org": "other", "archived": True})
    assert projects.params == ("acme",)
    # The items policy's own select is the operator's: it reads grants without a policy.
    assert grants.matches({"project_id": 1, "user_id": "u1"})
    assert "auth" not in s.normalized and "acme" in s.params
    row = {"id": 9, "project_id": 1}
    assert verdict(s, row, values(1), values(1))
    assert not verdict(s, row, values(1), values(2))  # no grant: the policy hides it
    assert not verdict(s, row, values(2), values(1))


def test_claims_are_part_of_the_inner_set() -> None:
    a = secure("SELECT id FROM items", claims={"sub": "u1", "org": "acme"})
    b = secure("SELECT id FROM items", claims={"sub": "u2", "org": "acme"})
    assert a.inner_sets[0].key != b.inner_sets[0].key
    with pytest.raises(PolicyError, match="missing claim 'sub'"):
        secure("SELECT id FROM items", claims={"org": "acme"})


def test_bound_policy_with_a_subquery() -> None:
    bound = POLICIES["public.items"].bind({"sub": "u1"}, catalog=CATALOG)
    (grants,) = bound.inner_sets
    assert bound.to_sql_where() == (
        '("project_id" IN (SELECT "project_id" FROM "public"."grants" WHERE "user_id" = %s::text))',
        ["u1"],
    )
    sets = Sets({grants.key: values(3)})
    assert bound.matches({"id": 1, "project_id": 3}, sets)
    assert not bound.matches({"id": 1, "project_id": 4}, sets)
    with pytest.raises(SetError):
        bound.matches({"id": 1, "project_id": 3})
