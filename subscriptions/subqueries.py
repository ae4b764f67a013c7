"""`x IN (SELECT ...)`, `(a, b) IN (SELECT ...)` and `EXISTS (SELECT ...)`: inner selects.

An inner select is checked like a query (`parse.select_outline`): one table,
plain columns, an optional WHERE in the same subset; everything else (joins,
DISTINCT, LIMIT, aggregates, UNION, a reference to an enclosing query's
column) is refused with the construct and its position. It nests at most
`Scope.max_depth` selects deep.

In a client's query an inner select reads its table under that table's policy:
it may only name columns the policy allows, and the policy's row rule is
ANDed into its WHERE. Otherwise `project_id IN (SELECT id FROM projects WHERE
secret = 'x')` would tell the client `secret` through which rows arrive. A
policy's own inner selects are the operator's and read without a policy.

The select is typed in its own slot space (shared by every statement with the
same select: `InnerSet`) and embedded into the enclosing statement's constants
for `to_sql`. Postgres types a sublink's select before its left side, so a
`$n` used in both takes its type from the select, as here.
"""

from __future__ import annotations

from sqlglot import exp

from pgsift.subscriptions import coerce
from pgsift.subscriptions.catalog import Table
from pgsift.subscriptions.domains import KeySpec, comparison_keys
from pgsift.subscriptions.errors import QueryError
from pgsift.subscriptions.inner import InnerSet
from pgsift.subscriptions.ir import Col, Expr, InSet, Logic, Not, Select
from pgsift.subscriptions.lists import ListAnalyzer
from pgsift.subscriptions.operands import Pending, Slots, operand_type
from pgsift.subscriptions.parse import ParsedSelect, select_outline
from pgsift.subscriptions.scope import readable_column


class SubqueryAnalyzer(ListAnalyzer):
    """Types inner selects; the concrete analyzer (`Analyzer`) analyzes their WHERE."""

    def condition(self, node: exp.Expression) -> Expr:
        """A boolean expression (`Analyzer` implements it)."""
        raise NotImplementedError

    def in_select(self, node: exp.In) -> Expr:
        left = node.this
        args = list(left.expressions) if isinstance(left, exp.Tuple) else [left]
        expr = self.inner_select(node.args["query"], args, node)
        return Not(expr) if node.args.get("negate") else expr

    def exists(self, node: exp.Exists) -> Expr:
        return self.inner_select(node.this, [], node)

    def inner_select(
        self, query: exp.Expression, arg_nodes: list[exp.Expression], node: exp.Expression
    ) -> InSet:
        scope = self.scope
        statement = self.unwrapped(query)
        if scope.depth >= scope.max_depth:
            raise self.fail(
                f"subqueries nested too deeply (at most {scope.max_depth} levels)", query
            )
        try:
            outline = select_outline(statement, self.sql, constants=not arg_nodes)
        except QueryError as exc:
            if isinstance(exc, self.error):
                raise
            raise self.error(exc.reason, sql=self.sql, position=exc.position) from None
        table = self.inner_table(outline)
        policy = scope.policy_of(table.name, outline.table_position)
        allowed = frozenset(policy.allowed_columns(table)) if policy is not None else None
        columns = self.selected(outline, table, allowed, len(arg_nodes), node)
        slots = Slots()
        inner = type(self)(
            self.sql,
            table,
            enums=self.enums,
            slots=slots,
            params=self.params,
            claims=self.claims,
            qualifiers=outline.qualifiers,
            allowed_columns=allowed,
            error=self.error,
            scope=scope.deeper(self.qualifiers, self.table),
        )
        # `$n` keeps the type of its first use across the whole statement.
        inner.param_types = self.param_types
        inner.param_values = self.param_values
        where = inner.condition(outline.where) if outline.where is not None else None
        if policy is not None:
            rule = policy.analyze(table, scope.catalog, scope.claims, slots)
            if rule is not None:
                where = rule if where is None else Logic("and", (where, rule))
        args: list[Expr] = []
        arg_keys: list[KeySpec] = []
        element_keys: list[KeySpec] = []
        for arg_node, column in zip(arg_nodes, columns, strict=True):
            operand = self.operand(arg_node)
            if isinstance(operand, Pending):
                operand = self.typed(operand, column.type)
            left = operand_type(operand)
            self.comparable(left, column.type, node)
            keys = comparison_keys(left, column.type, self.enums)
            if keys is None:
                raise self.fail(f"operator does not exist: {left} = {column.type}", node)
            args.append(self.as_expr(operand, keys[0]))
            arg_keys.append(keys[0])
            element_keys.append(keys[1])
        select = Select(table.name, columns, where)
        inner_set = InnerSet(
            select,
            tuple(element_keys),
            table,
            tuple(slots.params),
            tuple(slots.runtime),
            tuple(slots.sets),
        )
        offset = self.slots.embed(slots)
        position = self.slots.add_set(inner_set)
        return InSet(tuple(args), tuple(arg_keys), tuple(element_keys), select, position, offset)

    def unwrapped(self, query: exp.Expression) -> exp.Select:
        """The select of `IN (...)` / `EXISTS (...)` (`IN ((SELECT ...))` is one too)."""
        while isinstance(query, exp.Subquery):
            if query.args.get("alias") is not None:
                raise self.fail("aliases of subqueries are not supported", query)
            query = query.this
        if isinstance(query, exp.SetOperation):
            kind = type(query).__name__.upper()
            raise self.fail(f"{kind} is not supported in subqueries", query)
        if not isinstance(query, exp.Select):
            raise self.fail("only SELECT ... FROM ... is supported in subqueries", query)
        return query

    def inner_table(self, outline: ParsedSelect) -> Table:
        name = f"{outline.schema}.{outline.table}" if outline.schema else outline.table
        table = self.scope.catalog.find(name)
        if table is None:
            raise self.error(
                f"table {name!r} does not exist", sql=self.sql, position=outline.table_position
            )
        return table

    def selected(
        self,
        outline: ParsedSelect,
        table: Table,
        allowed: frozenset[str] | None,
        count: int,
        node: exp.Expression,
    ) -> tuple[Col, ...]:
        """The inner select's columns, one per argument of IN (none for EXISTS)."""
        columns: list[Col] = []
        for item in outline.items:
            if item.constant:
                continue
            if item.name is None:
                if count:
                    raise self.error(
                        "SELECT * is not supported in an IN subquery: name the column",
                        sql=self.sql,
                        position=item.position,
                    )
                continue
            type_name = readable_column(
                table, item.name, allowed, sql=self.sql, position=item.position, error=self.error
            )
            columns.append(Col(item.name, coerce.canonical_type(type_name)))
        if not count:
            return ()
        if len(columns) != count:
            many = "many" if len(columns) > count else "few"
            raise self.fail(f"subquery has too {many} columns", node)
        return tuple(columns)
