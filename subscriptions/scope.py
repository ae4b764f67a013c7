"""Where a WHERE clause is analyzed: what its inner selects may read, and how deep they nest.

A client's query and its inner selects read every table under that table's
policy (`policy_of` returns it; PolicyError when policies are configured and
none is for the table). A policy's own row rule, and every select nested in
it, is configured by the operator and reads its tables without a policy: its
scope is `trusted()`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from pgsift.subscriptions.catalog import Catalog, Table
from pgsift.subscriptions.errors import PolicyError, QueryError
from pgsift.subscriptions.ir import Expr
from pgsift.subscriptions.operands import Slots

# How many selects may nest inside one another in a query (a parse option).
DEFAULT_SUBQUERY_DEPTH = 3


class TablePolicy(Protocol):
    """What analysis needs of a table's policy (`pgsift.subscriptions.Policy`)."""

    def allowed_columns(self, table: Table) -> tuple[str, ...]: ...

    def analyze(
        self, table: Table, catalog: Catalog, claims: Mapping[str, Any], slots: Slots
    ) -> Expr | None: ...


def _no_policy(table: str, position: int | None) -> TablePolicy | None:
    return None


@dataclass(frozen=True, slots=True)
class Scope:
    """The context of one select's analysis; `deeper` gives its inner selects'."""

    catalog: Catalog
    claims: Mapping[str, Any]
    # The policy a reader of the table (qualified name) is held to; the position is
    # where the table is named, for the error when no policy allows it.
    policy_of: Callable[[str, int | None], TablePolicy | None] = _no_policy
    max_depth: int = DEFAULT_SUBQUERY_DEPTH
    depth: int = 0
    # (qualifiers, table) of each enclosing select, outermost first: a name that
    # resolves there would make a subquery correlated.
    enclosing: tuple[tuple[frozenset[str], Table], ...] = ()

    def trusted(self) -> Scope:
        """The scope of a policy's rule: no policies, a fresh depth budget."""
        return Scope(self.catalog, self.claims, _no_policy, self.max_depth)

    def deeper(self, qualifiers: frozenset[str], table: Table) -> Scope:
        """The scope of a select nested in the one reading `table`."""
        return replace(self, depth=self.depth + 1, enclosing=(*self.enclosing, (qualifiers, table)))

    def encloses(self, qualifier: str | None, column: str) -> bool:
        """Whether `qualifier.column` (or a bare `column`) names an enclosing select's column."""
        for qualifiers, table in self.enclosing:
            if (qualifier is None or qualifier in qualifiers) and column in table.columns:
                return True
            if qualifier is not None and qualifier in qualifiers:
                return True
        return False


def readable_column(
    table: Table,
    name: str,
    allowed: Collection[str] | None,
    *,
    sql: str,
    position: int | None,
    error: type[QueryError] = QueryError,
) -> str:
    """The type of column `name` of `table`, which the reader's policy lets it read (its
    `allowed` columns; None: all). QueryError / PolicyError at `position` otherwise."""
    type_name = table.columns.get(name)
    if type_name is None:
        raise error(f"column {name!r} does not exist in {table.name}", sql=sql, position=position)
    if allowed is not None and name not in allowed:
        raise PolicyError(
            f"column {name!r} of {table.name} is not allowed by its policy",
            sql=sql,
            position=position,
        )
    return type_name
