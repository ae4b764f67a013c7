"""A sqlglot WHERE clause -> the typed `ir` tree, resolving types as Postgres would.

Constants become slots: the analysis collects, for each slot, the typed value
(bound as a parameter by `to_sql`) and the runtime value the predicate uses
(keyed for comparison, a set for IN, a compiled pattern for LIKE). The leaves
(columns, constants) are typed by `leaves`, IN lists and ANY / ALL by `lists`;
this module dispatches on the node and builds the boolean structure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlglot import exp

from pgsift.subscriptions.domains import TEXT_TYPES, KeySpec, comparison_keys
from pgsift.subscriptions.ir import (
    Compare,
    Distinct,
    Expr,
    IsBool,
    IsNull,
    Like,
    Logic,
    Not,
    type_of,
)
from pgsift.subscriptions.like import LikePatternError, like_pattern
from pgsift.subscriptions.operands import Operand, Pending, Slots, Typed, operand_type
from pgsift.subscriptions.parse import describe, position_of
from pgsift.subscriptions.subqueries import SubqueryAnalyzer

__all__ = ["Analyzer", "Slots"]


_COMPARISONS: dict[type[exp.Expression], str] = {
    exp.EQ: "=",
    exp.NEQ: "<>",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
}
_QUERIES = (exp.Subquery, exp.Query)


class Analyzer(SubqueryAnalyzer):
    """Types one WHERE clause (a query's or a policy's) against one table."""

    # -- entry point ----------------------------------------------------------

    def where(self, node: exp.Expression) -> Expr:
        """The clause as a boolean expression; checks every `$n` is used."""
        expr = self.condition(node)
        for index in range(1, len(self.params) + 1):
            if index not in self.param_types:
                raise self.error(f"parameter ${index} is not used in the query", sql=self.sql)
        return expr

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
        # A node type (or a base of it: `isinstance`) with a method of its own.
        for kind in type(node).__mro__:
            method = _METHODS.get(kind)
            if method is not None:
                return method(self, node)
        if isinstance(node, exp.Paren):
            return self.operand(node.this)
        if type(node) in _COMPARISONS:
            return self.comparison(node, _COMPARISONS[type(node)])
        if isinstance(node, exp.NullSafeEQ | exp.NullSafeNEQ):
            (lhs, lkey), (rhs, rkey) = self.pair(
                node.this, node.expression, "IS DISTINCT FROM", node
            )
            return Distinct(lhs, rhs, lkey, rkey, negated=isinstance(node, exp.NullSafeEQ))
        if isinstance(node, exp.In):
            if node.args.get("query") is not None:
                return self.in_select(node)
            return self.in_list(node)
        if isinstance(node, exp.Boolean):
            return Typed(bool(node.this), "bool", node.sql(), position_of(node))
        if isinstance(node, exp.Null):
            return Pending("null", None, "NULL", position_of(node))
        if isinstance(node, exp.Escape):
            raise self.fail("LIKE ... ESCAPE is not supported (use backslash escapes)", node)
        if isinstance(node, exp.UnicodeString | exp.ByteString | exp.RawString):
            raise self.fail("only plain '...' string constants are supported", node)
        if isinstance(node, exp.Placeholder):
            raise self.fail("use $1, $2, ... for parameters", node)
        if isinstance(node, _QUERIES):
            raise self.fail(
                "scalar subqueries are not supported (use x IN (SELECT ...) or EXISTS)", node
            )
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
        if isinstance(right, exp.Any | exp.All) and isinstance(right.this, _QUERIES):
            word = "ANY" if isinstance(right, exp.Any) else "ALL"
            raise self.fail(
                f"op {word} (SELECT ...) is not supported (use x [NOT] IN (SELECT ...))", right
            )
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


# The node types `Analyzer.operand` hands to one method as they are (no other node
# type is a subclass of two of them, so the order of the lookup does not matter).
_METHODS: dict[type[exp.Expression], Callable[[Analyzer, Any], Operand]] = {
    exp.And: Analyzer.logic,
    exp.Or: Analyzer.logic,
    exp.Not: Analyzer.negation,
    exp.Is: Analyzer.is_test,
    exp.Between: Analyzer.between,
    exp.Exists: Analyzer.exists,
    exp.Like: Analyzer.like,
    exp.ILike: Analyzer.like,
    exp.Column: Analyzer.column,
    exp.Literal: Analyzer.literal,
    exp.Neg: Analyzer.negative,
    exp.Parameter: Analyzer.parameter,
    exp.Cast: Analyzer.cast,
    exp.Lower: Analyzer.case_call,
    exp.Upper: Analyzer.case_call,
}
