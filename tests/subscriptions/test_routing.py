"""RoutingIndex: classification of changes per shape, identical shapes, concurrency."""

from __future__ import annotations

import threading
from collections.abc import Hashable
from decimal import Decimal
from typing import Any

import pytest

from pgsift.subscriptions.buckets import NAN_KEY, bucket_key
from pgsift.subscriptions.change import Change, Row
from pgsift.subscriptions.classify import RoutableShape, same_value
from pgsift.subscriptions.events import Event
from pgsift.subscriptions.routing import RoutingIndex, RoutingStats
from pgsift.subscriptions.sets import SetProvider
from tests.subscriptions.routing_shapes import ISSUES, Cond, Spec, build

SELECTED = ("id", "title", "status")


def shape(*conds: Cond, columns: tuple[str, ...] = SELECTED, table: str = ISSUES) -> RoutableShape:
    return build(Spec(columns, conds, table))


def team(k: int) -> Cond:
    return Cond("team_id", "=", k)


def statuses(*values: str) -> Cond:
    return Cond("status", "in", values)


def issue(id: int = 1, **values: Any) -> Row:
    row: Row = {
        "id": id,
        "team_id": 1,
        "status": "open",
        "title": "fix it",
        "priority": 1,
        "score": 0.5,
        "amount": Decimal("1.5"),
    }
    row.update(values)
    return row


def insert(new: Row) -> Change:
    return Change(ISSUES, "insert", {"id": new["id"]}, new, None)


def update(old: Row | None, new: Row) -> Change:
    return Change(ISSUES, "update", {"id": new["id"]}, new, old)


def delete(old: Row, *, full: bool = True) -> Change:
    return Change(ISSUES, "delete", {"id": old["id"]}, None, old if full else None)


def project(row: Row, columns: tuple[str, ...] = SELECTED) -> Row:
    return {c: row[c] for c in columns}


def routed(index: RoutingIndex[str], change: Change) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = {}
    for listener, event in index.route(change):
        out.setdefault(listener, []).append(event)
    return out


def ins_event(row: Row) -> Event:
    return Event("insert", {"id": row["id"]}, project(row))


def upd_event(row: Row) -> Event:
    return Event("update", {"id": row["id"]}, project(row))


def del_event(id: int) -> Event:
    return Event("delete", {"id": id}, None)


@pytest.fixture
def index() -> RoutingIndex[str]:
    index: RoutingIndex[str] = RoutingIndex()
    index.add(shape(team(1), statuses("open", "todo")), "open1")
    index.add(shape(team(1), statuses("done")), "done1")
    index.add(shape(team(2)), "team2")
    index.add(shape(Cond("title", "ilike", "%urgent%")), "urgent")
    return index


def test_insert_reaches_matching_shapes_only(index: RoutingIndex[str]) -> None:
    row = issue(title="urgent: fix it")
    assert routed(index, insert(row)) == {"open1": [ins_event(row)], "urgent": [ins_event(row)]}
    assert routed(index, insert(issue(team_id=3))) == {}


def test_update_inside_shape_is_update(index: RoutingIndex[str]) -> None:
    old, new = issue(title="a"), issue(title="b")
    assert routed(index, update(old, new)) == {"open1": [upd_event(new)]}


def test_update_of_unselected_columns_only_is_suppressed(index: RoutingIndex[str]) -> None:
    assert routed(index, update(issue(priority=1), issue(priority=2))) == {}


def test_update_exact_change_of_selected_value_is_sent() -> None:
    index: RoutingIndex[str] = RoutingIndex()
    columns = ("id", "amount", "score")
    index.add(shape(team(1), columns=columns), "l")
    new = issue(amount=Decimal("1.50"), score=-0.0)
    events = routed(index, update(issue(amount=Decimal("1.5"), score=0.0), new))
    assert events == {"l": [Event("update", {"id": 1}, project(new, columns))]}


def test_move_in_move_out_and_out_to_out(index: RoutingIndex[str]) -> None:
    todo, done, wontfix = issue(status="todo"), issue(status="done"), issue(status="wontfix")
    assert routed(index, update(todo, done)) == {
        "open1": [del_event(1)],
        "done1": [ins_event(done)],
    }
    assert routed(index, update(done, wontfix)) == {"done1": [del_event(1)]}
    assert routed(index, update(wontfix, issue(status="cancelled"))) == {}


def test_update_of_indexed_column_looks_up_old_and_new_buckets(index: RoutingIndex[str]) -> None:
    old, new = issue(team_id=1), issue(team_id=2)
    assert routed(index, update(old, new)) == {"open1": [del_event(1)], "team2": [ins_event(new)]}


def test_primary_key_change(index: RoutingIndex[str]) -> None:
    old, new = issue(id=1), issue(id=2)
    assert routed(index, update(old, new)) == {"open1": [del_event(1), ins_event(new)]}
    moved = issue(id=3, team_id=2)
    assert routed(index, update(new, moved)) == {
        "open1": [del_event(2)],
        "team2": [ins_event(moved)],
    }


def test_delete_reaches_shapes_that_held_the_row(index: RoutingIndex[str]) -> None:
    assert routed(index, delete(issue(team_id=2, id=9))) == {"team2": [del_event(9)]}


def test_update_without_old_row_is_conservative(index: RoutingIndex[str]) -> None:
    new = issue(status="todo")
    # Membership before is unknown: matching shapes get an upsert, all others
    # a delete of the key in case they held the row.
    assert routed(index, update(None, new)) == {
        "open1": [ins_event(new)],
        "done1": [del_event(1)],
        "team2": [del_event(1)],
        "urgent": [del_event(1)],
    }


def test_update_with_key_only_old_row_and_key_change(index: RoutingIndex[str]) -> None:
    new = issue(id=5)
    assert routed(index, update({"id": 4}, new)) == {
        "open1": [del_event(4), ins_event(new)],
        "done1": [del_event(4)],
        "team2": [del_event(4)],
        "urgent": [del_event(4)],
    }


def test_old_row_with_null_values_is_still_a_full_row(index: RoutingIndex[str]) -> None:
    old, new = issue(team_id=None, status=None), issue(team_id=2)
    assert routed(index, update(old, new)) == {"team2": [ins_event(new)]}
    assert routed(index, update(new, old)) == {"team2": [del_event(1)]}


def test_delete_without_old_row_reaches_every_shape_of_the_table(index: RoutingIndex[str]) -> None:
    index.add(shape(Cond("id", "=", 1), table="public.teams", columns=("id", "name")), "teams")
    out = routed(index, delete(issue(id=7), full=False))
    assert out == {name: [del_event(7)] for name in ("open1", "done1", "team2", "urgent")}


def test_truncate_reaches_every_shape_of_its_table(index: RoutingIndex[str]) -> None:
    index.add(shape(Cond("id", "=", 1), table="public.teams", columns=("id", "name")), "teams")
    out = routed(index, Change(ISSUES, "truncate", None, None, None))
    truncate = [Event("truncate", None, None)]
    assert out == {name: truncate for name in ("open1", "done1", "team2", "urgent")}
    assert routed(index, Change("public.other", "truncate", None, None, None)) == {}


def test_identical_shapes_are_one_entry_with_many_listeners() -> None:
    index: RoutingIndex[str] = RoutingIndex()
    for listener in ("a", "b", "c", "a"):
        index.add(shape(team(1), statuses("open")), listener)
    stats = index.stats()
    assert (stats.shapes, stats.listeners) == (1, 3)
    row = issue()
    assert routed(index, insert(row)) == {name: [ins_event(row)] for name in "abc"}
    assert index.remove(shape(team(1), statuses("open")), "b")
    assert not index.remove(shape(team(1), statuses("open")), "b")
    assert routed(index, insert(row)) == {name: [ins_event(row)] for name in "ac"}
    index.remove(shape(team(1), statuses("open")), "a")
    index.remove(shape(team(1), statuses("open")), "c")
    assert index.stats() == RoutingStats(0, 0, 0, 0, 0, 0, 0)
    assert routed(index, insert(row)) == {}


def test_shapes_are_filed_under_their_most_selective_term() -> None:
    index: RoutingIndex[str] = RoutingIndex()
    for k in range(50):
        index.add(shape(statuses("open", "todo"), team(k)), f"l{k}")
    # 50 team buckets (one per team) plus the two status buckets of the first shape.
    stats = index.stats()
    assert (stats.indexed, stats.scanned) == (50, 0)
    assert stats.buckets <= 52


def test_shape_with_no_index_term_sits_on_the_scan_list() -> None:
    index: RoutingIndex[str] = RoutingIndex()
    index.add(shape(Cond("priority", ">", 3)), "p")
    assert index.stats().scanned == 1
    row = issue(priority=4)
    assert routed(index, insert(row)) == {"p": [ins_event(row)]}


class _Gated:
    """A shape whose `matches` waits for a gate, to hold a route call open."""

    def __init__(self, inner: RoutableShape, entered: threading.Event, gate: threading.Event):
        self.inner, self.entered, self.gate = inner, entered, gate
        self.table, self.key, self.columns = inner.table, inner.key, inner.columns
        self.primary_key, self.index_terms = inner.primary_key, inner.index_terms
        self.normalized, self.params = inner.normalized, inner.params
        self.consts, self.where = inner.consts, inner.where
        self.inner_sets, self.set_terms = inner.inner_sets, inner.set_terms

    def matches(self, row: Row, sets: SetProvider | None = None) -> bool:
        self.entered.set()
        assert self.gate.wait(10)
        return self.inner.matches(row, sets)

    def project(self, row: Row) -> Row:
        return self.inner.project(row)


def test_listener_added_during_route_sees_the_next_change_only() -> None:
    index: RoutingIndex[str] = RoutingIndex()
    entered, gate = threading.Event(), threading.Event()
    index.add(_Gated(shape(team(1)), entered, gate), "first")
    results: list[dict[str, list[Event]]] = []
    row = issue()
    router = threading.Thread(target=lambda: results.append(routed(index, insert(row))))
    router.start()
    assert entered.wait(10)
    adder = threading.Thread(target=index.add, args=(shape(team(1)), "late"))
    adder.start()
    adder.join(0.05)
    gate.set()
    router.join(10)
    adder.join(10)
    assert results == [{"first": [ins_event(row)]}]
    assert routed(index, insert(row)) == {"first": [ins_event(row)], "late": [ins_event(row)]}


def test_shapes_added_and_removed_between_changes() -> None:
    index: RoutingIndex[str] = RoutingIndex()
    row = issue()
    index.add(shape(team(1)), "a")
    assert routed(index, insert(row)) == {"a": [ins_event(row)]}
    index.add(shape(team(1), statuses("open")), "b")
    index.remove(shape(team(1)), "a")
    assert routed(index, update(row, issue(title="x"))) == {
        "b": [Event("update", {"id": 1}, project(issue(title="x")))]
    }
    index.remove(shape(team(1), statuses("open")), "b")
    assert routed(index, delete(row)) == {}


def test_concurrent_add_remove_and_route_stay_consistent() -> None:
    index: RoutingIndex[str] = RoutingIndex()
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        try:
            n = 0
            while not stop.is_set():
                n += 1
                index.add(shape(team(n % 7), statuses("open")), f"c{n % 50}")
                index.remove(shape(team((n * 3) % 7), statuses("open")), f"c{(n * 5) % 50}")
        except BaseException as error:
            errors.append(error)
            raise

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for i in range(300):
            old, new = issue(team_id=i % 7), issue(team_id=(i + 1) % 7, title=str(i))
            for listener, event in index.route(update(old, new)):
                assert listener.startswith("c")
                assert event.op in ("insert", "delete", "update")
    finally:
        stop.set()
        thread.join(10)
    assert errors == []


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, Decimal("1.0")),
        (1.0, Decimal("1.00")),
        (0.0, -0.0),
        (float("nan"), float("nan")),
        (Decimal("NaN"), Decimal("NaN")),
        ("ab  ", "ab"),
        ([1, None, "x"], [1.0, None, "x"]),
        ({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2.0}]}),
    ],
)
def test_bucket_keys_equal_where_postgres_finds_values_equal(a: Any, b: Any) -> None:
    assert bucket_key(a) == bucket_key(b)
    assert hash(bucket_key(a)) == hash(bucket_key(b))


def test_nan_has_its_own_bucket_key() -> None:
    assert bucket_key(float("nan")) is NAN_KEY
    assert bucket_key(float("inf")) != NAN_KEY
    keys: set[Hashable] = {bucket_key("1"), bucket_key(1)}
    assert len(keys) == 2


def test_nan_rows_find_nan_shapes() -> None:
    index: RoutingIndex[str] = RoutingIndex()
    index.add(shape(Cond("score", "=", float("nan")), columns=("id", "score")), "nan")
    row = issue(score=float("nan"))
    assert [listener for listener, _ in index.route(insert(row))] == ["nan"]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (1, 1, True),
        (1, 1.0, False),
        (Decimal("1.0"), Decimal("1.00"), False),
        (0.0, -0.0, False),
        (float("nan"), float("nan"), True),
        ([1, [2.0]], [1, [2.0]], True),
        ({"a": 1}, {"a": 1.0}, False),
        ("a", "a ", False),
    ],
)
def test_same_value_is_what_a_client_would_see(a: Any, b: Any, same: bool) -> None:
    assert same_value(a, b) is same
