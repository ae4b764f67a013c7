"""The type model: GraphQL types per column type, nullability, enums, operators, tables."""

from __future__ import annotations

import pytest

from pgsift.subscriptions import Catalog, Policy, PolicyError, QueryError, Shape
from pgsift.subscriptions.typed_schema import typed_schema
from pgsift.subscriptions.typemap import OPERATORS, column_type
from pgsift.subscriptions.typemodel import (
    Field,
    ListOf,
    Named,
    NonNull,
    ObjectType,
    TypeModel,
    TypeRef,
)

TYPES = {
    "int2": "Int", "int4": "Int", "int8": "BigInt", "oid": "Oid", "numeric": "Numeric",
    "float4": "Float8", "float8": "Float8", "bool": "Boolean", "text": "String",
    "varchar": "String", "bpchar": "String", "name": "String", "uuid": "Uuid", "date": "Date",
    "time": "Time", "timetz": "Timetz", "timestamp": "Timestamp", "timestamptz": "Timestamptz",
    "interval": "Interval", "json": "Json", "jsonb": "Jsonb", "bytea": "Bytea",
    "inet": "String", "mood": "Mood", "odd": "String",
}  # fmt: skip
ENUMS = {"mood": ["sad", "ok", "happy"], "odd": ["in progress", "done"]}
CATALOG = Catalog.from_dict(
    {"t": {"columns": {"id": "int8", **{f"c_{t}": t for t in TYPES},
                       **{f"a_{t}": f"{t}[]" for t in TYPES}},
           "primary_key": ["id"], "not_null": ["c_text", "a_int4"]}},
    enums=ENUMS,
)  # fmt: skip
# A value of each comparable type, in the JSON form a client sends.
SAMPLES = {
    "int2": 1, "int4": 1, "int8": "9007199254740993", "numeric": "1.50", "float4": 1.5,
    "float8": "NaN", "bool": True, "text": "a", "varchar": "a", "bpchar": "a",
    "uuid": "00000000-0000-0000-0000-000000000001", "date": "2026-03-29",
    "time": "12:00:00", "timestamp": "2026-03-29T02:30:00",
    "timestamptz": "2026-03-29T02:30:00+02:00", "bytea": "\\x00ff", "mood": "ok", "odd": "done",
}  # fmt: skip


def _nullable(ref: TypeRef) -> TypeRef:
    return ref.of if isinstance(ref, NonNull) else ref


def _object(model: TypeModel, name: str) -> ObjectType:
    return next(t for t in model.objects if t.name == name)


def _field(model: TypeModel, type_name: str, field: str) -> Field:
    return next(f for f in _object(model, type_name).fields if f.name == field)


def test_every_column_type_has_a_lossless_graphql_type() -> None:
    model = typed_schema(CATALOG)
    for pg_type, graphql in TYPES.items():
        value = _field(model, "T", f"c{pg_type.capitalize()}").type
        array = _field(model, "T", f"a{pg_type.capitalize()}").type
        assert _nullable(value) == Named(graphql), pg_type
        assert _nullable(array) == ListOf(Named(graphql)), pg_type
    scalars = {s.name: s.wire_type for s in model.scalars}
    assert scalars["BigInt"] == "int8" and scalars["Float8"] == "float8"
    assert {e.name: e.values for e in model.enums} == {
        "Op": ("INSERT", "UPDATE", "DELETE"), "Mood": ("sad", "ok", "happy")
    }  # fmt: skip


def test_nullability_comes_from_the_catalog() -> None:
    model = typed_schema(CATALOG)
    assert _field(model, "T", "id").type == NonNull(Named("BigInt"))
    assert _field(model, "T", "cText").type == NonNull(Named("String"))
    assert _field(model, "T", "aInt4").type == NonNull(ListOf(Named("Int")))
    assert _field(model, "T", "cInt4").type == Named("Int")
    assert _field(model, "TKey", "id").type == NonNull(Named("BigInt"))


@pytest.mark.parametrize("labels", [["in progress"], ["true", "x"], ["mro"], ["_x_"], ["1st"]])
def test_an_enum_whose_labels_are_not_graphql_values_is_a_string(labels: list[str]) -> None:
    catalog = Catalog.from_dict(
        {"t": {"columns": {"id": "int8", "e": "odd"}, "primary_key": ["id"]}},
        enums={"odd": labels},
    )
    model = typed_schema(catalog)
    assert _field(model, "T", "e").type == Named("String")
    assert [e.name for e in model.enums] == ["Op"]
    kind = model.table("t").columns["e"]
    comparable = column_type("int4", {}).operators
    assert (kind.comparison, kind.operators) == ("OddComparisonExp", comparable)


def test_the_operators_offered_are_exactly_those_a_shape_accepts() -> None:
    """Each column's comparison input lists an operator iff `Shape.parse` takes the SQL the
    filter compiles it to; so a typed filter never offers what it would then refuse."""
    model = typed_schema(CATALOG)
    table = model.table("t")
    sql = {
        "_eq": "= $1", "_neq": "<> $1", "_gt": "> $1", "_gte": ">= $1", "_lt": "< $1",
        "_lte": "<= $1", "_in": "= ANY($1)", "_nin": "<> ALL($1)", "_isNull": "IS NULL",
        "_like": "LIKE $1", "_ilike": "ILIKE $1", "_isDistinctFrom": "IS DISTINCT FROM $1",
    }  # fmt: skip
    for column, kind in table.columns.items():
        element = CATALOG.table("t").columns[column].removesuffix("[]")
        sample = SAMPLES.get(element, "a")
        for op in OPERATORS:
            value = [sample] if op in ("_in", "_nin") else sample
            if op in ("_like", "_ilike"):
                value = "a%"
            params = [] if op == "_isNull" else [[value] if kind.is_list else value]
            try:
                Shape.parse(f'SELECT id FROM t WHERE "{column}" {sql[op]}', params,
                            catalog=CATALOG)  # fmt: skip
                accepted = True
            except QueryError:
                accepted = False
            assert accepted == (op in kind.operators), (column, op)


def test_the_issue_trackers_policies_decide_tables_and_columns() -> None:
    catalog = Catalog.from_dict(
        {"issues": {"columns": {"id": "int8", "title": "text", "secret": "text"},
                    "primary_key": ["id"]},
         "users": {"columns": {"id": "int8", "email": "text"}, "primary_key": ["id"]}},
    )  # fmt: skip
    policies = {"public.issues": Policy("public.issues", columns=("id", "title"))}
    model = typed_schema(catalog, policies)
    assert list(model.tables) == ["public.issues"]
    assert [f.name for f in _object(model, "Issues").fields] == ["id", "title"]
    where = next(t for t in model.inputs if t.name == "IssuesBoolExp")
    assert [f.name for f in where.fields] == ["_and", "_or", "_not", "id", "title"]
    assert [f.name for f in model.subscription] == ["issues"]
    assert [f.name for f in model.query] == ["issues", "issuesByKey"]
    later = {**policies, "public.later": Policy("public.later")}  # created later: no type yet
    assert list(typed_schema(catalog, later).tables) == ["public.issues"]
    with pytest.raises(PolicyError, match="unknown column"):
        typed_schema(catalog, {"public.users": Policy("public.users", columns=("id", "nope"))})
