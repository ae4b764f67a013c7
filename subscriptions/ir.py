"""The typed, validated form of a WHERE clause: small hashable nodes, no sqlglot.

Constants are `Slot`s: their values live outside the tree (in the shape), so
shapes that differ only in constants share one tree and one compiled predicate.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgsift.subscriptions.domains import KeySpec


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
    | Not
    | Logic
)
PREDICATES = (Compare, Distinct, InList, Quantified, Like, IsNull, IsBool, Not, Logic)


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
