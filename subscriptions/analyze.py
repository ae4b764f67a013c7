"""A sqlglot WHERE clause -> the typed `ir` tree, resolving types as Postgres would.

Constants become slots: the analysis collects, for each slot, the typed value
(bound as a parameter by `to_sql`) and the runtime value the predicate uses
(keyed for comparison, a set for IN, a compiled pattern for LIKE).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlglot import exp

from pgsift.subscriptions import coerce
from pgsift.subscriptions.casefold import pg_lower, pg_upper
from pgsift.subscriptions.catalog import Table
from pgsift.subscriptions.domains import TEXT_TYPES, KeySpec, apply_key, comparison_keys
from pgsift.subscriptions.errors import PolicyError, QueryError
from pgsift.subscriptions.ir import (
    Call,
    Col,
    Compare,
    Distinct,
    Expr,
    InList,
    IsBool,
    IsNull,
    Like,
    Logic,
    Not,
    Quantified,
    Slot,
    type_of,
)
from pgsift.subscriptions.like import LikePatternError, like_pattern
from pgsift.subscriptions.operands import (
    NUMBER_RANK,
    Operand,
    Pending,
    Slots,
    Typed,
    canonical_json,
    common_type,
    convert,
    operand_type,
    shared_set,
)
from pgsift.subscriptions.parse import describe, identifier_name, position_of

__all__ = ["Analyzer", "Slots"]

_COMPARISONS: dict[type[exp.Expression], str] = {
    exp.EQ: "=",
    exp.NEQ: "<>",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
}


class Analyzer:
    """Types one WHERE clause (a query's or a policy's) against one table."""

    def __init__(
        self,
        sql: str,
        table: Table,
        *,
        enums: Mapping[str, tuple[str, ...]],
        slots: Slots,
        params: Sequence[Any] = (),
        claims: Mapping[str, Any] | None = None,
        qualifiers: frozenset[str] = frozenset(),
        allowed_columns: frozenset[str] | None = None,
        error: type[QueryError] = QueryError,
    ) -> None:
        self.sql = sql
        self.table = table
        self.enums = enums
        self.slots = slots
        self.params = params
        self.claims = claims
        self.qualifiers = qualifiers | {table.relname}
        self.allowed_columns = allowed_columns
        self.error = error
        self.param_types: dict[int, str] = {}
        self.param_values: dict[int, Typed] = {}

    # -- entry points -------------------------------------------------------

    def where(self, node: exp.Expression) -> Expr:
        """The clause as a boolean expression; checks every `$n` is used."""
        expr = self.condition(node)
        for index in range(1, len(self.params) + 1):
            if index not in self.param_types:
                raise self.error(f"parameter ${index} is not used in the query", sql=self.sql)
        return expr

    def fail(self, message: str, node: exp.Expression | None = None) -> QueryError:
        position = position_of(node) if node is not None else None
        return self.error(message, sql=self.sql, position=position)

    # -- booleans -----------------------------------------------------------

    def condition(self, node: exp.Expression) -> Expr:
        operand = self.operand(node)
        if isinstance(operand, Pending | Typed):
            typed = self.typed(operand, "bool") if isinstance(operand, Pending) else operand
            if typed.type != "bool":
                raise self.fail(f"argument must be type boolean, not type {typed.type}", node)
            return self.slots.add(typed.value, "bool", typed.value)
        kind = type_of(operand)
        if kind != "bool":
            raise self.fail(f"argument must be type boolean, not type {kind}", node)
        return operand

    def operand(self, node: exp.Expression) -> Operand:
        if isinstance(node, exp.Paren):
            return self.operand(node.this)
        if isinstance(node, exp.And | exp.Or):
            return self.logic(node)
        if isinstance(node, exp.Not):
            return self.negation(node)
        if type(node) in _COMPARISONS:
            return self.comparison(node, _COMPARISONS[type(node)])
        if isinstance(node, exp.NullSafeEQ | exp.NullSafeNEQ):
            (lhs, lkey), (rhs, rkey) = self.pair(
                node.this, node.expression, "IS DISTINCT FROM", node
            )
            return Distinct(lhs, rhs, lkey, rkey, negated=isinstance(node, exp.NullSafeEQ))
        if isinstance(node, exp.Is):
            return self.is_test(node)
        if isinstance(node, exp.Between):
            return self.between(node)
        if isinstance(node, exp.In):
            return self.in_list(node)
        if isinstance(node, exp.Like | exp.ILike):
            return self.like(node)
        if isinstance(node, exp.Column):
            return self.column(node)
        if isinstance(node, exp.Literal):
            return self.literal(node)
        if isinstance(node, exp.Neg):
            return self.negative(node)
        if isinstance(node, exp.Boolean):
            return Typed(bool(node.this), "bool", node.sql(), position_of(node))
        if isinstance(node, exp.Null):
            return Pending("null", None, "NULL", position_of(node))
        if isinstance(node, exp.Parameter):
            return self.parameter(node)
        if isinstance(node, exp.Cast):
            return self.cast(node)
        if isinstance(node, exp.Lower | exp.Upper):
            return self.case_call(node)
        if isinstance(node, exp.Escape):
            raise self.fail("LIKE ... ESCAPE is not supported (use backslash escapes)", node)
        if isinstance(node, exp.UnicodeString | exp.ByteString | exp.RawString):
            raise self.fail("only plain '...' string constants are supported", node)
        if isinstance(node, exp.Placeholder):
            raise self.fail("use $1, $2, ... for parameters", node)
        if isinstance(node, exp.Subquery | exp.Select | exp.Exists):
            raise self.fail("subqueries are not supported", node)
        if isinstance(node, exp.Window):
            raise self.fail("window functions are not supported", node)
        if isinstance(node, exp.AggFunc):
            raise self.fail(f"{describe(node, self.sql)} is not supported (aggregates)", node)
        if isinstance(node, exp.Func):
            raise self.fail(
                f"{describe(node, self.sql)} is not supported (only lower() and upper())", node
            )
        raise self.fail(f"{describe(node, self.sql)} is not supported", node)

    def logic(self, node: exp.And | exp.Or) -> Expr:
        """An AND / OR chain as one flat node, walked without recursion.

        sqlglot nests `a OR b OR c ...` one level per term; a long chain (hundreds
        of terms) must not recurse. Parenthesized chains of the same operator are
        flattened too; terms keep their left-to-right order (parameters are typed
        by their first use).
        """
        kind = type(node)
        op = "and" if kind is exp.And else "or"
        items: list[Expr] = []
        pending: list[exp.Expression] = [node]
        while pending:
            side = pending.pop()
            inner = side
            while isinstance(inner, exp.Paren):
                inner = inner.this
            if type(inner) is kind:
                pending.append(inner.expression)
                pending.append(inner.this)
                continue
            item = self.condition(side)
            if isinstance(item, Logic) and item.op == op:
                items.extend(item.items)
            else:
                items.append(item)
        return Logic(op, tuple(items))

    def negation(self, node: exp.Not) -> Expr:
        inner = self.condition(node.this)
        if isinstance(inner, IsNull | IsBool):
            return _flip(inner)
        return Not(inner)

    def is_test(self, node: exp.Is) -> Expr:
        target = node.expression
        negated = bool(node.args.get("negate"))
        if isinstance(target, exp.Null):
            return IsNull(self.expression(node.this, None), negated=negated)
        if isinstance(target, exp.Boolean):
            return IsBool(self.condition(node.this), bool(target.this), negated=negated)
        raise self.fail("only IS [NOT] NULL / TRUE / FALSE are supported", node)

    def between(self, node: exp.Between) -> Expr:
        if node.args.get("symmetric"):
            raise self.fail("BETWEEN SYMMETRIC is not supported", node)
        low = self.compare(">=", node.this, node.args["low"], node)
        high = self.compare("<=", node.this, node.args["high"], node)
        between = Logic("and", (low, high))
        return Not(between) if node.args.get("negate") else between

    # -- comparisons ----------------------------------------------------------

    def comparison(self, node: exp.Expression, op: str) -> Expr:
        right = node.expression
        if isinstance(right, exp.Any):
            return self.quantified(op, node.this, right.this, node, all_=False)
        if isinstance(right, exp.All | exp.Anonymous) and _is_all(right):
            inner = right.this if isinstance(right, exp.All) else right.expressions[0]
            return self.quantified(op, node.this, inner, node, all_=True)
        return self.compare(op, node.this, right, node)

    def compare(
        self, op: str, left: exp.Expression, right: exp.Expression, node: exp.Expression
    ) -> Expr:
        (lhs, lkey), (rhs, rkey) = self.pair(left, right, op, node)
        return Compare(op, lhs, rhs, lkey, rkey)

    def pair(
        self, left: exp.Expression, right: exp.Expression, op: str, node: exp.Expression
    ) -> tuple[tuple[Expr, KeySpec], tuple[Expr, KeySpec]]:
        """Both operands typed against each other, constants as keyed slots."""
        a, b = self.operand(left), self.operand(right)
        if isinstance(a, Pending) and isinstance(b, Pending):
            if a.kind != "text" and b.kind != "text":
                raise self.fail(f"could not determine the type of {a.label} {op} {b.label}", node)
            a, b = self.typed(a, "text"), self.typed(b, "text")
        elif isinstance(a, Pending):
            a = self.typed(a, operand_type(b))
        elif isinstance(b, Pending):
            b = self.typed(b, operand_type(a))
        if isinstance(a, Pending) or isinstance(b, Pending):  # typed above; for the checker
            raise self.fail(f"could not determine the types of {op}", node)
        left_type, right_type = operand_type(a), operand_type(b)
        self.comparable(left_type, right_type, node)
        keys = comparison_keys(left_type, right_type, self.enums)
        if keys is None:
            raise self.fail(f"operator does not exist: {left_type} {op} {right_type}", node)
        return (self.as_expr(a, keys[0]), keys[0]), (self.as_expr(b, keys[1]), keys[1])

    def comparable(self, left: str, right: str, node: exp.Expression) -> None:
        """Refuse comparisons pgsift cannot decide as Postgres does (intervals)."""
        if "interval" in (left, right):
            raise self.fail(
                "comparisons of interval values are not supported: Postgres counts a year "
                "as 360 days, psycopg (and so every row pgsift sees) as 365 "
                "(IS [NOT] NULL is supported)",
                node,
            )

    def in_list(self, node: exp.In) -> Expr:
        if node.args.get("query") is not None:
            raise self.fail("subqueries are not supported", node.args["query"])
        if not node.expressions:
            raise self.fail("IN needs a list of constants", node)
        arg = self.operand(node.this)
        elements = [self.operand(item) for item in node.expressions]
        for item, element in zip(node.expressions, elements, strict=True):
            if not isinstance(element, Pending | Typed):
                raise self.fail("IN list elements must be constants", item)
        constants = [e for e in elements if isinstance(e, Pending | Typed)]
        arg_expr, arg_key, typed, common = self.against_constants(arg, constants, "IN", node)
        keys = comparison_keys(type_of(arg_expr), common, self.enums)
        element_key = keys[1] if keys is not None else KeySpec("id")
        slot = self.set_slot(typed, common, element_key)
        return InList(arg_expr, slot, arg_key, negated=bool(node.args.get("negate")))

    def quantified(
        self,
        op: str,
        left: exp.Expression,
        array: exp.Expression,
        node: exp.Expression,
        *,
        all_: bool,
    ) -> Expr:
        word = "ALL" if all_ else "ANY"
        while isinstance(array, exp.Paren):
            array = array.this
        lhs = self.operand(left)
        if isinstance(array, exp.Array):
            items = [self.operand(item) for item in array.expressions]
            constants = [i for i in items if isinstance(i, Pending | Typed)]
            if len(constants) != len(items):
                raise self.fail("ARRAY[...] elements must be constants", array)
            # ARRAY[...] is typed on its own: unknown elements become text unless a typed
            # element gives the array its type (unlike IN, which looks at the left side).
            first = next((c for c in constants if isinstance(c, Typed)), None)
            element_type = (
                common_type([c.type for c in constants if isinstance(c, Typed)])
                if first
                else "text"
            )
            constants = [
                self.typed(c, element_type) if isinstance(c, Pending) else c for c in constants
            ]
            lhs_expr, lkey, typed, common = self.against_constants(lhs, constants, word, node)
            keys = comparison_keys(operand_type(lhs_expr), common, self.enums)
            if op == "=" and not all_ and keys is not None:
                return InList(lhs_expr, self.set_slot(typed, common, keys[1]), lkey, negated=False)
            return self.array_slot(op, lhs_expr, lkey, typed, common, keys, all_)
        source = self.operand(array)
        if isinstance(source, Pending):
            element = operand_type(lhs) if not isinstance(lhs, Pending) else "text"
            source = self.typed(source, f"{element}[]")
        array_type = operand_type(source)
        if not coerce.is_array(array_type):
            raise self.fail(f"op {word} (array) requires an array, not {array_type}", array)
        element = array_type[:-2]
        if isinstance(lhs, Pending):
            lhs = self.typed(lhs, element)
        self.comparable(operand_type(lhs), element, node)
        keys = comparison_keys(operand_type(lhs), element, self.enums)
        if keys is None:
            raise self.fail(f"operator does not exist: {operand_type(lhs)} {op} {element}", node)
        lhs_expr = self.as_expr(lhs, keys[0])
        if isinstance(source, Typed):
            elements = (
                None
                if source.value is None
                else [Typed(v, element, source.label, source.position) for v in source.value]
            )
            if op == "=" and not all_ and elements is not None:
                slot = self.set_slot(elements, element, keys[1])
                return InList(lhs_expr, slot, keys[0], negated=False)
            return self.array_slot(op, lhs_expr, keys[0], elements, element, keys, all_)
        return Quantified(op, lhs_expr, source, keys[0], keys[1], all_)

    def array_slot(
        self,
        op: str,
        lhs: Expr,
        lkey: KeySpec,
        elements: list[Typed] | None,
        element: str,
        keys: tuple[KeySpec, KeySpec] | None,
        all_: bool,
    ) -> Expr:
        ekey = keys[1] if keys is not None else KeySpec("id")
        if elements is None:
            slot = self.slots.add(None, f"{element}[]", None)
        else:
            typed = [e.value for e in elements]
            slot = self.slots.add(typed, f"{element}[]", tuple(apply_key(ekey, v) for v in typed))
        return Quantified(op, lhs, slot, lkey, ekey, all_)

    def against_constants(
        self, arg: Operand, constants: list[Pending | Typed], word: str, node: exp.Expression
    ) -> tuple[Expr, KeySpec, list[Typed], str]:
        """Type `arg` and a list of constants to one common type, as IN / ARRAY[] do."""
        if isinstance(arg, Pending):
            first = next((c for c in constants if isinstance(c, Typed)), None)
            arg = self.typed(arg, first.type if first is not None else "text")
        arg_type = operand_type(arg)
        typed = [self.typed(c, arg_type) if isinstance(c, Pending) else c for c in constants]
        common = common_type([arg_type, *(t.type for t in typed)])
        self.comparable(arg_type, common, node)
        for item in typed:
            if comparison_keys(common, item.type, self.enums) is None:
                raise self.fail(f"operator does not exist: {arg_type} {word} {item.type}", node)
        keys = comparison_keys(arg_type, common, self.enums)
        if keys is None:
            raise self.fail(f"operator does not exist: {arg_type} {word} {common}", node)
        converted = [Typed(convert(t, common), common, t.label, t.position) for t in typed]
        return self.as_expr(arg, keys[0]), keys[0], converted, common

    def set_slot(self, typed: list[Typed], element: str, key: KeySpec) -> Slot:
        """An IN list / `= ANY` array: the canonical (sorted, unique) values and their keys."""
        present = {canonical_json(t.value): t.value for t in typed if t.value is not None}
        ordered = [present[k] for k in sorted(present)]
        has_null = len(present) < len(typed) and any(t.value is None for t in typed)
        runtime = shared_set((frozenset(apply_key(key, v) for v in ordered), has_null))
        return self.slots.add(ordered + ([None] if has_null else []), f"{element}[]", runtime)

    # -- LIKE -------------------------------------------------------------------

    def like(self, node: exp.Like | exp.ILike) -> Expr:
        insensitive = isinstance(node, exp.ILike)
        word = "ILIKE" if insensitive else "LIKE"
        arg = self.operand(node.this)
        if isinstance(arg, Pending):
            arg = self.typed(arg, "text")
        if operand_type(arg) not in TEXT_TYPES:
            raise self.fail(f"operator does not exist: {operand_type(arg)} {word} text", node)
        pattern = self.operand(node.expression)
        if not isinstance(pattern, Pending | Typed):
            raise self.fail(f"{word} patterns must be constants", node.expression)
        typed = self.typed(pattern, "text") if isinstance(pattern, Pending) else pattern
        if typed.type not in TEXT_TYPES:
            raise self.fail(f"operator does not exist: text {word} {typed.type}", node)
        matcher = None
        if typed.value is not None:
            try:
                matcher = like_pattern(typed.value, insensitive=insensitive)
            except LikePatternError as exc:
                raise self.fail(str(exc), node.expression) from None
        slot = self.slots.add(typed.value, "text", matcher)
        expr = Like(self.as_expr(arg, KeySpec("id")), slot, insensitive, negated=False)
        return Not(expr) if node.args.get("negate") else expr

    # -- leaves ---------------------------------------------------------------

    def expression(self, node: exp.Expression, expected: str | None) -> Expr:
        operand = self.operand(node)
        if isinstance(operand, Pending):
            if operand.kind in ("param", "claim") and expected is None:
                raise self.fail(f"could not determine the type of {operand.label}", node)
            operand = self.typed(operand, expected or "text")
        return self.as_expr(operand, KeySpec("id"))

    def column(self, node: exp.Column) -> Operand:
        qualifier = node.args.get("table")
        name = identifier_name(node.this)
        if qualifier is not None:
            qualified = identifier_name(qualifier)
            if qualified == "auth" and self.claims is not None:
                return self.claim(name, node)
            if qualified not in self.qualifiers:
                raise self.fail(f"unknown table {qualified!r}", node)
        type_name = self.table.columns.get(name)
        if type_name is None:
            raise self.fail(f"column {name!r} does not exist in {self.table.name}", node)
        if self.allowed_columns is not None and name not in self.allowed_columns:
            raise PolicyError(
                f"column {name!r} of {self.table.name} is not allowed by its policy",
                sql=self.sql,
                position=position_of(node),
            )
        return Col(name, coerce.canonical_type(type_name))

    def claim(self, name: str, node: exp.Expression) -> Pending:
        if self.claims is None or name not in self.claims:
            raise PolicyError(f"missing claim {name!r}", sql=self.sql, position=position_of(node))
        if self.claims[name] is None:
            # A JSON null in a token is not SQL NULL: as NULL the rule would quietly
            # match nothing (or, under NOT / IS NULL, everything).
            raise PolicyError(
                f"claim {name!r} is null; a policy needs a value", sql=self.sql,
                position=position_of(node),
            )
        return Pending("claim", self.claims[name], f"auth.{name}", position_of(node))

    def literal(self, node: exp.Literal) -> Operand:
        if node.is_string:
            return Pending("text", str(node.this), repr(str(node.this)), position_of(node))
        try:
            value, type_name = coerce.numeric_literal(str(node.this))
        except coerce.CoercionError as exc:
            raise self.fail(str(exc), node) from None
        return Typed(value, type_name, str(node.this), position_of(node))

    def negative(self, node: exp.Neg) -> Operand:
        inner = self.operand(node.this)
        if isinstance(inner, Typed) and inner.type in NUMBER_RANK and inner.value is not None:
            value, kind = -inner.value, inner.type
            if inner.label.isdigit():  # Postgres types a negated integer by its value
                value, kind = coerce.numeric_literal(inner.label)
                value = -value
                if kind == "int8" and value == -(2**31):
                    kind = "int4"
                if kind == "numeric" and value == -(2**63):
                    value, kind = int(value), "int8"
            return Typed(value, kind, f"-{inner.label}", position_of(node))
        raise self.fail("unary minus is only supported on numeric constants", node)

    def parameter(self, node: exp.Parameter) -> Pending | Typed:
        index = int(str(node.this.this)) if isinstance(node.this, exp.Literal) else 0
        if not 1 <= index <= len(self.params):
            raise self.fail(f"there is no parameter ${index} ({len(self.params)} given)", node)
        known = self.param_values.get(index)
        if known is not None:  # typed by its first use, as Postgres does
            return Typed(known.value, known.type, known.label, position_of(node))
        return Pending("param", self.params[index - 1], f"${index}", position_of(node), index)

    def cast(self, node: exp.Cast) -> Typed:
        target = node.to
        if target.expressions and not target.is_type(exp.DataType.Type.ARRAY):
            raise self.fail("type modifiers in casts are not supported", target)
        if target.is_type(exp.DataType.Type.CHAR):
            raise self.fail("casts to char(n) are not supported", target)
        type_name = coerce.canonical_type(target.sql(dialect="postgres"))
        inner = self.operand(node.this)
        if isinstance(inner, Pending):
            return self.typed(inner, type_name)
        if isinstance(inner, Typed):
            if inner.type == type_name or inner.value is None:
                return Typed(inner.value, type_name, inner.label, inner.position)
            if inner.type in NUMBER_RANK and isinstance(inner.value, int | Decimal):
                try:
                    value = coerce.cast_number(inner.value, type_name)
                except coerce.CoercionError as exc:
                    raise self.fail(str(exc), node) from None
                return Typed(value, type_name, inner.label, inner.position)
            raise self.fail(f"cannot cast {inner.type} constants to {type_name}", node)
        raise self.fail("casts of columns are not supported", node)

    def case_call(self, node: exp.Lower | exp.Upper) -> Operand:
        func = "lower" if isinstance(node, exp.Lower) else "upper"
        arg = self.operand(node.this)
        if isinstance(arg, Pending):
            arg = self.typed(arg, "text")
        if operand_type(arg) not in TEXT_TYPES:
            raise self.fail(f"function {func}({operand_type(arg)}) does not exist", node)
        if isinstance(arg, Typed):
            if arg.value is None:
                return Typed(None, "text", arg.label, arg.position)
            text = arg.value.rstrip(" ") if arg.type == "bpchar" else arg.value
            value = pg_lower(text) if func == "lower" else pg_upper(text)
            return Typed(value, "text", f"{func}({arg.label})", arg.position)
        return Call(func, arg)

    # -- constants --------------------------------------------------------------

    def typed(self, pending: Pending | Typed, type_name: str) -> Typed:
        """A context-typed constant as a value of `type_name` (Postgres's input rules)."""
        if isinstance(pending, Typed):
            return pending
        try:
            if pending.kind == "null":
                value = None
            elif pending.kind == "text":
                value = coerce.from_text(type_name, pending.raw, self.enums)
            else:
                value = coerce.from_value(type_name, pending.raw, self.enums)
        except (coerce.CoercionError, ValueError, TypeError) as exc:
            error = PolicyError if pending.kind == "claim" else self.error
            message = str(exc) if pending.kind == "text" else f"{pending.label}: {exc}"
            raise error(message, sql=self.sql, position=pending.position) from None
        typed = Typed(value, type_name, pending.label, pending.position)
        if pending.param is not None:
            self.param_types[pending.param] = type_name
            self.param_values[pending.param] = typed
        return typed

    def as_expr(self, operand: Expr | Typed, key: KeySpec) -> Expr:
        if isinstance(operand, Typed):
            return self.slots.add(operand.value, operand.type, apply_key(key, operand.value))
        return operand


def _is_all(node: exp.Expression) -> bool:
    if isinstance(node, exp.All):
        return True
    return (
        isinstance(node, exp.Anonymous)
        and str(node.this).upper() == "ALL"
        and len(node.expressions) == 1
    )


def _flip(expr: IsNull | IsBool) -> Expr:
    if isinstance(expr, IsNull):
        return IsNull(expr.arg, not expr.negated)
    return IsBool(expr.arg, expr.value, not expr.negated)
