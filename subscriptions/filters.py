"""A Hasura-style `where` input -> SQL text with `$n` parameters -> a `Shape`.

`{teamId: {_eq: 3}, _or: [{status: {_in: ["todo"]}}, {priority: {_gt: 2}}]}`
becomes `SELECT ... FROM "public"."issues" WHERE "team_id" = $1 AND (("status" =
ANY($2)) OR ("priority" > $3))` with params `[3, ["todo"], 2]`, and that goes
through `Shape.parse` like any client's SQL: the same typing of values, the same
Postgres semantics, policies, routing and snapshot SQL, by construction. Field
names are quoted column identifiers and every value is a parameter, so nothing
of the input is spliced into the text.

Semantics (`docs/graphql-filters.md`): the fields of one object, and the
operators of one column, must all hold (AND); `{}` and `_and: []` are true,
`_or: []` is false, `_not: {}` false; `_in: []` matches no row and `_nin: []`
every row (NULL included), as `= ANY('{}')` / `<> ALL('{}')` do in Postgres.
`null` as an operator's value is refused (use `_isNull`), and so are unknown
fields and operators, each error naming its path in the input
(`where._or[1].status._in`). Inputs are bounded: at most `MAX_DEPTH` levels of
`_and` / `_or` / `_not`, at most `max_conditions` objects and operators.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.errors import PolicyError, QueryError
from pgsift.subscriptions.policy import Policy
from pgsift.subscriptions.shape import Shape
from pgsift.subscriptions.typemap import OPERATORS
from pgsift.subscriptions.typemodel import TypedTable

# Ten levels of _and/_or/_not keep the SQL within the parser's nesting limit
# (24): a level adds at most two (NOT and a parenthesis), a term one (ANY(...)).
MAX_DEPTH = 10
MAX_CONDITIONS = 256

_COMPARE = {"_eq": "=", "_neq": "<>", "_gt": ">", "_gte": ">=", "_lt": "<", "_lte": "<="}
_PATTERN = {"_like": "LIKE", "_ilike": "ILIKE"}
_LIST = {"_in": "= ANY", "_nin": "<> ALL"}
_PARAM_PREFIX = re.compile(r"^\$\d+: ")


class FilterError(QueryError):
    """A `where` input pgsift refuses; `path` says where in the input (`where.teamId._eq`)."""

    def __init__(self, message: str, *, path: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


Span = tuple[int, int, str]  # start, end (exclusive) in the SQL text, path in the input


@dataclass(frozen=True, slots=True)
class FilterQuery:
    """The SQL a `where` input compiles to, its parameters, and where each part came from."""

    sql: str
    params: tuple[Any, ...]
    spans: tuple[Span, ...]

    def to_shape(
        self,
        *,
        catalog: Catalog,
        claims: Mapping[str, Any] | None = None,
        policies: Mapping[str, Policy] | None = None,
    ) -> Shape:
        """`Shape.parse` of the query; an error about the input names its path in it."""
        try:
            return Shape.parse(
                self.sql, self.params, catalog=catalog, claims=claims, policies=policies
            )
        except QueryError as exc:
            refused = self.refusal(exc)
            if refused is exc:
                raise
            raise refused from None

    def refusal(self, exc: QueryError) -> QueryError:
        """`exc`, raised parsing this query, as an error about the input (naming its path);
        `exc` itself when it is about something else (the policy's own rule)."""
        if exc.sql != self.sql:
            return exc
        reason = _PARAM_PREFIX.sub("", exc.reason)
        path = self.path_at(exc.position)
        if isinstance(exc, PolicyError):
            return PolicyError(f"{path}: {reason}")
        return FilterError(reason, path=path)

    def path_at(self, position: int | None) -> str:
        """The input path of the innermost part of the SQL text around `position`."""
        inside = [
            span for span in self.spans if position is not None and span[0] <= position < span[1]
        ]
        return min(inside, key=lambda span: span[1] - span[0])[2] if inside else "where"


def compile_filter(
    table: TypedTable,
    where: Mapping[str, Any] | None,
    *,
    select: Iterable[str] | None = None,
    max_conditions: int = MAX_CONDITIONS,
) -> FilterQuery:
    """The subscription query for `where` on `table`, selecting the fields `select`.

    `where` is the argument as plain data: GraphQL field names, values in wire
    form (what the schema's scalars and enums parse to); None means every row.
    `select` names the fields to sync (None: every readable one); the primary
    key is always added. FilterError for anything refused, naming its path.
    """
    names = table.names
    wanted = set(table.primary_key)
    for name in select if select is not None else names.columns:
        column = names.columns.get(name)
        if column is None:
            raise FilterError(f"unknown field {name!r} of {names.type}", path="select")
        wanted.add(column)
    columns = ", ".join(_quote(c) for c in names.fields if c in wanted)
    schema, _, relname = names.table.partition(".")
    head = f"SELECT {columns} FROM {_quote(schema)}.{_quote(relname)}"
    if where is None:
        return FilterQuery(head, (), ())
    compiler = _Compiler(table, max_conditions)
    body = compiler.bool_exp(where, "where", 0)
    if body.constant is True:
        return FilterQuery(head, (), ())
    head += " WHERE "
    spans = tuple((start + len(head), end + len(head), path) for start, end, path in body.spans)
    return FilterQuery(head + body.text, tuple(compiler.params), spans)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(slots=True)
class _Sql:
    """A piece of the WHERE text with the spans of its parts, relative to its start."""

    text: str
    spans: list[Span] = field(default_factory=list)
    compound: bool = False  # an AND / OR: needs parentheses inside another one
    constant: bool | None = None  # TRUE / FALSE, from empty objects and lists


_TRUE = _Sql("TRUE", constant=True)
_FALSE = _Sql("FALSE", constant=False)


def _join(word: str, pieces: Sequence[_Sql], path: str) -> _Sql:
    """`pieces` joined by AND / OR; an AND of nothing is TRUE, an OR of nothing FALSE.

    Only constants that stand for no input value are dropped (TRUE from an AND,
    FALSE from an OR), so every value of the input still reaches the parser.
    """
    neutral = word == "AND"
    kept = [piece for piece in pieces if piece.constant is not neutral]
    if not kept:
        return _TRUE if neutral else _FALSE
    if len(kept) == 1:
        return kept[0]
    text, spans = "", list[Span]()
    for piece in kept:
        if text:
            text += f" {word} "
        start = len(text) + (1 if piece.compound else 0)
        text += f"({piece.text})" if piece.compound else piece.text
        spans.extend((start + s, start + e, p) for s, e, p in piece.spans)
    spans.append((0, len(text), path))
    return _Sql(text, spans, compound=True)


class _Compiler:
    """Walks one `where` input, collecting parameters and counting conditions."""

    def __init__(self, table: TypedTable, max_conditions: int) -> None:
        self.table = table
        self.max_conditions = max_conditions
        self.params: list[Any] = []
        self.conditions = 0

    def count(self, path: str) -> None:
        self.conditions += 1
        if self.conditions > self.max_conditions:
            raise FilterError(
                f"too many conditions (more than {self.max_conditions} objects and operators)",
                path=path,
            )

    def bool_exp(self, node: object, path: str, depth: int) -> _Sql:
        if depth > MAX_DEPTH:
            raise FilterError(
                f"nested too deeply (more than {MAX_DEPTH} levels of _and, _or and _not)",
                path=path,
            )
        if not isinstance(node, Mapping):
            raise FilterError(
                f"expected an object ({self.table.names.bool_exp}), got {_kind(node)}", path=path
            )
        self.count(path)
        parts: list[_Sql] = []
        for key, value in node.items():
            at = f"{path}.{key}"
            if key in ("_and", "_or"):
                if not isinstance(value, list | tuple):
                    raise FilterError(f"expected a list, got {_kind(value)}", path=at)
                items = [self.bool_exp(item, f"{at}[{i}]", depth + 1)
                         for i, item in enumerate(value)]  # fmt: skip
                parts.append(_join("AND" if key == "_and" else "OR", items, at))
            elif key == "_not":
                parts.append(self.negate(self.bool_exp(value, at, depth + 1), at))
            else:
                parts.append(self.column(key, value, at))
        return _join("AND", parts, path)

    def negate(self, inner: _Sql, path: str) -> _Sql:
        if inner.constant is not None:
            return _FALSE if inner.constant else _TRUE
        spans = [(s + 5, e + 5, p) for s, e, p in inner.spans]
        text = f"NOT ({inner.text})"
        return _Sql(text, [*spans, (0, len(text), path)])

    def column(self, key: object, ops: object, path: str) -> _Sql:
        names = self.table.names
        column = names.columns.get(key) if isinstance(key, str) else None
        if column is None:
            fields = ["_and", "_or", "_not", *names.columns]
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise FilterError(f"unknown field {key!r} of {names.bool_exp}{hint}", path=path)
        if not isinstance(ops, Mapping):
            kind = self.table.columns[column].comparison
            raise FilterError(f"expected an object ({kind}), got {_kind(ops)}", path=path)
        terms = [self.term(column, op, value, f"{path}.{op}") for op, value in ops.items()]
        return _join("AND", terms, path)

    def term(self, column: str, op: object, value: object, path: str) -> _Sql:
        kind = self.table.columns[column]
        if op not in kind.operators:
            offered = f"{kind.comparison} has {', '.join(kind.operators)}"
            if op in OPERATORS:
                raise FilterError(
                    f"{op} is not available for {kind.pg_type} columns; {offered}", path=path
                )
            raise FilterError(f"unknown operator {op!r}; {offered}", path=path)
        self.count(path)
        target = _quote(column)
        if op == "_isNull":
            if not isinstance(value, bool):
                raise FilterError(f"_isNull takes true or false, not {_kind(value)}", path=path)
            return self.spanned(f"{target} IS {'' if value else 'NOT '}NULL", path)
        if value is None:
            raise FilterError("null is not a value to compare with; use _isNull", path=path)
        if op in _LIST:
            if not isinstance(value, list | tuple):
                raise FilterError(f"expected a list, got {_kind(value)}", path=path)
            for i, item in enumerate(value):
                if item is None or isinstance(item, list | tuple | Mapping):
                    raise FilterError(f"expected a single value, not {_kind(item)}",
                                      path=f"{path}[{i}]")  # fmt: skip
            return self.spanned(f"{target} {_LIST[str(op)]}({self.param(list(value))})", path)
        if op in _PATTERN:
            return self.spanned(f"{target} {_PATTERN[str(op)]} {self.param(value)}", path)
        if op == "_isDistinctFrom":
            return self.spanned(f"{target} IS DISTINCT FROM {self.param(value)}", path)
        return self.spanned(f"{target} {_COMPARE[str(op)]} {self.param(value)}", path)

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    @staticmethod
    def spanned(text: str, path: str) -> _Sql:
        return _Sql(text, [(0, len(text), path)])


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__
