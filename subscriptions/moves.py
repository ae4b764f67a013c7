"""What an inner-set delta means for a statement that reads the set: a `Move`.

When values enter or leave an inner set, the rows of a shape (or of a nested
set's select) whose verdict can change are exactly those whose argument of the
`IN` is one of those values: the *region*. `plan_move` gives the query that
re-reads the region at a snapshot, with the whole condition, so the answer is
Postgres's own:

* `inserts_only`: the region's rows can only enter: values only entered the
  set and it stands under AND / OR alone, where a value entering can only turn
  a verdict to TRUE. The query returns the region rows in the statement, to
  insert (upserts: a row held for another reason, as with `a IN S OR b = 1`,
  is sent again unchanged).
* otherwise the query returns every region row with a flag (`IN_SHAPE`): rows
  with it are sent as INSERT (an upsert: some may be held already, as with
  `a IN S OR b = 1`), rows without it as DELETE of their key (a no-op for a
  client that does not hold it). So `a IN S OR b = 1` losing `v` deletes the
  rows with `a = v` and `b <> 1`, and only those.
* `refetch`: every row may have moved and there is no region to re-read: an
  `EXISTS` whose set became (non-)empty, a set compared with a constant whose
  verdict flipped, or, under NOT / IS, a NULL entering or leaving the set (it
  turns every miss between FALSE and NULL) or any change of a set compared
  with a row of columns. The subscription is read again whole; rare by
  construction, and never wrong.

Under AND / OR alone a NULL element, or an empty set, never makes a row match
(three-valued logic is monotone: an unknown that gives TRUE gives TRUE either
way), so only values that entered or left form the region there. Under NOT /
IS the set becoming (non-)empty also moves the rows whose argument is NULL
(`NULL NOT IN ()` is true, `NULL NOT IN (1)` is NULL): they join the region.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from pgsift.subscriptions.compile import compile_expr, compile_keyed
from pgsift.subscriptions.domains import key_function
from pgsift.subscriptions.inner import InnerSet
from pgsift.subscriptions.ir import Col, Expr, InSet, Logic, Slot, children
from pgsift.subscriptions.render import (
    is_zoned,
    psycopg_placeholder,
    quote_identifier,
    quote_table,
    quote_type,
    render,
    render_keyed,
)
from pgsift.subscriptions.sets import BeforeView, SetDelta, SetProvider

# The flag column of a move's rows: the row is in the statement at the snapshot.
IN_SHAPE = "pgsift.in_shape"


class Reader(Protocol):
    """A statement that reads inner sets: a `Shape`, or an `InnerSet` (nested select)."""

    @property
    def table(self) -> str: ...

    @property
    def where(self) -> Expr | None: ...

    @property
    def params(self) -> tuple[Any, ...]: ...

    @property
    def consts(self) -> tuple[Any, ...]: ...

    @property
    def inner_sets(self) -> tuple[InnerSet, ...]: ...


@dataclass(frozen=True, slots=True)
class Move:
    """The rows one inner-set delta may move in or out of one statement.

    `sql` / `params` (psycopg 3) read them at a snapshot: with `inserts_only`
    the rows to insert; otherwise every region row and its `IN_SHAPE` flag.
    `refetch`: no region; the statement must be read again whole.
    `in_region(row)` tells whether a row (an old image in the feed) is in the
    region: while the move is under way its holders treat such a row as held.
    """

    key: str
    refetch: bool
    inserts_only: bool = False
    sql: str = ""
    params: tuple[Any, ...] = ()
    region: Callable[[Mapping[str, Any]], bool] | None = field(default=None, compare=False)

    def in_region(self, row: Mapping[str, Any]) -> bool:
        """Whether `row` is in the region (every row, for a refetch)."""
        return self.region is None or self.region(row)


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One `InSet` of a statement and where it stands in the condition."""

    node: InSet
    monotone: bool  # only AND / OR above it


def occurrences(where: Expr | None) -> tuple[Occurrence, ...]:
    """The statement's `InSet` nodes (not those inside their selects), in tree order."""
    if where is None:
        return ()
    found: list[Occurrence] = []
    pending: list[tuple[Expr, bool]] = [(where, True)]
    while pending:
        node, monotone = pending.pop()
        if isinstance(node, InSet):
            found.append(Occurrence(node, monotone))
        below = monotone and isinstance(node, Logic)
        pending.extend((child, below) for child in reversed(children(node)))
    return tuple(found)


def plan_move(
    statement: Reader, columns: Sequence[str], delta: SetDelta, sets: SetProvider
) -> Move | None:
    """The move `delta` means for `statement` (reading `columns`); None when no row can move.

    `sets` holds the states after the delta (for a set compared with a constant).
    """
    found = [
        o
        for o in occurrences(statement.where)
        if statement.inner_sets[o.node.position].key == delta.key
    ]
    if not found:
        return None
    values_changed = bool(delta.added or delta.removed)
    emptied = delta.was_empty != delta.is_empty
    partial_changed = bool(delta.partial_added or delta.partial_removed)
    inserts_only = not delta.removed
    regions: list[tuple[InSet, bool]] = []
    for occurrence in found:
        node = occurrence.node
        if not node.args:  # EXISTS: only emptiness counts
            if emptied:
                return Move(delta.key, refetch=True)
            continue
        if not any(_reads_row(arg) for arg in node.args):
            if _flips(statement, node, delta, sets):
                return Move(delta.key, refetch=True)
            continue
        nulls = False
        if not occurrence.monotone:
            # Under NOT / IS, FALSE and NULL differ: a NULL element turns every miss
            # NULL, and a row with a NULL component may come to equal a new value
            # (every row); emptiness turns `NULL IN (...)` between FALSE and NULL.
            if partial_changed or (len(node.args) > 1 and (values_changed or emptied)):
                return Move(delta.key, refetch=True)
            inserts_only = False
            nulls = emptied
        if values_changed or nulls:
            regions.append((node, nulls))
    if not regions:
        return None
    return _query(statement, columns, delta, regions, inserts_only)


def _reads_row(expr: Expr) -> bool:
    return isinstance(expr, Col) or any(_reads_row(child) for child in children(expr))


def _flips(statement: Reader, node: InSet, delta: SetDelta, sets: SetProvider) -> bool:
    """Whether `constant IN (SELECT ...)` has another verdict after `delta`."""
    verdict = compile_expr(node)
    before = BeforeView(sets, [delta])
    padding = [None] * node.position
    after_states = (*padding, sets.state(delta.key))
    before_states = (*padding, before.state(delta.key))
    consts = statement.consts
    return bool(verdict({}, (*consts, after_states)) != verdict({}, (*consts, before_states)))


class _Collected:
    """A psycopg placeholder that collects the bound values in text order."""

    def __init__(self, params: Sequence[Any]) -> None:
        self.source = params
        self.bound: list[Any] = []

    def __call__(self, slot: Slot) -> str:
        self.bound.append(self.source[slot.index])
        return psycopg_placeholder(slot)

    def value(self, value: Any, type_name: str) -> str:
        self.bound.append(value)
        return f"%s::{quote_type(type_name, psycopg=True)}"


def _query(
    statement: Reader,
    columns: Sequence[str],
    delta: SetDelta,
    regions: list[tuple[InSet, bool]],
    inserts_only: bool,
) -> Move:
    values = (*delta.raw_added, *delta.raw_removed)
    where = statement.where
    assert where is not None  # it holds the InSet nodes
    select = ", ".join(quote_identifier(c, psycopg=True) for c in columns)
    table = quote_table(statement.table, psycopg=True)
    condition_sql, slots = _condition(where)
    condition = tuple(statement.params[index] for index in slots)
    region = _Collected(statement.params)
    if inserts_only:
        region_sql = _region(regions, values, region)
        sql = f"SELECT {select} FROM {table} WHERE ({region_sql}) AND ({condition_sql})"
        params = (*region.bound, *condition)
    else:
        region_sql = _region(regions, values, region)
        flag = quote_identifier(IN_SHAPE, psycopg=True)
        sql = (
            f"SELECT {select}, ({condition_sql}) IS TRUE AS {flag} FROM {table} WHERE {region_sql}"
        )
        params = (*condition, *region.bound)
    test = _region_test(statement.consts, regions, delta.added | delta.removed)
    return Move(delta.key, False, inserts_only, sql, params, test)


def _region_test(
    consts: tuple[Any, ...], regions: list[tuple[InSet, bool]], values: frozenset[Any]
) -> Callable[[Mapping[str, Any]], bool]:
    """`in_region` in Python: the row's keyed argument is one of the keyed `values`."""
    tests = [
        ([compile_keyed(a, k) for a, k in zip(node.args, node.arg_keys, strict=True)], nulls)
        for node, nulls in regions
    ]

    def in_region(row: Mapping[str, Any]) -> bool:
        for args, nulls in tests:
            parts = [arg(row, consts) for arg in args]  # type: ignore[arg-type]
            if nulls and parts[0] is None:
                return True
            if (parts[0] if len(parts) == 1 else tuple(parts)) in values:
                return True
        return False

    return in_region


@lru_cache(maxsize=1024)
def _condition(where: Expr) -> tuple[str, tuple[int, ...]]:
    """A statement's condition for psycopg, and the slots it binds in text order (shared
    by every statement with the same structure)."""
    slots: list[int] = []

    def placeholder(slot: Slot) -> str:
        slots.append(slot.index)
        return psycopg_placeholder(slot)

    return render(where, placeholder, psycopg=True), tuple(slots)


def _region(
    regions: list[tuple[InSet, bool]], values: tuple[tuple[Any, ...], ...], out: _Collected
) -> str:
    """Rows whose argument of one of the `regions` is one of `values` (or NULL, if asked)."""
    terms = []
    for node, nulls in regions:
        # Bound in text order: the arguments (they may hold constants), then the arrays.
        args = [
            render_keyed(arg, key, out, psycopg=True)
            for arg, key in zip(node.args, node.arg_keys, strict=True)
        ]
        if nulls:  # one argument: see plan_move
            terms.append(f"{args[0]} IS NULL")
        if not values:
            continue
        arrays = []
        for index, (column, key) in enumerate(
            zip(node.select.columns, node.element_keys, strict=True)
        ):
            # A zoned key compares as timestamptz: bind the keyed values, pinned to UTC.
            zoned = is_zoned(key)
            convert: Callable[[Any], Any] | None = key_function(key) if zoned else None
            items = [v[index] if convert is None else convert(v[index]) for v in values]
            arrays.append(out.value(items, ("timestamptz" if zoned else column.type) + "[]"))
        if len(args) == 1:
            terms.append(f"{args[0]} = ANY({arrays[0]})")
        else:
            terms.append(f"({', '.join(args)}) IN (SELECT * FROM unnest({', '.join(arrays)}))")
    return " OR ".join(f"({term})" for term in terms) if len(terms) > 1 else terms[0]
