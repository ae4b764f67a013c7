"""Materialized inner sets: counted values, net deltas per transaction, the registry's bound."""

from __future__ import annotations

from typing import Any

from pgsift.subscriptions import Catalog, Shape
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.inner import InnerSet
from pgsift.subscriptions.materialized import MaterializedSet
from pgsift.subscriptions.registry import SetRegistry
from pgsift.subscriptions.sets import BeforeView

CATALOG = Catalog.from_dict(
    {
        "issues": {"columns": {"id": "int8", "team_id": "int4", "title": "text"},
                   "primary_key": ["id"]},
        "members": {"columns": {"team_id": "int4", "user_id": "text", "role": "text"},
                    "primary_key": ["team_id", "user_id"]},
        "users": {"columns": {"id": "text", "active": "bool"}, "primary_key": ["id"]},
    }
)  # fmt: skip
TEAMS = "SELECT id FROM issues WHERE team_id IN (SELECT team_id FROM members WHERE role = 'dev')"


def inner(sql: str = TEAMS) -> InnerSet:
    return Shape.parse(sql, catalog=CATALOG).inner_sets[0]


def member(team: int | None, user: str, role: str = "dev") -> dict[str, Any]:
    return {"team_id": team, "user_id": user, "role": role}


def insert(row: dict[str, Any]) -> Change:
    return Change("public.members", "insert", None, row, None)


def delete(row: dict[str, Any]) -> Change:
    key = {"team_id": row["team_id"], "user_id": row["user_id"]}
    return Change("public.members", "delete", key, None, None)


def update(old: dict[str, Any], new: dict[str, Any]) -> Change:
    # Without REPLICA IDENTITY FULL: only the old key, and only when it changed.
    key = {"team_id": old["team_id"], "user_id": old["user_id"]}
    changed = key != {"team_id": new["team_id"], "user_id": new["user_id"]}
    return Change("public.members", "update", None, new, key if changed else None)


def test_values_are_counted_so_duplicates_leave_with_their_last_row() -> None:
    state = MaterializedSet(inner())
    first = state.apply([insert(member(1, "a")), insert(member(1, "b"))])
    assert (first.added, first.raw_added, first.was_empty, first.is_empty) == (
        frozenset({1}), ((1,),), True, False,
    )  # fmt: skip
    assert not state.apply([delete(member(1, "a"))])  # team 1 still has b
    last = state.apply([delete(member(1, "b"))])
    assert (last.removed, last.raw_removed, last.is_empty) == (frozenset({1}), ((1,),), True)


def test_a_transaction_gives_its_net_delta() -> None:
    state = MaterializedSet(inner())
    state.apply([insert(member(1, "a"))])
    delta = state.apply(
        [
            update(member(1, "a"), member(2, "a")),  # 1 leaves, 2 enters
            insert(member(3, "c")),
            delete(member(3, "c")),  # in and out: no change
            update(member(2, "a"), member(2, "a", role="ops")),  # and 2 leaves again
        ]
    )
    assert (delta.added, delta.removed) == (frozenset(), frozenset({1}))
    assert state.empty and not state.members


def test_nulls_are_partial_elements() -> None:
    state = MaterializedSet(inner())
    delta = state.apply([insert(member(None, "a")), insert(member(4, "b"))])
    assert delta.partial_added == frozenset({(None,)}) and delta.added == frozenset({4})
    assert set(state.partial) == {(None,)}
    assert state.apply([delete(member(None, "a"))]).partial_removed == frozenset({(None,)})


def test_truncate_and_rows_outside_the_select() -> None:
    state = MaterializedSet(inner())
    state.load([member(1, "a"), member(2, "b")])
    assert not state.apply([insert(member(3, "c", role="ops"))])
    delta = state.apply([Change("public.members", "truncate", None, None, None)])
    assert delta.removed == frozenset({1, 2}) and delta.is_empty


def test_before_view_undoes_a_delta() -> None:
    registry = SetRegistry()
    s = Shape.parse(TEAMS, catalog=CATALOG)
    (needed,) = registry.acquire(s.inner_sets)
    assert registry.load(needed, [member(1, "a"), member(2, "b")])
    deltas = registry.apply([delete(member(1, "a")), insert(member(5, "e"))])
    before = BeforeView(registry, deltas)
    row1, row5 = {"id": 1, "team_id": 1}, {"id": 5, "team_id": 5}
    assert s.matches(row1, before) and not s.matches(row1, registry)
    assert not s.matches(row5, before) and s.matches(row5, registry)
    assert sorted(before.state(needed.key).members) == [1, 2]


def test_nested_sets_apply_deepest_first() -> None:
    sql = (
        "SELECT id FROM issues WHERE team_id IN (SELECT team_id FROM members "
        "WHERE user_id IN (SELECT id FROM users WHERE active))"
    )
    s = Shape.parse(sql, catalog=CATALOG)
    registry = SetRegistry()
    users, teams = registry.acquire(s.inner_sets)
    assert users.table == "public.users" and teams.table == "public.members"
    assert not registry.load(teams, [member(1, "a")])  # users are not loaded yet
    assert registry.load(users, [{"id": "a", "active": True}])
    assert not registry.load(teams, [member(1, "a")])  # nor the members' mirror
    (mirror,) = registry.needed_mirrors(s.inner_sets)
    assert registry.load_mirror(mirror, [member(1, "a")])
    assert registry.load(teams, [member(1, "a")])
    # One transaction activates b and adds b to team 2: team 2 enters, judged with the
    # users as they are after the transaction.
    deltas = registry.apply(
        [
            insert(member(2, "b")),
            Change("public.users", "insert", None, {"id": "b", "active": True}, None),
        ]
    )
    assert [d.key for d in deltas] == [users.key, teams.key]
    assert deltas[1].added == frozenset({2})
    assert registry.dependents(users.key) == (teams,)


def test_registry_shares_releases_and_bounds() -> None:
    registry = SetRegistry(max_bytes=2000)
    a = Shape.parse(TEAMS, catalog=CATALOG)
    b = Shape.parse(TEAMS + " AND title = 'x'", catalog=CATALOG)
    (needed,) = registry.acquire(a.inner_sets)
    assert registry.acquire(b.inner_sets) == (needed,)  # shared, still to be loaded
    assert registry.load(needed, [member(1, "a")])
    assert registry.acquire(b.inner_sets) == ()
    registry.release(a.inner_sets)
    assert registry.materialized(needed.key)
    registry.release(b.inner_sets)
    assert registry.materialized(needed.key)
    registry.release(b.inner_sets)
    assert registry.stats().sets == 0 and registry.approx_bytes == 0
    # Past the bound: a set is not loaded, or dropped when it grows past it.
    (needed,) = registry.acquire(a.inner_sets)
    assert not registry.load(needed, [member(i, "a") for i in range(100)])
    assert registry.load(needed, [member(1, "a")])
    used = registry.approx_bytes
    assert 0 < used <= 2000
    registry.apply([insert(member(i, "a")) for i in range(2, 100)])
    assert not registry.materialized(needed.key) and registry.over_bound == [needed.key]
    assert registry.approx_bytes == 0


def test_a_change_reaches_only_the_sets_it_touches() -> None:
    registry = SetRegistry()
    sql = "SELECT id FROM issues WHERE team_id IN (SELECT team_id FROM members WHERE user_id = $1)"
    keys = {}
    for n in range(500):
        (inner,) = registry.acquire(Shape.parse(sql, [f"u{n}"], catalog=CATALOG).inner_sets)
        registry.load(inner, [member(1, f"u{n}")])
        keys[f"u{n}"] = inner.key
    filing = registry._filing
    assert list(filing.candidates(insert(member(2, "u7")), None)) == [keys["u7"]]
    # u7's membership becomes u8's: the holder of the old row is found by its key alone
    # (no old image), the set the new row enters by its value.
    moved = update(member(1, "u7"), member(3, "u8"))
    assert set(filing.candidates(moved, (1, "u7"))) == {keys["u7"], keys["u8"]}
    deltas = {d.key: d for d in registry.apply([moved])}
    assert deltas[keys["u7"]].removed == frozenset({1})
    assert deltas[keys["u8"]].added == frozenset({3})
    assert set(filing.candidates(Change("public.members", "delete", {"team_id": 3,
               "user_id": "u8"}, None, None), (3, "u8"))) == {keys["u8"]}  # fmt: skip
