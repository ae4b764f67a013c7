"""Classifying one change for one shape: insert, update, delete, move-in, move-out.

The rules, from the old and the new row of a change:

* in -> in: `update`, unless neither the row's membership, its key, nor any
  of the shape's selected columns changed (then nothing: the subscriber's copy
  is already right). "Changed" is exact: `1.0 -> 1.00`, `0.0 -> -0.0` and
  `'a' -> 'a '` are changes, because the client would see them.
* out -> in: `insert` (a move-in); in -> out: `delete` of the old key (a
  move-out); out -> out: nothing. An UPDATE that changes the primary key and
  stays in the shape is a `delete` of the old key followed by an `insert` of the
  new row, so a client keyed by primary key never keeps the old key around.
* Without the old row (no REPLICA IDENTITY FULL: `old` is None or holds only the
  key columns) membership before the change is unknown, so the conservative
  answer is used: a new row that matches is sent as `insert` (clients apply by
  key, so this is an upsert); one that does not match is sent as `delete` of
  the key to every shape of the table, since any of them may have held it (a
  changed key: the old key's delete goes to every shape, before the insert). The
  same holds for a DELETE without the old row, and for tables whose columns are
  all key columns. Correct, but it costs one event per shape of the table:
  `pgsift doctor` tells which tables need FULL.
* TRUNCATE is `truncate` for every shape of the table.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from pgsift.subscriptions.change import Change, Row
from pgsift.subscriptions.events import TRUNCATE, Event
from pgsift.subscriptions.inner import InnerSet
from pgsift.subscriptions.ir import Expr
from pgsift.subscriptions.sets import SetProvider


class RoutableShape(Protocol):
    """What routing needs of a shape (`pgsift.subscriptions.Shape` provides it)."""

    @property
    def table(self) -> str: ...

    @property
    def key(self) -> str: ...

    @property
    def columns(self) -> tuple[str, ...]: ...

    @property
    def primary_key(self) -> tuple[str, ...]: ...

    @property
    def index_terms(self) -> tuple[tuple[str, frozenset[Any]], ...]: ...

    @property
    def normalized(self) -> str: ...

    @property
    def params(self) -> tuple[Any, ...]: ...

    @property
    def consts(self) -> tuple[Any, ...]: ...

    @property
    def where(self) -> Expr | None: ...

    @property
    def inner_sets(self) -> tuple[InnerSet, ...]: ...

    @property
    def set_terms(self) -> tuple[tuple[str, str], ...]: ...

    def matches(self, row: Row, sets: SetProvider | None = None) -> bool: ...

    def project(self, row: Row) -> Row: ...


def same_value(a: Any, b: Any) -> bool:
    """Whether two column values look the same to a client (stricter than `==`).

    json values and arrays are walked with an explicit stack: a jsonb value may
    nest thousands of levels deep, which neither recursion nor `==` survives.
    """
    kind = type(a)
    if kind in _EXACT and kind is type(b):
        # The common case (keys, text, integers) without the walk: `==` is exact there.
        return bool(a == b)
    pending = [(a, b)]
    while pending:
        a, b = pending.pop()
        if a is b:
            continue
        if type(a) is not type(b):
            return False
        if isinstance(a, list):
            if len(a) != len(b):
                return False
            pending.extend(zip(a, b, strict=True))
        elif isinstance(a, dict):
            if a.keys() != b.keys():
                return False
            pending.extend((v, b[k]) for k, v in a.items())
        elif not _same_scalar(a, b):
            return False
    return True


# Types whose `==` between two values of the same type is already "looks the same".
_EXACT = frozenset({str, int, bool, bytes, type(None)})


def _same_scalar(a: Any, b: Any) -> bool:
    """`same_value` for two non-container values of the same type."""
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return bool(a == b and math.copysign(1.0, a) == math.copysign(1.0, b))
    if isinstance(a, Decimal):
        return bool(a.as_tuple() == b.as_tuple())
    if isinstance(a, datetime):
        return bool(a == b and a.utcoffset() == b.utcoffset())
    return bool(a == b)


def _same_key(a: Row | None, b: Row | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.keys() == b.keys() and all(same_value(v, b[k]) for k, v in a.items())


class PreparedChange:
    """A change with what every shape of its table shares computed once.

    `primary_key` is the table's primary key (the same for all its shapes).
    """

    __slots__ = (
        "_delete",
        "_events",
        "change",
        "changed",
        "key_changed",
        "new_key",
        "old_key",
        "old_known",
    )

    def __init__(
        self, change: Change, primary_key: tuple[str, ...], *, old_known: bool = True
    ) -> None:
        self.change = change
        old, new = change.old, change.new
        # An old image holding only key columns (REPLICA IDENTITY DEFAULT with a
        # changed key) says nothing about membership.
        self.old_known = old_known and old is not None and (
            len(old) > len(primary_key) or any(c not in primary_key for c in old)
        )
        self.new_key = None if new is None else {c: new[c] for c in primary_key}
        if old is not None and all(c in old for c in primary_key):
            self.old_key: Row | None = {c: old[c] for c in primary_key}
        elif change.op == "update":
            # pgoutput sends no old key when the key did not change.
            self.old_key = self.new_key
        else:
            self.old_key = change.key
        # Whether an UPDATE moved the row to another primary key.
        self.key_changed = change.op == "update" and not _same_key(self.old_key, self.new_key)
        # Columns whose value an UPDATE changed; None when unknown.
        self.changed: frozenset[str] | None = None
        if change.op == "update" and self.old_known and old is not None and new is not None:
            self.changed = frozenset(
                c for c, v in new.items() if c not in old or not same_value(old[c], v)
            )
        self._delete: Event | None = None
        self._events: dict[tuple[str, tuple[str, ...]], Event] = {}

    def delete_event(self) -> Event:
        """The delete of the old key, one object shared by every shape."""
        if self._delete is None:
            self._delete = Event("delete", self.old_key, None)
        return self._delete

    def with_row(self, op: Literal["insert", "update"], shape: RoutableShape) -> Event:
        """An insert / update of the new row through `shape`, one object shared by every
        shape selecting the same columns (events are read, never changed)."""
        memo = (op, shape.columns)
        event = self._events.get(memo)
        if event is None:
            new = self.change.new
            assert new is not None  # only asked for changes with a new row
            event = self._events[memo] = Event(op, self.new_key, shape.project(new))
        return event


def classify(
    shape: RoutableShape,
    prepared: PreparedChange,
    sets: SetProvider | None = None,
    before: SetProvider | None = None,
    *,
    assume_held: bool = False,
) -> tuple[Event, ...]:
    """The events one change means for one shape, in the order to apply them.

    A shape with inner sets judges the new row with `sets` and the old row with
    `before` (the sets before the change's transaction; `sets` by default).
    `assume_held`: the subscriber may hold the old row whatever it looks like
    (it is in the region of a move under way): judged as without the old row.
    """
    old_sets = sets if before is None else before
    if assume_held and prepared.old_known:
        prepared = PreparedChange(prepared.change, shape.primary_key, old_known=False)
    change = prepared.change
    op = change.op
    if op == "truncate":
        return (TRUNCATE,)
    new, old = change.new, change.old
    if op == "insert":
        if new is not None and shape.matches(new, sets):
            return (prepared.with_row("insert", shape),)
        return ()
    if op == "delete":
        if prepared.old_known and old is not None and not shape.matches(old, old_sets):
            return ()
        return (prepared.delete_event(),)
    if new is None:
        return ()
    in_new = shape.matches(new, sets)
    if not prepared.old_known or old is None:
        if in_new:
            insert = prepared.with_row("insert", shape)
            return (prepared.delete_event(), insert) if prepared.key_changed else (insert,)
        return (prepared.delete_event(),)
    return verdict_events(shape, prepared, shape.matches(old, old_sets), in_new)


def verdict_events(
    shape: RoutableShape, prepared: PreparedChange, in_old: bool, in_new: bool
) -> tuple[Event, ...]:
    """The events of a change whose old row is known (or an INSERT), from whether its
    old and its new row are in the shape: shared by `classify` and grouped routing."""
    op = prepared.change.op
    if op == "insert":
        return (prepared.with_row("insert", shape),) if in_new else ()
    if op == "delete":
        return (prepared.delete_event(),) if in_old else ()
    if in_old and in_new:
        if prepared.key_changed:
            return (prepared.delete_event(), prepared.with_row("insert", shape))
        changed = prepared.changed
        if changed is not None and changed.isdisjoint(shape.columns):
            return ()
        return (prepared.with_row("update", shape),)
    if in_new:
        return (prepared.with_row("insert", shape),)
    if in_old:
        return (prepared.delete_event(),)
    return ()
