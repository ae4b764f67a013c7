"""A validated subscription: which table, which columns, which rows (`Shape`).

A shape is a compiled `Template` (the statement with its constants taken out:
shared by every shape that differs only in constants) plus its own constants.
No sqlglot tree is kept, so a registered shape costs well under a kilobyte.

A shape with `x IN (SELECT ...)` (its own, or its policy's) reads inner sets:
`inner_sets` lists them by position, and `matches` takes their current states
from a provider (`sets=`; see `pgsift.subscriptions.sets`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from pgsift.subscriptions.analyze import Analyzer, Slots
from pgsift.subscriptions.catalog import Catalog, Table
from pgsift.subscriptions.errors import QueryError
from pgsift.subscriptions.inner import InnerSet
from pgsift.subscriptions.ir import Expr, Logic
from pgsift.subscriptions.parse import ParsedSelect, parse_select
from pgsift.subscriptions.policy import Policy, policy_for
from pgsift.subscriptions.scope import DEFAULT_SUBQUERY_DEPTH, Scope, readable_column
from pgsift.subscriptions.template import Template, Templated, template_for
from pgsift.subscriptions.terms import IndexTerms, SetTerms, index_terms, like_terms, set_terms
from pgsift.subscriptions.wire import untyped_json


class Shape(Templated):
    """The rows of one table a subscriber may see and asked for, and the columns."""

    __slots__ = ("index_terms", "key", "set_terms")

    def __init__(
        self,
        template: Template,
        params: tuple[Any, ...],
        consts: tuple[Any, ...],
        inner_sets: tuple[InnerSet, ...] = (),
    ):
        super().__init__(template, params, consts, inner_sets)
        document = json.dumps([untyped_json(p) for p in params], sort_keys=True)
        digest = hashlib.sha256(f"{template.normalized}\0{document}".encode())
        self.key: str = digest.hexdigest()
        self.index_terms: IndexTerms = index_terms(template.recipe, params, consts)
        self.set_terms: SetTerms = set_terms(template.recipe, self._set_keys)

    @classmethod
    def parse(
        cls,
        sql: str,
        params: Sequence[Any] | None = (),
        *,
        catalog: Catalog,
        claims: Mapping[str, Any] | None = None,
        policies: Mapping[str, Policy] | None = None,
        max_subquery_depth: int = DEFAULT_SUBQUERY_DEPTH,
    ) -> Shape:
        """Validate `sql` against `catalog` (and the table's policy); QueryError / PolicyError.

        Inner selects nest at most `max_subquery_depth` deep (the query's own;
        policies' inner selects have a budget of their own).
        """
        try:
            scope = Scope(
                catalog,
                claims or {},
                policy_of=lambda name, position: _policy(policies, name, catalog, sql, position),
                max_depth=max_subquery_depth,
            )
            return cls._parse(sql, params or (), scope, policies)
        except RecursionError:  # the caller's stack was already deep; parse bounds nesting
            raise QueryError("query nested too deeply", sql=sql) from None

    @classmethod
    def _parse(
        cls,
        sql: str,
        params: Sequence[Any],
        scope: Scope,
        policies: Mapping[str, Policy] | None,
    ) -> Shape:
        catalog = scope.catalog
        parsed = parse_select(sql)
        table = _resolve_table(parsed, catalog)
        policy = _policy(policies, table.name, catalog, sql, parsed.table_position)
        allowed = policy.allowed_columns(table) if policy is not None else None
        columns = _columns(parsed, table, allowed)
        slots = Slots()
        where: Expr | None = None
        if parsed.where is not None:
            where = Analyzer(
                sql,
                table,
                enums=catalog.enums,
                slots=slots,
                params=params,
                qualifiers=parsed.qualifiers,
                allowed_columns=frozenset(allowed) if allowed is not None else None,
                scope=scope,
            ).where(parsed.where)
        elif params:
            raise QueryError(f"the query uses no parameters but {len(params)} were given", sql=sql)
        if policy is not None:
            rule = policy.analyze(table, catalog, scope.claims, slots)
            if rule is not None:
                where = rule if where is None else _and(where, rule)
        types = tuple(table.columns[c] for c in columns)
        template = template_for(table.name, columns, table.primary_key, where, types)
        return cls(template, tuple(slots.params), tuple(slots.runtime), tuple(slots.sets))

    @property
    def columns(self) -> tuple[str, ...]:
        return self._template.columns

    @property
    def like_terms(self) -> tuple[tuple[str, str, bool], ...]:
        """(column, pattern, insensitive) of top-level `col [I]LIKE constant` conjuncts."""
        return like_terms(self._template.recipe, self._params)

    def project(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """`row` cut down to the selected columns."""
        return {column: row.get(column) for column in self._template.columns}



def _and(left: Expr, right: Expr) -> Expr:
    items = [
        *(left.items if isinstance(left, Logic) and left.op == "and" else (left,)),
        *(right.items if isinstance(right, Logic) and right.op == "and" else (right,)),
    ]
    return Logic("and", tuple(items))


def _policy(
    policies: Mapping[str, Policy] | None,
    table: str,
    catalog: Catalog,
    sql: str,
    position: int | None,
) -> Policy | None:
    """The policy a reader of `table` is held to, checked against the catalog."""
    policy = policy_for(policies, table, sql=sql, position=position)
    if policy is not None:
        policy.check(catalog)
    return policy


def _resolve_table(parsed: ParsedSelect, catalog: Catalog) -> Table:
    name = f"{parsed.schema}.{parsed.table}" if parsed.schema else parsed.table
    table = catalog.find(name)
    if table is None:
        raise QueryError(
            f"table {name!r} does not exist", sql=parsed.sql, position=parsed.table_position
        )
    return table


def _columns(
    parsed: ParsedSelect, table: Table, allowed: tuple[str, ...] | None
) -> tuple[str, ...]:
    selected: list[str] = []
    for item in parsed.items:
        if item.name is None:
            names = list(allowed if allowed is not None else table.columns)
        else:
            readable_column(table, item.name, allowed, sql=parsed.sql, position=item.position)
            names = [item.name]
        selected.extend(n for n in names if n not in selected)
    missing = [column for column in table.primary_key if column not in selected]
    if missing:
        raise QueryError(
            f"the primary key column(s) {', '.join(missing)} must be selected",
            sql=parsed.sql,
            position=parsed.items[0].position if parsed.items else None,
        )
    return tuple(selected)
