"""Routing through inner sets: `col IN (SELECT ...)` filed like `col = ANY(set)`."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pgsift.subscriptions import Catalog, Shape
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.classify import PreparedChange, classify
from pgsift.subscriptions.events import Event
from pgsift.subscriptions.registry import SetRegistry
from pgsift.subscriptions.routing import RoutingIndex
from pgsift.subscriptions.sets import BeforeView, SetError

CATALOG = Catalog.from_dict(
    {
        "issues": {"columns": {"id": "int8", "team_id": "int4", "status": "text",
                               "prio": "int4"}, "primary_key": ["id"]},
        "members": {"columns": {"team_id": "int4", "user_id": "text"},
                    "primary_key": ["team_id", "user_id"]},
    }
)  # fmt: skip
MINE = (
    "SELECT id, status FROM issues WHERE team_id IN "
    "(SELECT team_id FROM members WHERE user_id = $1)"
)


def member(team: int, user: str, op: str = "insert") -> Change:
    row = {"team_id": team, "user_id": user}
    if op == "insert":
        return Change("public.members", "insert", None, row, None)
    return Change("public.members", "delete", row, None, None)


def issue(id_: int, team: int | None, status: str = "open", prio: int = 0) -> dict[str, Any]:
    return {"id": id_, "team_id": team, "status": status, "prio": prio}


def insert(row: dict[str, Any]) -> Change:
    return Change("public.issues", "insert", None, row, None)


def update(old: dict[str, Any], new: dict[str, Any]) -> Change:
    return Change("public.issues", "update", None, new, old)


class Gateway:
    """A registry and an index, driven as the I/O layer will drive them."""

    def __init__(self, memberships: list[tuple[int, str]]) -> None:
        self.registry = SetRegistry()
        self.index: RoutingIndex[str] = RoutingIndex(self.registry)
        self.rows = [{"team_id": t, "user_id": u} for t, u in memberships]

    def subscribe(self, sql: str, user: str, listener: str | None = None) -> Shape:
        shape = Shape.parse(sql, [user], catalog=CATALOG)
        for inner in self.registry.acquire(shape.inner_sets):
            matching = [r for r in self.rows if inner.matches(r)]
            assert self.registry.load(inner, matching)
        self.index.add(shape, listener or user)
        return shape

    def transaction(self, *changes: Change) -> dict[str, list[Event]]:
        deltas = self.registry.apply(changes)
        before = BeforeView(self.registry, deltas)
        for delta in deltas:
            self.index.widen(delta)
        out: dict[str, list[Event]] = {}
        for change in changes:
            if change.table == "public.issues":
                for listener, event in self.index.route(change, before=before):
                    out.setdefault(listener, []).append(event)
        for delta in deltas:
            self.index.narrow(delta)
        return out


def test_shapes_are_filed_under_their_set_and_routed_by_its_values() -> None:
    gateway = Gateway([(1, "a"), (2, "a"), (2, "b")])
    gateway.subscribe(MINE, "a")
    gateway.subscribe(MINE, "b")
    stats = gateway.index.stats()
    assert (stats.shapes, stats.set_filed, stats.scanned) == (2, 2, 0)
    row = issue(1, 2)
    routed = gateway.transaction(insert(row))
    assert routed == {name: [Event("insert", {"id": 1}, {"id": 1, "status": "open"})]
                      for name in "ab"}  # fmt: skip
    assert set(gateway.transaction(insert(issue(2, 1)))) == {"a"}
    assert gateway.transaction(insert(issue(3, 3))) == {}


def test_shapes_sharing_a_set_share_its_values() -> None:
    gateway = Gateway([(t, "a") for t in range(5)])
    for n in range(300):
        gateway.subscribe(MINE + " AND prio >= 0", "a", listener=f"l{n}")
        gateway.subscribe(MINE, "a", listener=f"m{n}")
    stats = gateway.index.stats()
    # Two shapes (equal ones are one entry), one set: its five values filed once.
    assert (stats.shapes, stats.listeners, stats.buckets) == (2, 600, 5)


def test_a_delta_refiles_the_set_and_old_rows_see_the_set_before() -> None:
    gateway = Gateway([(1, "a")])
    gateway.subscribe(MINE, "a")
    # One transaction: a leaves team 1 and joins team 2; an issue moves from 1 to 2 and
    # another is updated in team 1. The moved issue was held (team 1 before) and still
    # matches (team 2 after): an update. The issue left in team 1 is a delete.
    moved, stays = issue(1, 1), issue(2, 1)
    routed = gateway.transaction(
        member(1, "a", "delete"),
        member(2, "a"),
        update(moved, issue(1, 2, "doing")),
        update(stays, issue(2, 1, "done")),
    )
    assert routed == {
        "a": [
            Event("update", {"id": 1}, {"id": 1, "status": "doing"}),
            Event("delete", {"id": 2}, None),
        ]
    }
    # Afterwards team 1 is gone from the index and team 2 is in.
    assert gateway.index.stats().buckets == 1
    assert gateway.transaction(insert(issue(3, 1))) == {}
    assert set(gateway.transaction(insert(issue(4, 2)))) == {"a"}


def test_routing_through_sets_agrees_with_evaluating_every_shape() -> None:
    rng = random.Random(7)
    users = ["a", "b", "c", "d"]
    gateway = Gateway([(rng.randrange(4), rng.choice(users)) for _ in range(6)])
    sqls = [MINE, MINE + " AND status = 'open'", MINE + " OR prio = 1",
            "SELECT id, status FROM issues WHERE team_id NOT IN "
            "(SELECT team_id FROM members WHERE user_id = $1)"]  # fmt: skip
    shapes = {}
    for n, (sql, user) in enumerate((s, u) for s in sqls for u in users):
        shapes[f"s{n}"] = gateway.subscribe(sql, user, listener=f"s{n}")
    rows: dict[int, dict[str, Any]] = {}
    for step in range(300):
        changes: list[Change] = []
        for _ in range(rng.randrange(1, 4)):
            if rng.random() < 0.4:
                team, user = rng.randrange(4), rng.choice(users)
                present = {"team_id": team, "user_id": user} in gateway.rows
                changes.append(member(team, user, "delete" if present else "insert"))
                if present:
                    gateway.rows.remove({"team_id": team, "user_id": user})
                else:
                    gateway.rows.append({"team_id": team, "user_id": user})
            else:
                key = rng.randrange(8)
                new = issue(key, rng.choice([None, 0, 1, 2, 3]), rng.choice(["open", "done"]),
                            rng.randrange(3))  # fmt: skip
                old = rows.get(key)
                changes.append(insert(new) if old is None else update(old, new))
                rows[key] = new
        deltas = gateway.registry.apply(changes)
        before = BeforeView(gateway.registry, deltas)
        for delta in deltas:
            gateway.index.widen(delta)
        for change in (c for c in changes if c.table == "public.issues"):
            routed: dict[str, list[Event]] = {}
            for listener, event in gateway.index.route(change, before=before):
                routed.setdefault(listener, []).append(event)
            prepared = PreparedChange(change, ("id",))
            expected = {
                name: list(events)
                for name, shape in shapes.items()
                if (events := classify(shape, prepared, gateway.registry, before))
            }
            assert routed == expected, (step, change)
        for delta in deltas:
            gateway.index.narrow(delta)


def test_moves_name_only_the_readers_of_the_set() -> None:
    gateway = Gateway([(1, "a"), (2, "b")])
    gateway.subscribe(MINE, "a")
    gateway.subscribe(MINE, "b")
    (delta,) = gateway.registry.apply([member(3, "a")])
    ((move, listeners),) = gateway.index.moves(delta)
    assert listeners == ("a",) and move.inserts_only
    assert move.params == ([3], "a")  # the region's values, then the shape's constants


def test_shapes_need_their_sets_materialized_and_leave_with_them() -> None:
    registry = SetRegistry()
    shape = Shape.parse(MINE, ["a"], catalog=CATALOG)
    with pytest.raises(SetError, match="RoutingIndex"):
        RoutingIndex[str]().add(shape, "a")
    index: RoutingIndex[str] = RoutingIndex(registry)
    with pytest.raises(SetError, match="not materialized"):
        index.add(shape, "a")
    (inner,) = registry.acquire(shape.inner_sets)
    registry.load(inner, [{"team_id": 1, "user_id": "a"}])
    index.add(shape, "a")
    index.add(shape, "b")
    evicted = index.evict_set(inner.key)
    assert [(s.key, listeners) for s, listeners in evicted] == [(shape.key, ("a", "b"))]
    assert index.stats().shapes == 0 and index.stats().buckets == 0


def test_rows_in_a_moving_region_are_judged_as_held() -> None:
    gateway = Gateway([(1, "a")])
    shape = gateway.subscribe(MINE, "a")
    (delta,) = gateway.registry.apply([member(1, "a", "delete")])
    ((move, _),) = gateway.index.moves(delta)
    # Team 1 left: until the move is applied the client may still hold issue 1, which a
    # later transaction moves to team 3. Judged exactly (old row out of the set now), that
    # is nothing; in the region it is judged as held: a delete.
    old, new = issue(1, 1), issue(1, 3)
    assert move.in_region(old) and not move.in_region(new)
    prepared = PreparedChange(update(old, new), ("id",))
    assert classify(shape, prepared, gateway.registry) == ()
    held = classify(shape, prepared, gateway.registry, assume_held=True)
    assert held == (Event("delete", {"id": 1}, None),)
