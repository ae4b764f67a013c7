"""The catalog and the policies -> the `TypeModel` of the typed GraphQL schema.

Per readable table (with policies configured: each table with a policy, its
allowed columns; without: each tracked table, every column), an object type
with one field per readable column, a key object and key input, a `where`
input (`IssuesBoolExp`) over per-type comparison inputs, the change and
message types of its live field, and two root fields:
`Subscription.issues(where, cursor)`, `Query.issues(where, limit)` and
`Query.issuesByKey(keys)`. Names follow
`naming`, types `typemap`; a clash is a `NamingError` naming both sides.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence

from pgsift.subscriptions.catalog import Catalog, Table
from pgsift.subscriptions.naming import NameRegistry, base_name, is_graphql_name, pascal
from pgsift.subscriptions.naming import table_names as name_table
from pgsift.subscriptions.policy import Policy
from pgsift.subscriptions.typemap import NULL_TEST, SCALARS, ColumnType, column_type
from pgsift.subscriptions.typemodel import (
    Argument,
    EnumType,
    Field,
    InputType,
    ListOf,
    Named,
    NonNull,
    ObjectType,
    ScalarType,
    TypedTable,
    TypeModel,
    TypeRef,
    named_type,
)

OP = EnumType("Op", ("INSERT", "UPDATE", "DELETE"), "What a change did to its row.")
_GRAPHQL_LITERALS = frozenset({"true", "false", "null"})
_BUILT_IN_SCALARS = ("Int", "Boolean", "String")

_OPERATOR_DOCS = {
    "_eq": "Equal (=).",
    "_neq": "Not equal (<>).",
    "_gt": "Greater than (>).",
    "_gte": "Greater than or equal (>=).",
    "_lt": "Less than (<).",
    "_lte": "Less than or equal (<=).",
    "_in": "Equal to one of the values (= ANY); an empty list matches no row.",
    "_nin": "Equal to none of the values (<> ALL); an empty list matches every row.",
    "_isNull": "true: IS NULL; false: IS NOT NULL.",
    "_like": "LIKE: % any text, _ one character, backslash escapes the next one.",
    "_ilike": "ILIKE: LIKE ignoring case.",
    "_isDistinctFrom": "IS DISTINCT FROM: not equal, NULL counting as a value.",
}


def readable_columns(
    catalog: Catalog, policies: Mapping[str, Policy] | None, tables: Iterable[str] | None = None
) -> dict[str, tuple[str, ...]]:
    """Readable table -> readable columns, in catalog order.

    With policies: the tables with a policy and the columns it allows. Without:
    `tables` (the tracked ones; None: every table of the catalog), every column.
    Tables the catalog lacks (no primary key) cannot be synced and are left out.
    """
    if policies:
        # A policy's table may not exist yet (created later): it has no type until then.
        present = {name: policies[name] for name in catalog.tables if name in policies}
        for policy in present.values():
            policy.check(catalog)
        return {name: p.allowed_columns(catalog.tables[name]) for name, p in present.items()}
    chosen = None if tables is None else {t if "." in t else f"public.{t}" for t in tables}
    return {
        name: tuple(table.columns)
        for name, table in catalog.tables.items()
        if chosen is None or name in chosen
    }


def typed_schema(
    catalog: Catalog,
    policies: Mapping[str, Policy] | None = None,
    tables: Iterable[str] | None = None,
) -> TypeModel:
    """The typed schema of the tables a client may read; NamingError on a clash."""
    readable = readable_columns(catalog, policies, tables)
    registry = NameRegistry()
    _claim_fixed(registry)
    enums = _enum_names(catalog, readable)
    for pg_name, enum_name in enums.items():
        if enum_name is not None:
            registry.claim_type(enum_name, f"the enum {pg_name}")
    typed: dict[str, TypedTable] = {}
    for name, columns in readable.items():
        table = catalog.tables[name]
        names = name_table(table, columns)
        registry.claim_table(names)
        types = {column: column_type(table.columns[column], enums) for column in names.fields}
        for kind in types.values():
            registry.claim_type(kind.comparison, f"pgsift's comparison input {kind.comparison}")
        typed[name] = TypedTable(names, types, table.primary_key)
    return _model(catalog, typed, enums)


def _claim_fixed(registry: NameRegistry) -> None:
    """pgsift's scalars and their comparison inputs, whether or not a column uses them now:
    a schema that builds today keeps building when a column of another type is added."""
    for name in (*_BUILT_IN_SCALARS, *SCALARS):
        if name in SCALARS:
            registry.claim_type(name, f"pgsift's scalar {name}")
        for comparison in (f"{name}ComparisonExp", f"{name}ArrayComparisonExp"):
            registry.claim_type(comparison, f"pgsift's comparison input {comparison}")


def _enum_names(
    catalog: Catalog, readable: Mapping[str, Sequence[str]]
) -> dict[str, str | None]:
    """Each enum a readable column uses -> its GraphQL name; None when it is exposed as a
    String because a label is not a GraphQL enum value name (`in progress`, `null`)."""
    used: dict[str, str | None] = {}
    for name, columns in readable.items():
        table = catalog.tables[name]
        for column in columns:
            pg_type = table.columns[column].removesuffix("[]")
            labels = catalog.enum_labels(pg_type)
            if labels is None or pg_type in used:
                continue
            name = pascal(base_name(pg_type))
            used[pg_type] = name if _enum_labels_fit(name, labels) else None
    return used


def _enum_labels_fit(name: str, labels: Sequence[str]) -> bool:
    """Labels that can be GraphQL enum values in every library: GraphQL names but
    true/false/null, and Python enum member names (graphene names values after
    members, and Python refuses `mro`, `_sunder_` names and drops `_Name__x`)."""
    if not all(is_graphql_name(label) and label not in _GRAPHQL_LITERALS for label in labels):
        return False
    try:
        members = enum.Enum(name, [(label, label) for label in labels])  # type: ignore[misc]
    except (ValueError, TypeError):
        return False
    return [member.name for member in members] == list(labels)


def _shown(kind: ColumnType) -> str:
    return f"[{kind.named}]" if kind.is_list else kind.named


def _model(
    catalog: Catalog, typed: Mapping[str, TypedTable], enums: Mapping[str, str | None]
) -> TypeModel:
    comparisons: dict[str, InputType] = {}
    inputs: list[InputType] = []
    objects: list[ObjectType] = []
    query: list[Field] = []
    subscription: list[Field] = []
    for name, table in typed.items():
        for kind in table.columns.values():
            comparisons.setdefault(kind.comparison, _comparison(kind))
        inputs.extend(_table_inputs(catalog.tables[name], table))
        objects.extend(_table_objects(catalog.tables[name], table))
        query.append(_read_field(table))
        query.append(_by_key_field(table))
        subscription.append(_live_field(table))
    all_inputs = (*comparisons.values(), *inputs)
    fields = [f for t in all_inputs for f in t.fields] + [f for t in objects for f in t.fields]
    used = {named_type(f.type) for f in fields}
    scalars = tuple(
        ScalarType(s.name, s.wire_type, s.description) for s in SCALARS.values() if s.name in used
    )
    enum_types = [OP]
    for pg_name, enum_name in enums.items():
        if enum_name is not None:
            labels = catalog.enum_labels(pg_name) or ()
            enum_types.append(EnumType(enum_name, labels, f"The Postgres enum {pg_name}."))
    return TypeModel(
        scalars=scalars,
        enums=tuple(enum_types),
        inputs=all_inputs,
        objects=tuple(objects),
        query=tuple(query),
        subscription=tuple(subscription),
        tables=dict(typed),
    )


def _value_type(table: Table, column: str, kind: ColumnType) -> TypeRef:
    ref: Named | ListOf = ListOf(Named(kind.named)) if kind.is_list else Named(kind.named)
    return ref if table.nullable(column) else NonNull(ref)


def _comparison(kind: ColumnType) -> InputType:
    value = Named(kind.named)
    fields = []
    for op in kind.operators:
        if op in ("_in", "_nin"):
            ref: TypeRef = ListOf(NonNull(value))
        elif op == "_isNull":
            ref = Named("Boolean")
        elif op in ("_like", "_ilike"):
            ref = Named("String")
        else:
            ref = value
        fields.append(Field(op, ref, _OPERATOR_DOCS[op]))
    what = "IS NULL tests only" if kind.operators == NULL_TEST else "every one given must hold"
    return InputType(
        kind.comparison, tuple(fields), f"Conditions on {_shown(kind)} columns: {what}."
    )


def _table_inputs(table: Table, typed: TypedTable) -> list[InputType]:
    names = typed.names
    self_ref = Named(names.bool_exp)
    columns = tuple(
        Field(field, Named(typed.columns[column].comparison))
        for column, field in names.fields.items()
    )
    where = InputType(
        names.bool_exp,
        (
            Field("_and", ListOf(NonNull(self_ref)), "Every one of these holds ([]: true)."),
            Field("_or", ListOf(NonNull(self_ref)), "At least one of these holds ([]: false)."),
            Field("_not", self_ref, "This filter does not hold."),
            *columns,
        ),
        f"A filter on rows of {table.name}: every field given must hold ({{}}: every row).",
    )
    key_fields = tuple(
        Field(names.fields[c], NonNull(Named(typed.columns[c].named))) for c in typed.primary_key
    )
    key = InputType(names.key_input, key_fields, f"The primary key of a row of {table.name}.")
    return [where, key]


def _table_objects(table: Table, typed: TypedTable) -> list[ObjectType]:
    names = typed.names
    row = ObjectType(
        names.type,
        tuple(
            Field(
                field,
                _value_type(table, column, typed.columns[column]),
                f"Column {column} ({typed.columns[column].pg_type}).",
            )
            for column, field in names.fields.items()
        ),
        f"A row of {table.name}.",
    )
    key = ObjectType(
        names.key,
        tuple(
            Field(names.fields[c], NonNull(Named(typed.columns[c].named)))
            for c in typed.primary_key
        ),
        f"The primary key of a row of {table.name}.",
    )
    change = ObjectType(
        names.change,
        (
            Field("op", NonNull(Named(OP.name))),
            Field("key", NonNull(Named(names.key))),
            Field("row", Named(names.type), "The row after an INSERT or UPDATE; null: DELETE."),
        ),
        f"One change to a row of {table.name}.",
    )
    message = ObjectType(
        names.sync_message,
        (
            Field("changes", NonNull(ListOf(NonNull(Named(names.change))))),
            Field("cursor", Named("String")),
            Field("upToDate", NonNull(Named("Boolean"))),
            Field("mustRefetch", NonNull(Named("Boolean"))),
        ),
        f"A message of the `{names.field}` subscription: the changes of one transaction.",
    )
    return [row, key, change, message]


def _live_field(typed: TypedTable) -> Field:
    names = typed.names
    return Field(
        names.field,
        NonNull(Named(names.sync_message)),
        f"The rows of {names.table} that match `where` and the caller may read, then every "
        "change to them; the fields selected under `row` are the columns synced (the primary "
        "key always is).",
        (
            Argument("where", Named(names.bool_exp)),
            Argument("cursor", Named("String"), "Resume after this cursor of an earlier message."),
        ),
    )


def _by_key_field(typed: TypedTable) -> Field:
    names = typed.names
    return Field(
        names.by_key,
        NonNull(ListOf(Named(names.type))),
        f"Rows of {names.table} by primary key: one entry per key, in order; null for a key "
        "that does not exist or that the caller may not read.",
        (Argument("keys", NonNull(ListOf(NonNull(Named(names.key_input))))),),
    )


def _read_field(typed: TypedTable) -> Field:
    names = typed.names
    return Field(
        names.field,
        NonNull(ListOf(NonNull(Named(names.type)))),
        f"The rows of {names.table} that match `where` and the caller may read, read once "
        "from a snapshot of Postgres, in primary-key order: at most `limit` of them (and at "
        "most the gateway's bound, gateway_max_query_rows).",
        (
            Argument("where", Named(names.bool_exp)),
            Argument("limit", Named("Int"), "At most this many rows (default: the bound)."),
        ),
    )
