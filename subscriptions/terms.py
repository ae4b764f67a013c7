"""Which top-level conjuncts of a shape can route through hash buckets, and with what values.

A term `(column, values)` promises: the shape can only match a row whose
`row[column]` is in `values` by Python equality and hashing. That holds for
`col = const`, `col IN (...)` and `col = ANY(array)` when the comparison key of
the column is the identity on its values (so not for bpchar, cross-type time
comparisons or NaN), and for a bare boolean column.

A top-level `col IN (SELECT ...)` is a *set term* `(column, set key)`: the
same promise, with the values the inner set holds at the time (`set_index`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pgsift.subscriptions.domains import INT_TYPES, NAN, KeySpec
from pgsift.subscriptions.ir import (
    Col,
    Compare,
    Expr,
    InList,
    InSet,
    IsBool,
    Like,
    Not,
    Slot,
    conjuncts,
)

# (column, slot index or -1, mode): mode is one of scalar, label, set, labels, true, false,
# like / ilike for pattern conjuncts (not index terms; see `like_terms`), and inset for
# `col IN (SELECT ...)` (the index is the inner set's position; see `set_terms`).
Recipe = tuple[tuple[str, int, str], ...]
IndexTerms = tuple[tuple[str, frozenset[Any]], ...]
SetTerms = tuple[tuple[str, str], ...]


def _natural(column: Col, key: KeySpec) -> str | None:
    """How a constant keyed by `key` reads as a value of `column`: "keyed", "label" or None."""
    if key.kind == "id":
        return "keyed"
    if key.kind == "num" and (column.type in INT_TYPES or column.type == "numeric"):
        return "keyed"
    if key.kind == "float" and column.type == "float8":
        return "keyed"
    if key.kind == "enum":
        return "label"
    return None


def term_recipe(where: Expr | None) -> Recipe:
    """The indexable conjuncts of `where`, as instructions over the shape's constants."""
    if where is None:
        return ()
    recipe: list[tuple[str, int, str]] = []
    for term in conjuncts(where):
        match term:
            case Col(name=name, type="bool"):
                recipe.append((name, -1, "true"))
            case Not(arg=Col(name=name, type="bool")):
                recipe.append((name, -1, "false"))
            case IsBool(arg=Col(name=name, type="bool"), value=value, negated=False):
                recipe.append((name, -1, "true" if value else "false"))
            case Compare(op="=", left=Col() as col, right=Slot() as slot, left_key=key):
                _add(recipe, col, slot, key, "scalar")
            case Compare(op="=", left=Slot() as slot, right=Col() as col, right_key=key):
                _add(recipe, col, slot, key, "scalar")
            case InList(arg=Col() as col, values=slot, key=key, negated=False):
                _add(recipe, col, slot, key, "set")
            case Like(arg=Col(name=name), pattern=slot, insensitive=insensitive, negated=False):
                recipe.append((name, slot.index, "ilike" if insensitive else "like"))
            case InSet(args=(Col() as col,), arg_keys=(key,), position=position):
                if _natural(col, key) == "keyed":
                    recipe.append((col.name, position, "inset"))
    return tuple(recipe)


def _add(recipe: list[tuple[str, int, str]], col: Col, slot: Slot, key: KeySpec, kind: str) -> None:
    natural = _natural(col, key)
    if natural is not None:
        mode = kind if natural == "keyed" else ("label" if kind == "scalar" else "labels")
        recipe.append((col.name, slot.index, mode))


def index_terms(recipe: Recipe, params: Sequence[Any], consts: Sequence[Any]) -> IndexTerms:
    """The shape's terms from its recipe and constants (terms holding NaN are dropped)."""
    terms: list[tuple[str, frozenset[Any]]] = []
    for column, index, mode in recipe:
        values: frozenset[Any]
        if mode in ("like", "ilike", "inset"):
            continue
        if mode == "true":
            values = _TRUE
        elif mode == "false":
            values = _FALSE
        elif mode == "scalar":
            const = consts[index]
            if const is NAN:
                continue
            values = frozenset() if const is None else frozenset((const,))
        elif mode == "label":
            label = params[index]
            values = frozenset() if label is None else frozenset((label,))
        elif mode == "set":
            values = consts[index][0]
            if NAN in values:
                continue
        else:
            values = _labels(params[index])
        terms.append((column, values))
    return tuple(terms)


def _labels(labels: Sequence[Any]) -> frozenset[Any]:
    """The enum labels of an IN list, one shared set per distinct list."""
    values = frozenset(v for v in labels if v is not None)
    if len(_LABEL_SETS) > 65_536:
        _LABEL_SETS.clear()
    return _LABEL_SETS.setdefault(values, values)


_LABEL_SETS: dict[frozenset[Any], frozenset[Any]] = {}
_TRUE: frozenset[Any] = frozenset((True,))
_FALSE: frozenset[Any] = frozenset((False,))


def like_terms(recipe: Recipe, params: Sequence[Any]) -> tuple[tuple[str, str, bool], ...]:
    """(column, pattern, insensitive) of the top-level `col [I]LIKE constant` conjuncts."""
    return tuple(
        (column, params[index], mode == "ilike")
        for column, index, mode in recipe
        if mode in ("like", "ilike") and params[index] is not None
    )


def set_terms(recipe: Recipe, set_keys: Sequence[str]) -> SetTerms:
    """(column, inner set key) of the top-level `col IN (SELECT ...)` conjuncts."""
    return tuple((column, set_keys[index]) for column, index, mode in recipe if mode == "inset")
