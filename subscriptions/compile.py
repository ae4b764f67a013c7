"""An `ir` tree -> one Python closure over (row, constants) with Postgres's three-valued logic.

Every compiled function returns True, False or None (SQL NULL). Constants are
read from the shape's runtime tuple, so one compiled tree serves every shape
that differs only in constants. A tree with inner sets reads their states from
the last constant (`sets.bind_states`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

from pgsift.subscriptions.casefold import pg_lower, pg_upper
from pgsift.subscriptions.domains import KeySpec, key_function
from pgsift.subscriptions.ir import (
    Call,
    Col,
    Compare,
    Distinct,
    Expr,
    InList,
    InSet,
    IsBool,
    IsNull,
    Like,
    Logic,
    Not,
    Quantified,
    Slot,
)

Row = dict[str, Any]
Consts = Sequence[Any]
Fn = Callable[[Row, Consts], Any]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def compile_expr(expr: Expr) -> Fn:
    """The evaluator of `expr`: `fn(row, consts)` -> value (True/False/None for predicates)."""
    match expr:
        case Col(name=name):
            return lambda row, c: row.get(name)
        case Slot(index=index):
            return lambda row, c: c[index]
        case Call():
            return _call(expr)
        case Compare():
            return _compare(expr)
        case Distinct():
            return _distinct(expr)
        case InList():
            return _in_list(expr)
        case Quantified():
            return _quantified(expr)
        case Like():
            return _like(expr)
        case IsNull(arg=arg, negated=negated):
            inner = compile_expr(arg)
            if negated:
                return lambda row, c: inner(row, c) is not None
            return lambda row, c: inner(row, c) is None
        case IsBool():
            return _is_bool(expr)
        case InSet():
            return _in_set(expr)
        case Not(arg=arg):
            inner = compile_expr(arg)

            def negation(row: Row, c: Consts) -> Any:
                value = inner(row, c)
                return None if value is None else not value

            return negation
        case Logic():
            return _logic(expr)
    raise TypeError(f"cannot compile {expr!r}")


def compile_keyed(expr: Expr, spec: KeySpec) -> Fn:
    """The evaluator of an operand as a comparison keyed by `spec` reads it."""
    return _keyed(expr, spec)


def _keyed(expr: Expr, spec: KeySpec) -> Fn:
    """The operand's value through its comparison key; slots hold keyed values already."""
    fn = compile_expr(expr)
    key = key_function(spec)
    if key is None or isinstance(expr, Slot):
        return fn

    def keyed(row: Row, c: Consts) -> Any:
        value = fn(row, c)
        return None if value is None else key(value)

    return keyed


def _call(expr: Call) -> Fn:
    arg = compile_expr(expr.arg)
    fold = pg_lower if expr.func == "lower" else pg_upper
    # bpchar reaches lower()/upper() through its cast to text, which drops trailing spaces.
    strip = isinstance(expr.arg, Col) and expr.arg.type == "bpchar"

    def call(row: Row, c: Consts) -> Any:
        value = arg(row, c)
        if value is None:
            return None
        return fold(value.rstrip(" ") if strip else value)

    return call


def _compare(expr: Compare) -> Fn:
    op = _OPS[expr.op]
    right = expr.right
    # The common case `col op constant` without a key: one dict lookup, one compare.
    if isinstance(expr.left, Col) and isinstance(right, Slot):
        name, index, key = expr.left.name, right.index, key_function(expr.left_key)
        if key is None:

            def col_const(row: Row, c: Consts) -> Any:
                value = row.get(name)
                const = c[index]
                if value is None or const is None:
                    return None
                return op(value, const)

            return col_const

        def col_const_keyed(row: Row, c: Consts) -> Any:
            value = row.get(name)
            const = c[index]
            if value is None or const is None:
                return None
            return op(key(value), const)

        return col_const_keyed
    left = _keyed(expr.left, expr.left_key)
    right_fn = _keyed(right, expr.right_key)

    def compare(row: Row, c: Consts) -> Any:
        a = left(row, c)
        if a is None:
            return None
        b = right_fn(row, c)
        if b is None:
            return None
        return op(a, b)

    return compare


def _distinct(expr: Distinct) -> Fn:
    left = _keyed(expr.left, expr.left_key)
    right = _keyed(expr.right, expr.right_key)
    negated = expr.negated

    def distinct(row: Row, c: Consts) -> bool:
        a, b = left(row, c), right(row, c)
        differs = (a is None) != (b is None) if a is None or b is None else a != b
        return differs != negated

    return distinct


def _in_list(expr: InList) -> Fn:
    arg = _keyed(expr.arg, expr.key)
    index = expr.values.index

    def in_list(row: Row, c: Consts) -> Any:
        value = arg(row, c)
        members, has_null = c[index]
        if not members and not has_null:  # `= ANY('{}')` is false even for NULL
            return False
        if value is None:
            return None
        if value in members:
            return True
        return None if has_null else False

    return in_list


def _quantified(expr: Quantified) -> Fn:
    left = _keyed(expr.left, expr.left_key)
    array = compile_expr(expr.array)
    element_key = None if isinstance(expr.array, Slot) else key_function(expr.element_key)
    op = _OPS[expr.op]
    want_all = expr.all

    def quantified(row: Row, c: Consts) -> Any:
        elements = array(row, c)
        if elements is None:
            return None
        if not elements:
            return want_all
        value = left(row, c)
        if value is None:
            return None
        saw_null = False
        for element in _flat(elements):
            if element is None:
                saw_null = True
                continue
            result = op(value, element if element_key is None else element_key(element))
            if result != want_all:
                return result
        return None if saw_null else want_all

    return quantified


def _flat(elements: Any) -> Any:
    for element in elements:
        if isinstance(element, list):
            yield from _flat(element)
        else:
            yield element


def _in_set(expr: InSet) -> Fn:
    """`x IN (SELECT ...)` as Postgres: false on an empty set (even for NULL `x`), NULL
    when `x` is NULL or only a NULL-holding element might equal it; EXISTS: non-empty."""
    position = expr.position
    args = tuple(_keyed(arg, key) for arg, key in zip(expr.args, expr.arg_keys, strict=True))
    if not args:
        return lambda row, c: not c[-1][position].empty
    if len(args) == 1:
        (arg,) = args

        def in_set(row: Row, c: Consts) -> Any:
            state = c[-1][position]
            value = arg(row, c)
            if value is not None and value in state.members:
                return True  # the common case first: a member (so the set is not empty)
            if state.empty:
                return False
            if value is None:
                return None
            return None if state.partial else False

        return in_set

    def in_rows(row: Row, c: Consts) -> Any:
        state = c[-1][position]
        if state.empty:
            return False
        values = tuple(arg(row, c) for arg in args)
        if None not in values:
            if values in state.members:
                return True
            elements: Any = state.partial
        else:
            # A row with a NULL is never equal; it is NULL where nothing differs.
            elements = (*state.members, *state.partial)
        for element in elements:
            if all(a is None or b is None or a == b for a, b in zip(values, element, strict=True)):
                return None
        return False

    return in_rows


def _like(expr: Like) -> Fn:
    arg = compile_expr(expr.arg)
    index = expr.pattern.index
    insensitive = expr.insensitive

    def like(row: Row, c: Consts) -> Any:
        value = arg(row, c)
        pattern = c[index]
        if value is None or pattern is None:
            return None
        if insensitive:
            value = pg_lower(value)
        return pattern.matches(value)

    return like


def _is_bool(expr: IsBool) -> Fn:
    arg = compile_expr(expr.arg)
    wanted, negated = expr.value, expr.negated

    def is_bool(row: Row, c: Consts) -> bool:
        return (arg(row, c) is wanted) != negated

    return is_bool


def _logic(expr: Logic) -> Fn:
    items = tuple(compile_expr(item) for item in expr.items)
    if expr.op == "and" and len(items) == 2:  # the common case, without a loop
        first, second = items

        def and2(row: Row, c: Consts) -> Any:
            a = first(row, c)
            if a is False:
                return False
            b = second(row, c)
            if b is False:
                return False
            return None if a is None or b is None else True

        return and2

    # AND is decided by its first False, OR by its first True; past every item, the
    # result is NULL if one was NULL, else the other truth value.
    decisive = expr.op != "and"
    otherwise = not decisive

    def connective(row: Row, c: Consts) -> Any:
        unknown = False
        for item in items:
            value = item(row, c)
            if value is decisive:
                return decisive
            if value is None:
                unknown = True
        return None if unknown else otherwise

    return connective
