"""Shapes for the routing tests, described as data and built into real shapes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.shape import Shape

ISSUES = "public.issues"
COLUMNS = {
    "id": "int8",
    "team_id": "int4",
    "status": "text",
    "title": "text",
    "priority": "int4",
    "score": "float8",
    "amount": "numeric",
    "kind": "issue_kind",
    "code": "bpchar",
    "flagged": "bool",
}
CATALOG = Catalog.from_dict(
    {
        ISSUES: {"columns": COLUMNS, "primary_key": ["id"]},
        "public.teams": {"columns": {"id": "int4", "name": "text"}, "primary_key": ["id"]},
    },
    enums={"issue_kind": ["bug", "feature", "chore"]},
)


@dataclass(frozen=True)
class Cond:
    """One conjunct: `column <op> value`; op is = in like ilike > isnull or true (bare column)."""

    column: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class Spec:
    """`SELECT <columns> FROM <table> WHERE <conds ANDed>` with $n parameters."""

    columns: tuple[str, ...]
    conds: tuple[Cond, ...]
    table: str = ISSUES

    def sql(self) -> tuple[str, list[Any]]:
        params: list[Any] = []
        parts = []
        for cond in self.conds:
            if cond.op == "isnull":
                parts.append(f"{cond.column} IS NULL")
            elif cond.op == "true":
                parts.append(cond.column)
            elif cond.op == "in":
                marks = []
                for value in cond.value:
                    params.append(value)
                    marks.append(f"${len(params)}")
                parts.append(f"{cond.column} IN ({', '.join(marks)})")
            else:
                params.append(cond.value)
                op = {"=": "=", ">": ">", "like": "LIKE", "ilike": "ILIKE"}[cond.op]
                parts.append(f"{cond.column} {op} ${len(params)}")
        where = f" WHERE {' AND '.join(parts)}" if parts else ""
        return f"SELECT {', '.join(self.columns)} FROM {self.table}{where}", params


def build(spec: Spec) -> Shape:
    """The real shape for `spec`."""
    sql, params = spec.sql()
    return Shape.parse(sql, params, catalog=CATALOG)
