"""The leaves of a WHERE clause while it is typed: columns, constants, parameters, claims.

`LeafAnalyzer` holds the state of one clause's analysis (its table, its
constants, how each `$n` was typed) and types the operands that end a branch
of the tree: a column, a literal, `$n`, `auth.<claim>`, a cast, `lower()` /
`upper()`. `lists` and `analyze` build the predicates on top of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from decimal import Decimal
from typing import Any

from sqlglot import exp

from pgsift.subscriptions import coerce
from pgsift.subscriptions.casefold import pg_lower, pg_upper
from pgsift.subscriptions.catalog import Table
from pgsift.subscriptions.domains import TEXT_TYPES, KeySpec, apply_key
from pgsift.subscriptions.errors import PolicyError, QueryError
from pgsift.subscriptions.ir import Call, Col, Expr
from pgsift.subscriptions.operands import (
    NUMBER_RANK,
    Operand,
    Pending,
    Slots,
    Typed,
    operand_type,
)
from pgsift.subscriptions.parse import identifier_name, position_of
from pgsift.subscriptions.scope import Scope, readable_column


@dataclass(eq=False)
class LeafAnalyzer:
    """The state of one clause's analysis (a query's or a policy's) and its leaves."""

    sql: str
    table: Table
    _: KW_ONLY
    enums: Mapping[str, tuple[str, ...]]
    slots: Slots
    params: Sequence[Any] = ()
    claims: Mapping[str, Any] | None = None
    qualifiers: frozenset[str] = frozenset()  # the table's own name is always one
    allowed_columns: frozenset[str] | None = None
    error: type[QueryError] = QueryError
    scope: Scope
    param_types: dict[int, str] = field(init=False, default_factory=dict)
    param_values: dict[int, Typed] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.qualifiers = self.qualifiers | {self.table.relname}

    def operand(self, node: exp.Expression) -> Operand:
        """Any operand (`Analyzer` dispatches on the node); leaves recurse through it."""
        raise NotImplementedError

    def fail(self, message: str, node: exp.Expression | None = None) -> QueryError:
        position = position_of(node) if node is not None else None
        return self.error(message, sql=self.sql, position=position)

    def comparable(self, left: str, right: str, node: exp.Expression) -> None:
        """Refuse comparisons pgsift cannot decide as Postgres does (intervals)."""
        if "interval" in (left, right):
            raise self.fail(
                "comparisons of interval values are not supported: Postgres counts a year "
                "as 360 days, psycopg (and so every row pgsift sees) as 365 "
                "(IS [NOT] NULL is supported)",
                node,
            )

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
                if self.scope.encloses(qualified, name):
                    raise self.correlated(f"{qualified}.{name}", node)
                raise self.fail(f"unknown table {qualified!r}", node)
        if name not in self.table.columns and qualifier is None and self.scope.encloses(None, name):
            raise self.correlated(name, node)
        type_name = readable_column(
            self.table,
            name,
            self.allowed_columns,
            sql=self.sql,
            position=position_of(node),
            error=self.error,
        )
        return Col(name, coerce.canonical_type(type_name))

    def correlated(self, name: str, node: exp.Expression) -> QueryError:
        return self.fail(
            f"correlated subqueries are not supported ({name} is a column of an enclosing "
            f"query, not of {self.table.name})",
            node,
        )

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
