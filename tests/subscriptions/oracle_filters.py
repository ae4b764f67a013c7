"""Random `where` inputs, each with the Postgres condition it means, for the filter oracle.

The table is `oracle_rows`' (the same random rows full of edge values), with
snake_case column names so that the inputs use camelCase fields. Each input is
drawn together with its meaning written here by hand, independently of
`filters.py`, from the documented semantics: `IN (...)` / `NOT IN (...)` for
`_in` / `_nin` (an empty list FALSE / TRUE), `TRUE` for `{}` and `_and: []`,
`FALSE` for `_or: []`. Values are bound untyped, so Postgres types them from
the column; pgsift gets them in their JSON form. Arrays and the jsonb column
(`doc`, JSON null among its values) take `_isNull` alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from pgsift.subscriptions.naming import camel
from tests.subscriptions.oracle_rows import (
    BIG_INTS,
    CHARS,
    COLUMN_TYPES,
    DECIMALS,
    ENUM_LABELS,
    FLOATS,
    INTS,
    TEXTS,
    UUIDS,
    ZONES,
    float4,
    timestamps,
)

# oracle_rows' column -> this table's column.
RENAMED = {
    "i2": "small_int", "i4": "plain_int", "i8": "big_int", "n": "exact_num",
    "f4": "single_float", "f8": "double_float", "t": "body_text", "v": "short_text",
    "c": "fixed_text", "b": "is_done", "d": "due_day", "ts": "local_at", "tz": "zoned_at",
    "u": "owner_uuid", "e": "mood", "ai": "int_list", "at": "text_list", "j": "doc",
}  # fmt: skip
_SQL_TYPES = {"f4": "real", "c": "char(4)"}
TABLE_DDL = (
    f"CREATE TYPE mood AS ENUM ({', '.join(repr(label) for label in ENUM_LABELS)});\n"
    "CREATE TABLE filtered (id int8 PRIMARY KEY, "
    + ", ".join(f"{new} {_SQL_TYPES.get(old, COLUMN_TYPES[old])}" for old, new in RENAMED.items())
    + ");"
)
NULL_ONLY = ("ai", "at", "j")
COMPARE = {"_eq": "=", "_neq": "<>", "_gt": ">", "_gte": ">=", "_lt": "<", "_lte": "<="}


@dataclass
class FilterCase:
    """A `where` input, and its meaning as Postgres SQL with `$n` and untyped text params."""

    where: dict[str, Any] = field(default_factory=dict)
    sql: str = ""
    pg_params: list[str | None] = field(default_factory=list)

    def param(self, pg_text: str) -> str:
        self.pg_params.append(pg_text)
        return f"${len(self.pg_params)}"


def _float(value: float) -> tuple[Any, str]:
    if math.isfinite(value):
        return value, repr(value)
    text = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return text, text


class FilterBuilder:
    """Draws one `where` input over `filtered` (see `filter_cases`)."""

    def __init__(self, draw: Any, case: FilterCase) -> None:
        self.draw = draw
        self.case = case

    def pick(self, options: Any) -> Any:
        return self.draw(st.sampled_from(list(options)))

    def value(self, column: str) -> tuple[Any, str]:
        """A value for `column`: (JSON form for pgsift, Postgres text)."""
        if column in ("i2", "i4"):
            number = self.draw(INTS)
            return number, str(number)
        if column == "i8":
            number = self.draw(BIG_INTS)
            return self.pick([number, str(number)]), str(number)
        if column == "n":
            decimal: Decimal = self.draw(DECIMALS)
            return str(decimal), str(decimal)
        if column in ("f4", "f8"):
            number = self.draw(FLOATS)
            if column == "f4" and number != 0 and float4(number) == 0:
                # Postgres refuses a real that underflows to zero ('5e-324'::real), and
                # pgsift does not yet (coerce's float4 range check): not this test's subject.
                number = 0.0
            return _float(float4(number) if column == "f4" and self.draw(st.booleans()) else number)
        if column in ("t", "v"):
            text = self.draw(TEXTS)
            return text, text
        if column == "c":
            text = self.draw(st.text(alphabet="aA %_\\ß", max_size=4))
            return text, text
        if column == "b":
            flag = self.draw(st.booleans())
            return flag, "true" if flag else "false"
        if column == "d":
            day = self.pick([date(2026, 3, 29), date(2026, 3, 28), date(2026, 10, 25)])
            return day.isoformat(), day.isoformat()
        if column == "ts":
            text = self.draw(timestamps()).isoformat()
            return text, text
        if column == "tz":
            text = self.draw(timestamps()).replace(tzinfo=self.pick(ZONES)).isoformat()
            return text, text
        if column == "u":
            text = str(self.pick(UUIDS))
            return text, text
        label = self.pick(ENUM_LABELS)
        return label, label

    def condition(self, column: str, op: str) -> tuple[Any, str]:
        """One operator on `column`: its input value and its meaning in SQL."""
        target = RENAMED[column]
        if op == "_isNull":
            flag = self.draw(st.booleans())
            return flag, f"{target} IS {'' if flag else 'NOT '}NULL"
        if op in ("_in", "_nin"):
            values = [self.value(column) for _ in range(self.draw(st.integers(0, 3)))]
            if not values:
                return [], "FALSE" if op == "_in" else "TRUE"
            listed = ", ".join(self.case.param(text) for _, text in values)
            word = "IN" if op == "_in" else "NOT IN"
            return [value for value, _ in values], f"{target} {word} ({listed})"
        if op in ("_like", "_ilike"):
            pattern = self.draw(st.text(alphabet="aAß%_\\İıΣσ ", max_size=5))
            if (len(pattern) - len(pattern.rstrip("\\"))) % 2:
                pattern += "%"
            word = "LIKE" if op == "_like" else "ILIKE"
            return pattern, f"{target} {word} {self.case.param(pattern)}"
        value, text = self.value(column)
        if op == "_isDistinctFrom":
            return value, f"{target} IS DISTINCT FROM {self.case.param(text)}"
        return value, f"{target} {COMPARE[op]} {self.case.param(text)}"

    def column_ops(self, column: str) -> tuple[dict[str, Any], str]:
        if column in NULL_ONLY:
            ops = ["_isNull"]
        else:
            ops = [*COMPARE, "_in", "_nin", "_isNull", "_isDistinctFrom"]
            if column in ("t", "v", "c"):
                ops += ["_like", "_ilike"]
        chosen = self.draw(st.lists(st.sampled_from(ops), min_size=0, max_size=2, unique=True))
        parts = {op: self.condition(column, op) for op in chosen}
        return {op: value for op, (value, _) in parts.items()}, _all([s for _, s in parts.values()])

    def bool_exp(self, depth: int) -> tuple[dict[str, Any], str]:
        keys = [*RENAMED] + (["_and", "_or", "_not"] if depth > 0 else [])
        chosen = self.draw(st.lists(st.sampled_from(keys), min_size=0, max_size=3, unique=True))
        where: dict[str, Any] = {}
        meanings: list[str] = []
        for key in chosen:
            if key in ("_and", "_or"):
                items = [self.bool_exp(depth - 1) for _ in range(self.draw(st.integers(0, 3)))]
                where[key] = [item for item, _ in items]
                texts = [text for _, text in items]
                meanings.append(_all(texts) if key == "_and" else _any(texts))
            elif key == "_not":
                inner, text = self.bool_exp(depth - 1)
                where[key] = inner
                meanings.append(f"NOT ({text})")
            else:
                ops, text = self.column_ops(key)
                where[camel(RENAMED[key])] = ops
                meanings.append(text)
        return where, _all(meanings)


def _all(texts: list[str]) -> str:
    return " AND ".join(f"({text})" for text in texts) if texts else "TRUE"


def _any(texts: list[str]) -> str:
    return " OR ".join(f"({text})" for text in texts) if texts else "FALSE"


@st.composite
def filter_cases(draw: Any) -> FilterCase:
    case = FilterCase()
    case.where, case.sql = FilterBuilder(draw, case).bool_exp(depth=3)
    return case


def renamed_row(row: dict[str, Any]) -> dict[str, Any]:
    """An `oracle_rows` row with this table's column names."""
    return {RENAMED.get(name, name): value for name, value in row.items()}


__all__ = ["CHARS", "TABLE_DDL", "FilterCase", "filter_cases", "renamed_row"]
