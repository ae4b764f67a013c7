"""RoutingIndex against the oracle: naive classification of every registered shape.

Random shapes are added and removed between random changes (rich in NULLs, NaN,
-0.0, numerics of several scales, key changes, old rows full, missing or
key-only); every `route` must equal what evaluating every shape gives.
"""

from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from pgsift.subscriptions.change import Change, Row
from pgsift.subscriptions.classify import RoutableShape
from pgsift.subscriptions.events import Event
from pgsift.subscriptions.routing import RoutingIndex
from tests.subscriptions.routing_shapes import COLUMNS, ISSUES, Cond, Spec, build

TEAMS = [1, 2, 3, 4]
STATUSES = ["open", "todo", "done", "wontfix"]
VALUES: dict[str, list[Any]] = {
    "team_id": [*TEAMS, None],
    "status": [*STATUSES, None],
    "title": ["fix it", "URGENT fix", "an urgent one", "İstanbul Urgent", "", None, "x" * 600],
    "priority": [0, 1, 3, 5, None],
    "score": [0.0, -0.0, float("nan"), 1.5, None],
    "amount": [Decimal("1.5"), Decimal("1.50"), Decimal("-2"), Decimal("NaN"), None],
    "kind": ["bug", "feature", "chore", None],
    "code": ["ab", "ab ", "abc", None],
    "flagged": [True, False, None],
}


def random_spec(rng: random.Random) -> Spec:
    conds: list[Cond] = []
    if rng.random() < 0.6:
        conds.append(Cond("team_id", "=", rng.choice(TEAMS)))
    elif rng.random() < 0.3:
        conds.append(Cond("team_id", "in", tuple(rng.sample(TEAMS, rng.randint(1, 3)))))
    if rng.random() < 0.5:
        conds.append(Cond("status", "in", tuple(rng.sample(STATUSES, rng.randint(1, 3)))))
    if rng.random() < 0.3:
        pattern = rng.choice(["%urgent%", "%Urg%", "%ix%", "fix%", "%_%", "%x%"])
        conds.append(Cond("title", rng.choice(["like", "ilike"]), pattern))
    if rng.random() < 0.15:
        kind = rng.choice([Cond("kind", "=", "bug"), Cond("kind", "in", ("bug", "chore"))])
        conds.append(kind)
    if rng.random() < 0.1:
        conds.append(Cond("code", "=", "ab"))
    if rng.random() < 0.1:
        conds.append(Cond("flagged", "true"))
    if rng.random() < 0.2:
        conds.append(Cond("priority", ">", rng.choice([0, 2])))
    if rng.random() < 0.1:
        conds.append(Cond("score", "=", rng.choice([float("nan"), 0.0])))
    if rng.random() < 0.1:
        conds.append(Cond("amount", "=", Decimal("1.5")))
    rng.shuffle(conds)
    others = [c for c in COLUMNS if c != "id"]
    columns = ("id", *rng.sample(others, rng.randint(0, len(others))))
    return Spec(columns, tuple(conds))


def random_row(rng: random.Random, id: int) -> Row:
    return {"id": id, **{c: rng.choice(v) for c, v in VALUES.items()}}


def random_change(rng: random.Random) -> Change:
    id = rng.randint(1, 3)
    old = random_row(rng, id)
    op = rng.choices(["insert", "update", "delete", "truncate"], [2, 6, 2, 0.2])[0]
    if op == "truncate":
        return Change(ISSUES, "truncate", None, None, None)
    if op == "insert":
        return Change(ISSUES, "insert", {"id": id}, old, None)
    identity = rng.choices(["full", "none", "key"], [6, 1, 1])[0]
    old_image = {"full": old, "none": None, "key": {"id": id}}[identity]
    if op == "delete":
        return Change(ISSUES, "delete", {"id": id}, None, old_image)
    new = dict(old)
    for column in rng.sample(list(VALUES), rng.randint(0, 2)):
        new[column] = rng.choice(VALUES[column])
    if rng.random() < 0.15:
        new["id"] = id + 10
        if identity == "none":
            old_image = {"id": id}
    return Change(ISSUES, "update", {"id": new["id"]}, new, old_image)


def naive(shape: RoutableShape, change: Change) -> list[Event]:
    """The oracle: the classification rules, applied to one shape."""
    if change.table != shape.table:
        return []
    if change.op == "truncate":
        return [Event("truncate", None, None)]
    pk = shape.primary_key

    def key(row: Row) -> Row:
        return {c: row[c] for c in pk}

    old, new = change.old, change.new
    old_full = old is not None and bool(set(old) - set(pk))
    if change.op == "insert":
        assert new is not None
        return [Event("insert", key(new), shape.project(new))] if shape.matches(new) else []
    if change.op == "delete":
        if old_full:
            assert old is not None
            return [Event("delete", key(old), None)] if shape.matches(old) else []
        return [Event("delete", change.key, None)]
    assert new is not None
    old_key = key(old) if old is not None else key(new)
    deleted = Event("delete", old_key, None)
    inserted = Event("insert", key(new), shape.project(new))
    key_changed = repr(old_key) != repr(key(new))
    if not old_full:
        if shape.matches(new):
            return [deleted, inserted] if key_changed else [inserted]
        return [deleted]
    assert old is not None
    was_in, is_in = shape.matches(old), shape.matches(new)
    if was_in and is_in:
        if key_changed:
            return [deleted, inserted]
        if repr(shape.project(old)) == repr(shape.project(new)):
            return []
        return [Event("update", key(new), shape.project(new))]
    if is_in:
        return [inserted]
    return [deleted] if was_in else []


def _normalized(pairs: list[tuple[str, Event]]) -> Counter[str]:
    return Counter(repr((listener, event.op, event.key, event.row)) for listener, event in pairs)


@pytest.mark.parametrize("seed", range(40))
def test_route_equals_naive_classification(seed: int) -> None:
    rng = random.Random(seed)
    specs = [random_spec(rng) for _ in range(25)]
    # Keyed by shape.key: two specs may well normalize to one shape.
    shapes = {build(spec).key: build(spec) for spec in specs}
    registered: dict[str, set[str]] = {}
    index: RoutingIndex[str] = RoutingIndex()
    for _ in range(250):
        action = rng.random()
        if action < 0.3:
            # A shape built again is equal to, not the same object as, the first.
            shape, listener = build(rng.choice(specs)), f"l{rng.randint(0, 9)}"
            index.add(shape, listener)
            registered.setdefault(shape.key, set()).add(listener)
        elif action < 0.4 and registered:
            key = rng.choice(sorted(registered))
            listener = rng.choice(sorted(registered[key]))
            assert index.remove(shapes[key], listener)
            registered[key].discard(listener)
            if not registered[key]:
                del registered[key]
        else:
            change = random_change(rng)
            expected = [
                (listener, event)
                for key, listeners in registered.items()
                for event in naive(shapes[key], change)
                for listener in listeners
            ]
            assert _normalized(index.route(change)) == _normalized(expected), change
