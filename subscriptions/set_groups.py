"""Shapes grouped by the inner-set values they hold: `MemberGroups`, `Reached`.

Thousands of subscriptions may differ only in their inner set: `SELECT id,
title FROM issues WHERE team_id IN (SELECT team_id FROM memberships WHERE
user_id = $1)`, one per user. When the whole condition is one `col IN (SELECT
...)`, a row is in such a shape exactly when its keyed `col` value is a member
of the shape's set, and every shape of that structure (same `normalized` SQL:
same table, columns and condition) turns a change into the same events. So per
structure (a *family*) the index keeps, for each value, the group of shapes
whose set holds it, moved as the sets change (`apply`). A change looks up the
group of its old and of its new value and gets one verdict per group
(`Reached`): its cost does not grow with the shapes a group holds.

A `Reached` is a view of the groups: the caller iterates it before the
index changes (`RoutingIndex.route` does so under its lock). The groups
follow the sets' current states, so they judge the old row with the
sets after its transaction: the caller (`RoutingIndex`) uses them only while
no delta is widened (between `widen` and `narrow` it evaluates shape by shape).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pgsift.subscriptions.change import Row
from pgsift.subscriptions.classify import PreparedChange, RoutableShape, verdict_events
from pgsift.subscriptions.compile import Fn
from pgsift.subscriptions.events import Event
from pgsift.subscriptions.ir import Col, InSet
from pgsift.subscriptions.set_index import SetColumn
from pgsift.subscriptions.template import member_test


class _Listened(Protocol):
    """A grouped entry: its listeners (`routing._Entry`)."""

    @property
    def listeners(self) -> dict[Any, None]: ...


E = TypeVar("E", bound=_Listened)


class MemberGroup(Generic[E]):
    """The shapes of one family whose inner set holds one value."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[str, E] = {}  # shape key -> entry


# Not frozen: one is made per group a change reaches, and a frozen dataclass's
# __init__ costs about three times more; it is read, never changed.
@dataclass(slots=True)
class Reached(Generic[E]):
    """One verdict for a group: `events` for every shape of `group` that is also in
    `within` (when given) and not in `without` (when given)."""

    group: MemberGroup[E]
    events: tuple[Event, ...]
    within: MemberGroup[E] | None = None
    without: MemberGroup[E] | None = None

    def entries(self) -> Iterator[E]:
        within, without = self.within, self.without
        for shape_key, entry in self.group.entries.items():
            if within is not None and shape_key not in within.entries:
                continue
            if without is not None and shape_key in without.entries:
                continue
            yield entry

    def listeners(self) -> Iterator[Any]:
        for entry in self.entries():
            yield from entry.listeners


class _Family(Generic[E]):
    """The grouped shapes of one structure."""

    __slots__ = ("by_set", "column", "groups", "held", "keyed", "shape")

    def __init__(self, shape: RoutableShape, keyed: Fn) -> None:
        self.shape = shape  # any shape of the family: they share columns and key
        self.keyed = keyed
        where = shape.where
        assert isinstance(where, InSet) and isinstance(where.args[0], Col)  # member_test
        self.column = where.args[0].name
        self.by_set: dict[str, dict[str, E]] = {}  # set key -> shape key -> entry
        self.groups: dict[Hashable, MemberGroup[E]] = {}  # keyed value -> group
        # shape key -> the values it is grouped under (to unfile without its set)
        self.held: dict[str, dict[Hashable, None]] = {}

    def group(self, row: Row | None) -> MemberGroup[E] | None:
        """The group of the shapes whose set holds `row`'s keyed value."""
        if row is None:
            return None
        value = self.keyed(row, self.shape.consts)
        try:
            return self.groups.get(value)
        except TypeError:
            return None  # unhashable: no set member (hashable) can equal it

    def move(self, shape_key: str, entry: E, values: Iterable[Any], *, holds: bool) -> None:
        groups = self.groups
        held = self.held.setdefault(shape_key, {})
        for value in values:
            group = groups.get(value)
            if holds:
                if group is None:
                    group = groups[value] = MemberGroup()
                group.entries[shape_key] = entry
                held[value] = None
            elif group is not None:
                group.entries.pop(shape_key, None)
                held.pop(value, None)
                if not group.entries:
                    del groups[value]


def grouped_set(shape: RoutableShape) -> str | None:
    """The key of the set a shape can be grouped by: its whole condition is one
    `col IN (SELECT ...)` (None otherwise)."""
    test = member_test(shape.where)
    if test is None:
        return None
    return shape.inner_sets[test[1]].key


class MemberGroups(Generic[E]):
    """Grouped shapes of one table by family, and their groups by value."""

    __slots__ = ("families", "readers")

    def __init__(self) -> None:
        self.families: dict[str, _Family[E]] = {}  # shape.normalized -> family
        self.readers: dict[str, dict[str, _Family[E]]] = {}  # set key -> families

    def __bool__(self) -> bool:
        return bool(self.families)

    def groups(self) -> int:
        return sum(len(family.groups) for family in self.families.values())

    def distinct_values(self, columns: Mapping[str, SetColumn[Any]]) -> int:
        """Distinct (column, value) grouped by here or filed in `columns` (statistics)."""
        out: dict[str, set[Hashable]] = {}
        for family in self.families.values():
            out.setdefault(family.column, set()).update(family.groups)
        for column, filed in columns.items():
            out.setdefault(column, set()).update(filed.by_value)
        return sum(len(values) for values in out.values())

    def file(self, shape: RoutableShape, entry: E, set_key: str, members: Iterable[Any]) -> None:
        """Group a shape (`grouped_set` gave `set_key`) under its set's `members`."""
        family = self.families.get(shape.normalized)
        if family is None:
            test = member_test(shape.where)
            assert test is not None  # grouped_set checked it
            family = self.families[shape.normalized] = _Family(shape, test[0])
        family.by_set.setdefault(set_key, {})[shape.key] = entry
        self.readers.setdefault(set_key, {})[shape.normalized] = family
        family.move(shape.key, entry, members, holds=True)

    def unfile(self, shape: RoutableShape, set_key: str) -> None:
        family = self.families[shape.normalized]
        shapes = family.by_set[set_key]
        entry = shapes.pop(shape.key)
        if not shapes:
            del family.by_set[set_key]
            families = self.readers[set_key]
            del families[shape.normalized]
            if not families:
                del self.readers[set_key]
        # The set may be gone already (evicted): its values are the shape's own.
        family.move(shape.key, entry, list(family.held[shape.key]), holds=False)
        del family.held[shape.key]
        if not family.by_set:
            del self.families[shape.normalized]

    def apply(self, set_key: str, values: Iterable[Any], *, holds: bool) -> None:
        """Values entered (`holds`) or left set `set_key`: move its shapes' groups."""
        families = self.readers.get(set_key)
        if not families:
            return
        values = tuple(values)
        for family in families.values():
            for shape_key, entry in family.by_set[set_key].items():
                family.move(shape_key, entry, values, holds=holds)

    def entries(self, change_rows: Iterable[Row | None]) -> Iterator[E]:
        """Every grouped shape whose set holds a value of one of the rows."""
        rows = tuple(change_rows)
        for family in self.families.values():
            seen: dict[str, None] = {}
            for row in rows:
                group = family.group(row)
                if group is not None:
                    for shape_key, entry in group.entries.items():
                        if shape_key not in seen:
                            seen[shape_key] = None
                            yield entry

    def reach(self, prepared: PreparedChange, table_key: tuple[str, ...]) -> list[Reached[E]]:
        """The verdicts of a change whose old row is known, per group.

        `table_key` is the table's primary key, which `prepared` was made with.
        """
        change = prepared.change
        out: list[Reached[E]] = []
        for family in self.families.values():
            shape, own = family.shape, prepared
            if shape.primary_key != table_key:
                own = PreparedChange(change, shape.primary_key)
            before = family.group(change.old) if change.op != "insert" else None
            after = family.group(change.new) if change.op != "delete" else None
            if before is not None and before is after:
                _add(out, before, verdict_events(shape, own, True, True))
                continue
            if before is not None:
                events = verdict_events(shape, own, True, False)
                _add(out, before, events, without=after)
                if after is not None:
                    both = verdict_events(shape, own, True, True)
                    _add(out, before, both, within=after)
            if after is not None:
                _add(out, after, verdict_events(shape, own, False, True), without=before)
        return out


def _add(
    out: list[Reached[E]],
    group: MemberGroup[E],
    events: tuple[Event, ...],
    *,
    within: MemberGroup[E] | None = None,
    without: MemberGroup[E] | None = None,
) -> None:
    if events:
        out.append(Reached(group, events, within, without))
