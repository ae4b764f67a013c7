"""Auth policies: per table, the columns a caller may read and a row rule over its claims.

Config (`pgsift.toml`)::

    [policies."public.issues"]
    columns = ["id", "team_id", "title", "status"]      # optional: all columns
    row = "team_id = ANY(auth.team_ids) OR assignee_id = auth.sub"   # optional

`auth.<claim>` names a claim of the caller's verified token; a missing (or
`null`) claim is a `PolicyError`, never SQL NULL. The rule is ANDed into every shape of the
table and into batch loads (`bind`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pgsift.subscriptions.analyze import Analyzer, Slots
from pgsift.subscriptions.catalog import Catalog, Table
from pgsift.subscriptions.compile import Fn, compile_expr
from pgsift.subscriptions.errors import PolicyError
from pgsift.subscriptions.inner import InnerSet
from pgsift.subscriptions.ir import Expr
from pgsift.subscriptions.parse import parse_condition
from pgsift.subscriptions.render import psycopg_placeholder, render
from pgsift.subscriptions.scope import Scope
from pgsift.subscriptions.sets import SetProvider, bind_states

_KEYS = frozenset({"columns", "row"})


@dataclass(frozen=True, slots=True)
class Policy:
    """One table's policy as configured; checked against a catalog when used."""

    table: str
    columns: tuple[str, ...] | None = None
    row: str | None = None
    catalog: Catalog | None = None

    @classmethod
    def from_config(
        cls, table: str, config: Mapping[str, Any], *, catalog: Catalog | None = None
    ) -> Policy:
        """A policy from its `[policies."schema.table"]` table; PolicyError if malformed."""
        qualified = table if "." in table else f"public.{table}"
        unknown = sorted(set(config) - _KEYS)
        if unknown:
            raise PolicyError(f"policy for {qualified}: unknown key(s) {', '.join(unknown)}")
        columns = config.get("columns")
        if columns is not None and (
            not isinstance(columns, list | tuple) or not all(isinstance(c, str) for c in columns)
        ):
            raise PolicyError(f"policy for {qualified}: columns must be a list of column names")
        row = config.get("row")
        if row is not None:
            if not isinstance(row, str):
                raise PolicyError(f"policy for {qualified}: row must be a SQL condition string")
            parse_condition(row, error=PolicyError)
        policy = cls(qualified, tuple(columns) if columns is not None else None, row, catalog)
        if catalog is not None:
            policy.check(catalog)
        return policy

    def allowed_columns(self, table: Table) -> tuple[str, ...]:
        """The readable columns of `table`, in table order."""
        if self.columns is None:
            return tuple(table.columns)
        return tuple(c for c in table.columns if c in self.columns)

    def check(self, catalog: Catalog) -> None:
        """Raise PolicyError if the policy does not fit the catalog's table."""
        table = catalog.find(self.table)
        if table is None:
            raise PolicyError(f"policy for unknown table {self.table}")
        unknown = [c for c in self.columns or () if c not in table.columns]
        if unknown:
            raise PolicyError(f"policy for {self.table}: unknown column(s) {', '.join(unknown)}")
        hidden = [c for c in table.primary_key if c not in self.allowed_columns(table)]
        if hidden:
            raise PolicyError(f"policy for {self.table}: primary key {', '.join(hidden)} hidden")

    def analyze(
        self, table: Table, catalog: Catalog, claims: Mapping[str, Any], slots: Slots
    ) -> Expr | None:
        """The row rule typed against `table`, its claims added to `slots`."""
        if self.row is None:
            return None
        analyzer = Analyzer(
            self.row,
            table,
            enums=catalog.enums,
            slots=slots,
            claims=claims,
            error=PolicyError,
            # The operator's rule: its inner selects read their tables without a policy.
            scope=Scope(catalog, claims).trusted(),
        )
        return analyzer.where(parse_condition(self.row, error=PolicyError))

    def bind(self, claims: Mapping[str, Any], *, catalog: Catalog | None = None) -> BoundPolicy:
        """The policy for one caller: row filter and readable columns (for batch loads)."""
        catalog = catalog or self.catalog
        if catalog is None:
            raise PolicyError(f"policy for {self.table}: bind needs a catalog")
        table = catalog.find(self.table)
        if table is None:
            raise PolicyError(f"policy for unknown table {self.table}")
        slots = Slots()
        rule = self.analyze(table, catalog, claims, slots)
        return BoundPolicy(
            table=table.name,
            allowed_columns=self.allowed_columns(table),
            predicate=compile_expr(rule) if rule is not None else None,
            consts=tuple(slots.runtime),
            sql=render(rule, psycopg_placeholder, psycopg=True) if rule is not None else "TRUE",
            params=tuple(slots.params),
            inner_sets=tuple(slots.sets),
        )


@dataclass(frozen=True, slots=True)
class BoundPolicy:
    """A policy with one caller's claims filled in."""

    table: str
    allowed_columns: tuple[str, ...]
    predicate: Fn | None
    consts: tuple[Any, ...]
    sql: str
    params: tuple[Any, ...]
    # The sets the rule's `IN (SELECT ...)` read, by position (see `Shape.inner_sets`).
    inner_sets: tuple[InnerSet, ...] = ()

    def matches(self, row: Mapping[str, Any], sets: SetProvider | None = None) -> bool:
        """True when the caller may see `row` (Postgres semantics: NULL is no); a rule
        with inner sets reads their states from `sets`."""
        if self.predicate is None:
            return True
        consts = self.consts
        if self.inner_sets:
            consts = bind_states(consts, [inner.key for inner in self.inner_sets], sets)
        return self.predicate(row, consts) is True  # type: ignore[arg-type]

    def to_sql_where(self) -> tuple[str, list[Any]]:
        """`(fragment, params)` to AND into a WHERE clause; `%s` placeholders."""
        return f"({self.sql})", list(self.params)

    def project(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """`row` without the columns the caller may not read."""
        return {c: row[c] for c in self.allowed_columns if c in row}


def policy_for(
    policies: Mapping[str, Policy] | None,
    table: str,
    *,
    sql: str | None = None,
    position: int | None = None,
) -> Policy | None:
    """The policy a reader of `table` (qualified name) is held to, for shapes and batch
    loads alike: None when no policies are configured (every table is readable);
    PolicyError when policies are configured but none is for `table`."""
    if not policies:
        return None
    policy = policies.get(table)
    if policy is None:
        raise PolicyError(f"no policy allows reading {table}", sql=sql, position=position)
    return policy


def policies_from_config(
    config: Mapping[str, Mapping[str, Any]], *, catalog: Catalog | None = None
) -> dict[str, Policy]:
    """The `[policies]` table of `pgsift.toml` -> policies by qualified table name."""
    policies: dict[str, Policy] = {}
    for table, spec in config.items():
        if not isinstance(spec, Mapping):
            raise PolicyError(f"policy for {table}: expected a table of settings")
        policy = Policy.from_config(table, spec, catalog=catalog)
        policies[policy.table] = policy
    return policies
