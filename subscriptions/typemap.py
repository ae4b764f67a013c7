"""Postgres column types -> the GraphQL types of the typed schema, and their filter operators.

Every column type gets a lossless GraphQL type whose values are the column's
wire form (`docs/wire-values.md`): GraphQL's `Int`, `Boolean` and `String`
where they are exact, a custom scalar elsewhere (`BigInt` for int8 travels as a
string, `Numeric` keeps its scale, `Float8` has NaN and the infinities), a
GraphQL enum for a Postgres enum, a list for an array. Which `where` operators a
column offers follows what a shape can decide exactly (`docs/query-language.md`):
ordered comparisons and lists for the comparable types, LIKE for text, and
`_isNull` alone for the rest (json, interval, arrays, types pgsift does not know).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pgsift.subscriptions.coerce import canonical_type
from pgsift.subscriptions.naming import pascal

# Every operator of a comparison input, in the order they are listed in the schema.
OPERATORS = (
    "_eq", "_neq", "_gt", "_gte", "_lt", "_lte", "_in", "_nin",
    "_isNull", "_like", "_ilike", "_isDistinctFrom",
)  # fmt: skip
NULL_TEST = ("_isNull",)
COMPARISONS = tuple(op for op in OPERATORS if op not in ("_like", "_ilike"))
TEXT_OPERATORS = OPERATORS

# Types whose values a shape compares exactly; others support IS [NOT] NULL only.
_COMPARABLE = frozenset({
    "int2", "int4", "int8", "numeric", "float4", "float8", "bool", "text", "varchar",
    "bpchar", "uuid", "date", "time", "timestamp", "timestamptz", "bytea",
})  # fmt: skip
_TEXT = frozenset({"text", "varchar", "bpchar"})


@dataclass(frozen=True, slots=True)
class Scalar:
    """A custom scalar of the typed schema; values are the wire form of `wire_type`."""

    name: str
    wire_type: str
    description: str


_SCALARS = (
    Scalar("BigInt", "int8", "A Postgres int8 (bigint) as a string of decimal digits, exact "
           "where JSON numbers are doubles; numbers are accepted as input too."),
    Scalar("Numeric", "numeric", "A Postgres numeric as a string in Postgres's notation, scale "
           'kept ("12.50", "NaN", "Infinity"); numbers are accepted as input too.'),
    Scalar("Float8", "float8", "A Postgres float4 or float8 as a JSON number (the shortest form "
           'that reads back as the same double), or "NaN", "Infinity", "-Infinity".'),
    Scalar("Oid", "oid", "A Postgres oid as a JSON number (0 to 4294967295)."),
    Scalar("Uuid", "uuid", "A Postgres uuid as a string."),
    Scalar("Date", "date", "A Postgres date, ISO 8601 (2026-03-29)."),
    Scalar("Time", "time", "A Postgres time, ISO 8601 (12:34:56.500000)."),
    Scalar("Timetz", "timetz", "A Postgres timetz, ISO 8601 with offset (12:00:01+05:30)."),
    Scalar("Timestamp", "timestamp", "A Postgres timestamp, ISO 8601 without offset "
           "(2024-01-02T03:04:05.123456)."),
    Scalar("Timestamptz", "timestamptz", "A Postgres timestamptz, ISO 8601 in UTC with offset "
           "(2024-01-02T03:04:05.123456+00:00)."),
    Scalar("Interval", "interval", "A Postgres interval as an ISO 8601 duration in days, hours, "
           "minutes and seconds (P1DT2H3M4.5S)."),
    Scalar("Json", "json", 'A Postgres json value as a string of its JSON text: "null" is the '
           "JSON null, SQL NULL is null."),
    Scalar("Jsonb", "jsonb", 'A Postgres jsonb value as a string of its JSON text: "null" is the '
           "JSON null, SQL NULL is null."),
    Scalar("Bytea", "bytea", 'A Postgres bytea as "\\x" and hex digits ("\\x00ff").'),
)  # fmt: skip
SCALARS: Mapping[str, Scalar] = {scalar.name: scalar for scalar in _SCALARS}

# Postgres type -> GraphQL scalar (built-in or one of SCALARS).
_BY_TYPE = {
    "int2": "Int", "int4": "Int", "int8": "BigInt", "oid": "Oid", "numeric": "Numeric",
    "float4": "Float8", "float8": "Float8", "bool": "Boolean", "text": "String",
    "varchar": "String", "bpchar": "String", "name": "String", "uuid": "Uuid", "date": "Date",
    "time": "Time", "timetz": "Timetz", "timestamp": "Timestamp", "timestamptz": "Timestamptz",
    "interval": "Interval", "json": "Json", "jsonb": "Jsonb", "bytea": "Bytea",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ColumnType:
    """How a column of one Postgres type looks in GraphQL."""

    pg_type: str  # canonical: `int8`, `issue_status`, `text[]`
    named: str  # the named type of a value: `BigInt`, `IssueStatus`, `String`
    is_list: bool  # an array column: `[named]`
    comparison: str  # its comparison input: `BigIntComparisonExp`
    operators: tuple[str, ...]  # the operators that input offers, in schema order


def column_type(pg_type: str, enums: Mapping[str, str | None]) -> ColumnType:
    """The GraphQL view of a `pg_type` column.

    `enums` maps each Postgres enum type to its GraphQL enum name, or to None
    for an enum exposed as `String` (labels that are not GraphQL names).
    """
    is_list = pg_type.endswith("[]")
    element = pg_type[:-2] if is_list else pg_type
    if element in enums:
        enum = enums[element]
        named = enum if enum is not None else "String"
        key = enum if enum is not None else pascal(element.replace(".", "_"))
        operators = COMPARISONS
    else:
        element = canonical_type(element)
        scalar = _BY_TYPE.get(element)
        named = scalar if scalar is not None else "String"
        key = scalar if scalar is not None and element != "name" else pascal(element)
        operators = TEXT_OPERATORS if element in _TEXT else (
            COMPARISONS if element in _COMPARABLE else NULL_TEST
        )
    if is_list:
        return ColumnType(
            f"{element}[]", named, True, f"{key}ArrayComparisonExp", NULL_TEST
        )
    return ColumnType(element, named, False, f"{key}ComparisonExp", operators)
