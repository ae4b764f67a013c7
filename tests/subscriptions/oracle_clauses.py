"""Random WHERE clauses over `oracle_rows`' tables for the differential test against Postgres.

Clauses are type-correct by construction and cover the whole supported subset;
each parameter is kept in two forms: Postgres text (bound untyped, so Postgres
infers its type from the context exactly as for a client's `$n`) and the JSON
value a client would send to pgsift.

Subqueries read the inner tables `u` and `w`, which have the columns of `t`, so
an inner WHERE is drawn by the same builder (its names resolve to the inner
table, as in Postgres): `x [NOT] IN (SELECT y ...)`, `(x, y) [NOT] IN (SELECT
...)`, `[NOT] EXISTS (...)`, a constant `IN (SELECT ...)`, nested.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from tests.subscriptions.oracle_rows import (
    COLUMN_TYPES,
    COLUMNS,
    ENUM_LABELS,
    INNER_TABLES,
    NUMBER_COLUMNS,
    TEXT_COLUMNS,
    TEXTS,
    TIME_COLUMNS,
    UUIDS,
    ZONES,
    timestamps,
)


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def array_text(items: list[Any]) -> str:
    def element(item: Any) -> str:
        if item is None:
            return "NULL"
        text = str(item)
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "{" + ",".join(element(i) for i in items) + "}"


@dataclass
class Clause:
    """One generated clause: SQL with `$n`, Postgres text params, pgsift JSON params."""

    sql: str = ""
    pg_params: list[str | None] = field(default_factory=list)
    json_params: list[Any] = field(default_factory=list)

    def param(self, pg_text: str | None, json_value: Any, cast: str = "") -> str:
        self.pg_params.append(pg_text)
        self.json_params.append(json_value)
        return f"${len(self.pg_params)}{cast}"


class ClauseBuilder:
    """Draws a random boolean expression over table `t` (see `clauses`)."""

    def __init__(self, draw: Any, clause: Clause) -> None:
        self.draw = draw
        self.clause = clause

    def pick(self, options: Any) -> Any:
        return self.draw(st.sampled_from(list(options)))

    # -- constants of a family, as SQL text ---------------------------------------

    def number(self, column: str | None) -> str:
        kind = self.pick(["int", "bigint", "neg", "decimal", "float", "param", "unknown"])
        if kind == "int":
            return str(self.draw(st.integers(0, 300)))
        if kind == "bigint":
            return str(self.pick([2**31, 2**53 + 1, 2**63 - 1, 10**20]))
        if kind == "neg":
            return "-" + str(self.pick([1, 2, 2**31, 2**63]))
        if kind == "decimal":
            text = self.pick(["1.5", "0.1", "1.0", "42.000", "2147483647.5", "9007199254740993",
                              "123456789012345678901234567890.1234", "1e20", "-2.5"])  # fmt: skip
            return text if not text.startswith("-") else f"({text})"
        if kind == "float":
            text = self.pick(
                ["NaN", "Infinity", "-Infinity", "0.1", "1e20", "-0", "9007199254740993"]
            )
            return f"{quote(text)}::{self.pick(['float8', 'float4', 'numeric'])}"
        if kind == "param" and column is not None:
            value = self.param_value(COLUMN_TYPES[column])
            return self.clause.param(*value)
        if kind == "param":
            text = self.pick(["1.5", "7", "NaN", "-2"])
            cast = self.pick(
                [
                    "::float8",
                    "::numeric",
                    "::int8" if "." not in text and text != "NaN" else "::float8",
                ]
            )
            return self.clause.param(text, text, cast)
        if column is not None and column in ("n", "f4", "f8"):
            return quote(self.pick(["1.5", "NaN", "Infinity", "42", "-0"]))
        return quote(self.pick(["42", "-1", "0"]))

    def param_value(self, type_name: str) -> tuple[str, Any]:
        if type_name in ("int2", "int4"):
            value = self.pick([0, 1, -1, 42, 127, 32767])
            return str(value), value
        if type_name == "int8":
            value = self.pick([0, 1, 2**53 + 1, 2**63 - 1, -(2**63)])
            return str(value), value
        text = self.pick(["1.5", "0.1", "NaN", "42", "-2.5", "Infinity"])
        return text, text if type_name == "numeric" else self.pick([text, float(text)])

    def text(self) -> str:
        kind = self.pick(["literal", "literal", "param", "cast"])
        value = self.draw(TEXTS)
        if kind == "param":
            return self.clause.param(value, value)
        if kind == "cast":
            return f"{quote(value)}::{self.pick(['text', 'varchar'])}"
        return quote(value)

    def time(self, column: str) -> str:
        base = self.draw(timestamps())
        kind = self.pick(["date", "timestamp", "timestamptz", "unknown", "param"])
        if kind == "date":
            return f"{quote(base.date().isoformat())}::date"
        if kind == "timestamp":
            return f"{quote(base.isoformat(sep=' '))}::timestamp"
        zoned = base.replace(tzinfo=self.pick(ZONES)).isoformat(sep=" ")
        if kind == "timestamptz":
            return f"{quote(zoned)}::timestamptz"
        text = (
            base.date().isoformat()
            if column == "d"
            else (zoned if column == "tz" else base.isoformat(sep=" "))
        )
        if kind == "param":
            return self.clause.param(text, text)
        return quote(text)

    # -- operands ---------------------------------------------------------------

    def text_operand(self) -> str:
        column = self.pick(TEXT_COLUMNS)
        return str(self.pick([column, column, f"lower({column})", f"upper({column})"]))

    def comparison(self) -> str:
        family = self.pick(
            ["number", "number", "text", "text", "time", "bool", "uuid", "enum", "columns"]
        )
        op = self.pick(["=", "<>", "!=", "<", "<=", ">", ">="])
        if family == "number":
            column = self.pick(NUMBER_COLUMNS)
            left, right = column, self.number(column)
        elif family == "text":
            left, right = self.text_operand(), self.text()
        elif family == "time":
            column = self.pick(TIME_COLUMNS)
            left, right = column, self.time(column)
        elif family == "bool":
            left = "b"
            right = self.pick(["TRUE", "FALSE", "'t'", "'no'", "param"])
            if right == "param":
                right = self.clause.param("true", True)
        elif family == "uuid":
            value = str(self.pick(UUIDS))
            left = "u"
            right = self.pick([quote(value), f"{quote(value)}::uuid", "param"])
            if right == "param":
                right = self.clause.param(value, value)
        elif family == "enum":
            label = self.pick(ENUM_LABELS)
            left, right = "e", self.pick([quote(label), "param"])
            if right == "param":
                right = self.clause.param(label, label)
        else:
            group = self.pick([NUMBER_COLUMNS, TEXT_COLUMNS, TIME_COLUMNS])
            left, right = self.pick(group), self.pick(group)
        if self.draw(st.booleans()):
            left, right = right, left
        kind = self.pick(["cmp", "cmp", "distinct", "between"])
        if kind == "distinct":
            return f"{left} IS {self.pick(['', 'NOT '])}DISTINCT FROM {right}"
        if kind == "between" and family in ("number", "text", "time"):
            if family == "number":
                other = self.number(None)
            elif family == "text":
                other = self.text()
            else:
                other = self.time("tz")
            return f"{left} {self.pick(['', 'NOT '])}BETWEEN {right} AND {other}"
        return f"{left} {op} {right}"

    def membership(self) -> str:
        family = self.pick(["number", "text", "enum", "time"])
        if family == "number":
            column = self.pick(NUMBER_COLUMNS)
            count = self.draw(st.integers(1, 3))
            items = [
                "NULL" if self.draw(st.booleans()) else self.number(None) for _ in range(count)
            ]
        elif family == "text":
            column = self.text_operand()
            items = [
                self.pick([quote(self.draw(TEXTS)), "NULL"])
                for _ in range(self.draw(st.integers(1, 3)))
            ]
        elif family == "time":
            column = self.pick(TIME_COLUMNS)
            items = [self.time(column) for _ in range(self.draw(st.integers(1, 3)))]
        else:
            column = "e"
            items = [
                self.pick([quote(label) for label in ENUM_LABELS] + ["NULL"])
                for _ in range(self.draw(st.integers(1, 3)))
            ]
        kind = self.pick(["in", "in", "array", "any_param", "all_param"])
        negated = self.pick(["", "NOT "])
        if kind == "in":
            return f"{column} {negated}IN ({', '.join(items)})"
        if kind == "array":
            op, word = self.pick(["=", "<>", "<"]), self.pick(["ANY", "ALL"])
            return f"{column} {op} {word}(ARRAY[{', '.join(items)}])"
        if family in ("number", "enum") or family == "text":
            if family == "number":
                values = [
                    self.pick([1, 2, 42, -1, None]) for _ in range(self.draw(st.integers(0, 3)))
                ]
            elif family == "enum":
                values = [
                    self.pick([*ENUM_LABELS, None]) for _ in range(self.draw(st.integers(0, 3)))
                ]
            else:
                values = [
                    self.pick(["a", "A", "ß", "", None, "%"])
                    for _ in range(self.draw(st.integers(0, 3)))
                ]
            param = self.clause.param(array_text(values), values)
            op = "=" if kind == "any_param" else self.pick(["<>", "=", ">="])
            return f"{column} {op} {'ANY' if kind == 'any_param' else 'ALL'}({param})"
        return f"{column} {negated}IN ({', '.join(items)})"

    def array_column(self) -> str:
        if self.draw(st.booleans()):
            left = self.pick([str(self.pick([0, 1, 42, -1])), "i4", "i2", "NULL::int4"])
            return f"{left} {self.pick(['=', '<>', '>'])} {self.pick(['ANY', 'ALL'])}(ai)"
        left = self.pick([quote(self.draw(TEXTS)), "t", "lower(v)"])
        return f"{left} = {self.pick(['ANY', 'ALL'])}(at)"

    def like(self) -> str:
        pattern = self.draw(st.text(alphabet="aAß%_\\İıΣσ ", max_size=5))
        if (len(pattern) - len(pattern.rstrip("\\"))) % 2:  # Postgres rejects a lone final escape
            pattern += "%"
        word = self.pick(["LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"])
        rendered = (
            quote(pattern) if self.draw(st.booleans()) else self.clause.param(pattern, pattern)
        )
        return f"{self.text_operand()} {word} {rendered}"

    def subquery(self, depth: int) -> str:
        """A subquery predicate; its WHERE (over `u` / `w`) nests at most `depth` more."""
        table = self.pick(INNER_TABLES)
        where = f" WHERE {self.predicate(depth)}" if self.draw(st.booleans()) else ""
        kind = self.pick(["in", "in", "in", "row", "exists", "constant"])
        negated = self.pick(["", "", "NOT "])
        if kind == "exists":
            return f"{negated}EXISTS (SELECT 1 FROM {table}{where})"
        group = self.pick([NUMBER_COLUMNS, TEXT_COLUMNS, TIME_COLUMNS, ("e",), ("u",), ("b",)])
        if kind == "row":
            other = self.pick([NUMBER_COLUMNS, TEXT_COLUMNS, ("e",)])
            left = f"({self.pick(group)}, {self.pick(other)})"
            inner = f"{self.pick(group)}, {self.pick(other)}"
        else:
            left, inner = self.pick(group), self.pick(group)
            if group is TEXT_COLUMNS and self.draw(st.booleans()):
                left = f"{self.pick(['lower', 'upper'])}({left})"
        if kind == "constant":
            left = self.number(inner) if group is NUMBER_COLUMNS else self.text()
            if group not in (NUMBER_COLUMNS, TEXT_COLUMNS):
                return f"{negated}EXISTS (SELECT 1 FROM {table}{where})"
        return f"{left} {negated}IN (SELECT {inner} FROM {table}{where})"

    def null_test(self) -> str:
        return f"{self.pick(COLUMNS)} IS {self.pick(['', 'NOT '])}NULL"

    def predicate(self, depth: int) -> str:
        kind = self.pick(
            ["cmp", "cmp", "cmp", "in", "like", "null", "bool", "array"]
            + (["and", "or", "not", "is"] * 2 + ["sub"] * 3 if depth > 0 else [])
        )
        if kind == "sub":
            return self.subquery(depth - 1)
        if kind == "cmp":
            return self.comparison()
        if kind == "in":
            return self.membership()
        if kind == "like":
            return self.like()
        if kind == "null":
            return self.null_test()
        if kind == "bool":
            return str(
                self.pick(["b", "NOT b", "b IS TRUE", "b IS NOT FALSE", "TRUE", "NULL::bool",
                           "'null'::jsonb IS NULL", "'[1, {\"a\": null}]'::jsonb IS NOT NULL",
                           "NULL::jsonb IS NULL", "'{\"null\"}'::jsonb[] IS NULL"])
            )
        if kind == "array":
            return self.array_column()
        if kind == "not":
            return f"NOT ({self.predicate(depth - 1)})"
        if kind == "is":
            test = self.pick(["TRUE", "FALSE", "NULL"])
            return f"({self.predicate(depth - 1)}) IS {self.pick(['', 'NOT '])}{test}"
        op = " AND " if kind == "and" else " OR "
        return op.join(
            f"({self.predicate(depth - 1)})" for _ in range(self.draw(st.integers(2, 3)))
        )


@st.composite
def clauses(draw: Any) -> Clause:
    clause = Clause()
    clause.sql = ClauseBuilder(draw, clause).predicate(depth=2)
    return clause
