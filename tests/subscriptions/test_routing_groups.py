"""Routing by groups (`set_groups`): shapes whose condition is one `col IN (SELECT ...)`,
one verdict per group of shapes holding a value, checked against every shape evaluated."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pgsift.subscriptions import Shape
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.classify import PreparedChange, classify
from pgsift.subscriptions.events import Event
from pgsift.subscriptions.sets import BeforeView
from tests.subscriptions.test_routing_sets import MINE, Gateway, insert, issue, member, update

USERS = ("a", "b", "c", "d")
TEAMS = (None, 0, 1, 2, 3)
# Grouped (MINE, per user), and shapes that keep the other paths, on the same table.
SQLS = (MINE, MINE + " AND status = 'open'", "SELECT id FROM issues WHERE prio = 1 OR status = $1")

Step = tuple[Any, ...]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("member"), st.sampled_from(TEAMS[1:]), st.sampled_from(USERS)),
        st.tuples(
            st.just("issue"),
            st.integers(0, 5),
            st.sampled_from(TEAMS),
            st.sampled_from(("open", "done")),
            st.integers(0, 2),
        ),
        st.tuples(st.just("delete"), st.integers(0, 5)),
        st.tuples(st.just("toggle"), st.integers(0, len(SQLS) * len(USERS) - 1)),
        st.tuples(st.just("commit")),
    ),
    max_size=40,
)


def naive(shapes: dict[str, Shape], gateway: Gateway, change: Change, before: Any) -> Counter[str]:
    prepared = PreparedChange(change, ("id",))
    return Counter(
        repr((name, event))
        for name, shape in shapes.items()
        for event in classify(shape, prepared, gateway.registry, before)
    )


def routed(gateway: Gateway, change: Change, before: Any) -> Counter[str]:
    singles, reached = gateway.index.route_groups(change, before=before)
    events = [(listener, event) for listener, event in singles]
    for group in reached:
        events.extend((listener, event) for listener in group.listeners() for event in group.events)
    return Counter(repr(pair) for pair in events)


@settings(max_examples=150, deadline=None)
@given(
    steps=steps, memberships=st.sets(st.tuples(st.sampled_from(TEAMS[1:]), st.sampled_from(USERS)))
)
def test_grouped_routing_agrees_with_evaluating_every_shape(
    steps: list[Step], memberships: set[tuple[int, str]]
) -> None:
    gateway = Gateway(sorted(memberships))
    shapes: dict[str, Shape] = {}
    every = [(sql, user) for sql in SQLS for user in USERS]
    for n, (sql, user) in enumerate(every):
        if n % 2 == 0:
            shapes[f"s{n}"] = gateway.subscribe(sql, user, listener=f"s{n}")
    rows: dict[int, dict[str, Any]] = {}
    pending: list[Change] = []
    for step in [*steps, ("commit",)]:
        kind = step[0]
        if kind == "member":
            row = {"team_id": step[1], "user_id": step[2]}
            present = row in gateway.rows
            pending.append(member(step[1], step[2], "delete" if present else "insert"))
            (gateway.rows.remove if present else gateway.rows.append)(row)
        elif kind == "issue":
            new = issue(step[1], step[2], step[3], step[4])
            old = rows.get(step[1])
            pending.append(insert(new) if old is None else update(old, new))
            rows[step[1]] = new
        elif kind == "delete" and step[1] in rows:
            old = rows.pop(step[1])
            pending.append(Change("public.issues", "delete", {"id": step[1]}, None, old))
        elif kind == "toggle" and not pending:
            name = f"s{step[1]}"
            if name in shapes:
                gateway.index.remove(shapes.pop(name), name)
            else:
                sql, user = every[step[1]]
                shapes[name] = gateway.subscribe(sql, user, listener=name)
        elif kind == "commit":
            commit(gateway, shapes, pending)
            pending = []
    # Unsubscribing everybody leaves no group behind.
    for name, shape in shapes.items():
        gateway.index.remove(shape, name)
    assert gateway.index.stats() == type(gateway.index.stats())(0, 0, 0, 0, 0, 0, 0, 0)


def commit(gateway: Gateway, shapes: dict[str, Shape], changes: list[Change]) -> None:
    """One transaction, routed as the gateway does (`Gateway.transaction`), checked."""
    deltas = gateway.registry.apply(changes)
    before = BeforeView(gateway.registry, deltas)
    for delta in deltas:
        gateway.index.widen(delta)
    seen: set[int] = set()
    for change in changes:
        if change.table != "public.issues":
            continue
        row = change.new if change.new is not None else change.old
        assert row is not None
        old_sets = before if row["id"] not in seen else None
        seen.add(row["id"])
        got = routed(gateway, change, old_sets)
        assert got == naive(shapes, gateway, change, old_sets), change
    for delta in deltas:
        gateway.index.narrow(delta)


def test_one_verdict_per_group_whatever_its_size() -> None:
    gateway = Gateway([(1, f"u{n}") for n in range(50)] + [(2, f"u{n}") for n in range(25)])
    for n in range(50):
        gateway.subscribe(MINE, f"u{n}")
    # A title edit in team 1: one update for its group of 50.
    change = update(issue(7, 1, "open"), issue(7, 1, "done"))
    singles, reached = gateway.index.route_groups(change)
    assert singles == [] and len(reached) == 1
    (group,) = reached
    assert group.events == (Event("update", {"id": 7}, {"id": 7, "status": "done"}),)
    assert sorted(group.listeners()) == sorted(f"u{n}" for n in range(50))
    # Moving it to team 2: the 25 members of both get an update, the others a delete.
    change = update(issue(7, 1, "open"), issue(7, 2, "done"))
    _, reached = gateway.index.route_groups(change)
    # (A verdict may reach nobody: the team-2 members not in team 1, here none.)
    verdicts = {
        group.events[0].op: sorted(group.listeners()) for group in reached if any(group.listeners())
    }
    assert verdicts == {
        "delete": sorted(f"u{n}" for n in range(25, 50)),
        "update": sorted(f"u{n}" for n in range(25)),
    }
    assert gateway.index.stats().groups == 2
