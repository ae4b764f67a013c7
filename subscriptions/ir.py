"""The typed, validated form of a WHERE clause: small hashable nodes, no sqlglot.

Constants are `Slot`s: their values live outside the tree (in the shape), so
shapes that differ only in constants share one tree and one compiled predicate.
An inner select (`x IN (SELECT ...)`) is an `InSet` node: the predicate reads
the select's rows as a materialized set, given at evaluation time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from pgsift.subscriptions.domains import KeySpec

N = TypeVar("N")


@dataclass(frozen=True, slots=True)
class Col:
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class Slot:
    """Constant number `index`; `type` is its Postgres type (the cast in `to_sql`)."""

    index: int
    type: str


@dataclass(frozen=True, slots=True)
class Call:
    """`lower(arg)` / `upper(arg)` on text."""

    func: str
    arg: Expr

    @property
    def type(self) -> str:
        return "text"


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # = <> < <= > >=
    left: Expr
    right: Expr
    left_key: KeySpec
    right_key: KeySpec


@dataclass(frozen=True, slots=True)
class Distinct:
    """`left IS [NOT] DISTINCT FROM right`; `negated` for NOT DISTINCT."""

    left: Expr
    right: Expr
    left_key: KeySpec
    right_key: KeySpec
    negated: bool


@dataclass(frozen=True, slots=True)
class InList:
    """`arg [NOT] IN (constants)`; the slot holds (set of keys, has NULL)."""

    arg: Expr
    values: Slot
    key: KeySpec
    negated: bool


@dataclass(frozen=True, slots=True)
class Quantified:
    """`left op ANY|ALL (array)`; a slot array holds keyed elements."""

    op: str
    left: Expr
    array: Expr
    left_key: KeySpec
    element_key: KeySpec
    all: bool


@dataclass(frozen=True, slots=True)
class Like:
    """`arg [NOT] LIKE|ILIKE pattern`; the slot holds the compiled pattern."""

    arg: Expr
    pattern: Slot
    insensitive: bool
    negated: bool


@dataclass(frozen=True, slots=True)
class IsNull:
    arg: Expr
    negated: bool


@dataclass(frozen=True, slots=True)
class IsBool:
    """`arg IS [NOT] TRUE|FALSE`."""

    arg: Expr
    value: bool
    negated: bool


@dataclass(frozen=True, slots=True)
class Select:
    """An inner `SELECT columns FROM table [WHERE where]`; its slots are numbered from 0."""

    table: str
    columns: tuple[Col, ...]  # empty for EXISTS
    where: Expr | None


@dataclass(frozen=True, slots=True)
class InSet:
    """`(args) IN (select)`, or `EXISTS (select)` when `args` is empty.

    `position` says which inner set of the enclosing statement the predicate
    reads (`Shape.inner_sets[position]`); `offset` is where the select's slots
    start among the enclosing statement's (its constants are bound there in
    `to_sql`). `arg_keys[i]` / `element_keys[i]` key the i-th argument and
    selected column for comparison, as for `=`.
    """

    args: tuple[Expr, ...]
    arg_keys: tuple[KeySpec, ...]
    element_keys: tuple[KeySpec, ...]
    select: Select
    position: int
    offset: int


@dataclass(frozen=True, slots=True)
class Not:
    arg: Expr


@dataclass(frozen=True, slots=True)
class Logic:
    op: str  # and | or
    items: tuple[Expr, ...]


Expr = (
    Col
    | Slot
    | Call
    | Compare
    | Distinct
    | InList
    | Quantified
    | Like
    | IsNull
    | IsBool
    | InSet
    | Not
    | Logic
)
PREDICATES = (Compare, Distinct, InList, Quantified, Like, IsNull, IsBool, InSet, Not, Logic)


def type_of(expr: Expr) -> str:
    """The Postgres type of an expression's value."""
    if isinstance(expr, Col | Slot):
        return expr.type
    if isinstance(expr, Call):
        return "text"
    return "bool"


def conjuncts(expr: Expr) -> tuple[Expr, ...]:
    """The top-level AND terms of `expr` (itself if it is not an AND)."""
    if isinstance(expr, Logic) and expr.op == "and":
        return tuple(term for item in expr.items for term in conjuncts(item))
    return (expr,)


def children(expr: Expr) -> tuple[Expr, ...]:
    """The sub-expressions of a node in the enclosing statement (an InSet's select is not)."""
    match expr:
        case Call(arg=arg) | InList(arg=arg) | Like(arg=arg) | IsNull(arg=arg) | IsBool(arg=arg):
            return (arg,)
        case Not(arg=arg):
            return (arg,)
        case Compare(left=left, right=right) | Distinct(left=left, right=right):
            return (left, right)
        case Quantified(left=left, array=array):
            return (left, array)
        case InSet(args=args):
            return args
        case Logic(items=items):
            return items
    return ()


def nodes(expr: Expr | None, kind: type[N]) -> tuple[N, ...]:
    """The nodes of type `kind` in `expr` (not those inside its selects), in tree order."""
    found: list[N] = []
    pending: list[Expr] = [] if expr is None else [expr]
    while pending:
        node = pending.pop()
        if isinstance(node, kind):
            found.append(node)
        pending.extend(reversed(children(node)))
    return tuple(found)


def in_sets(expr: Expr | None) -> tuple[InSet, ...]:
    """The `InSet` nodes of `expr` (not those inside their selects), in tree order."""
    return nodes(expr, InSet)
