"""strawberry and graphene built from one model: one SDL, one serialization, one input form."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest
from graphql import GraphQLSchema, lexicographic_sort_schema, print_schema

from pgsift.middleware.gateway.messages import wire_change
from pgsift.middleware.graphql.graphene_types import GrapheneTypes
from pgsift.middleware.graphql.graphene_types import plain_input as graphene_plain
from pgsift.middleware.graphql.strawberry_types import StrawberryTypes
from pgsift.middleware.graphql.strawberry_types import plain_input as strawberry_plain
from pgsift.subscriptions import Catalog
from pgsift.subscriptions.filters import compile_filter
from pgsift.subscriptions.typed_schema import typed_schema
from pgsift.subscriptions.typemodel import Field, TypeModel
from pgsift.subscriptions.wire import RowWire

COLUMNS = {
    "id": "int8", "tenant": "int4", "small": "int2", "big": "int8", "exact": "numeric",
    "single": "float4", "double": "float8", "done": "bool", "body": "text", "short": "varchar",
    "code": "bpchar", "label": "name", "owner": "uuid", "due": "date", "at_time": "time",
    "at_zoned_time": "timetz", "local_at": "timestamp", "zoned_at": "timestamptz",
    "span": "interval", "doc": "json", "payload": "jsonb", "blob": "bytea", "obj": "oid",
    "addr": "inet", "mood": "mood", "stage": "stage", "ints": "int4[]", "texts": "text[]",
    "moods": "mood[]", "bigs": "int8[]", "class": "text",
}  # fmt: skip
WIDE = Catalog.from_dict(
    {
        "public.wide_rows": {"columns": COLUMNS, "primary_key": ["id", "tenant"],
                             "not_null": ["body", "ints"]},
        "audit.events": {"columns": {"id": "int8", "mood": "mood"}, "primary_key": ["id"]},
    },
    enums={"mood": ["sad", "ok", "happy"], "stage": ["in progress", "done"]},
)  # fmt: skip
ROW = {
    "id": 1, "tenant": 7, "small": -3, "big": 2**53 + 1, "exact": Decimal("12.50"),
    "single": float("inf"), "double": float("nan"), "done": True, "body": "b", "short": "s",
    "code": "ab  ", "label": "n", "owner": UUID(int=1), "due": date(2026, 3, 29),
    "at_time": time(12, 34, 56, 500000),
    "at_zoned_time": time(12, 0, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    "local_at": datetime(2024, 1, 2, 3, 4, 5, 123456),
    "zoned_at": datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
    "span": timedelta(days=1, seconds=7384, microseconds=500000), "doc": {"a": [1, None]},
    "payload": ["x", 2], "blob": b"\x00\xff", "obj": 4294967295, "addr": "10.0.0.0/8",
    "mood": "ok", "stage": "in progress", "ints": [1, None], "texts": ["a", None],
    "moods": ["sad", None], "bigs": [2**63 - 1, None], "class": "c",
}  # fmt: skip


def _sdl(schema: GraphQLSchema) -> str:
    return print_schema(lexicographic_sort_schema(schema))


def _both(model: TypeModel, **kwargs: Any) -> tuple[Any, Any]:
    strawberry_schema = StrawberryTypes(model).schema(**kwargs)
    graphene_schema = GrapheneTypes(model).schema(**kwargs)
    return strawberry_schema, graphene_schema


def test_strawberry_and_graphene_expose_the_same_sdl() -> None:
    strawberry_schema, graphene_schema = _both(typed_schema(WIDE))
    printed = _sdl(strawberry_schema._schema)
    assert printed == _sdl(graphene_schema.graphql_schema)
    for expected in (
        "type WideRows {", "big: BigInt", "exact: Numeric", "double: Float8", "owner: Uuid",
        "zonedAt: Timestamptz", "atZonedTime: Timetz", "span: Interval", "payload: Jsonb",
        "doc: Json", "blob: Bytea", "obj: Oid", "addr: String", "mood: Mood", "stage: String",
        "ints: [Int]!", "moods: [Mood]", "body: String!", "class: String",
        "type AuditEvents {", "auditEventsByKey(keys: [AuditEventsKeyInput!]!): [AuditEvents]!",
        "where: WideRowsBoolExp", "input WideRowsKeyInput {\n  id: BigInt!\n  tenant: Int!",
        "input InetComparisonExp {", "input StageComparisonExp {", "_eq: String",
    ):  # fmt: skip
        assert expected in printed, expected


def _python_name(name: str) -> str:
    return f"{name}_" if name == "class" else name


def _wire_row() -> dict[str, Any]:
    table = WIDE.table("wide_rows")
    columns = tuple(ROW)
    row_wire = RowWire(columns, tuple(table.columns[c] for c in columns))
    wire = wire_change("INSERT", {"id": 1}, ROW, row_wire).row
    assert wire is not None
    return wire


def _row_resolvers(field: Field) -> Any:
    def resolve(root: Any, info: Any, **kwargs: Any) -> list[Any]:
        fields = typed_schema(WIDE).table("wide_rows").names.fields
        row = {_python_name(fields[c]): v for c, v in _wire_row().items()}
        return [SimpleNamespace(**row), None]

    return resolve


def test_rows_leave_in_the_wire_form_the_sync_protocol_sends() -> None:
    model = typed_schema(WIDE)
    fields = model.table("wide_rows").names.fields
    selection = " ".join(fields.values())
    document = f'{{ wideRowsByKey(keys: [{{id: "1", tenant: 7}}]) {{ {selection} }} }}'
    strawberry_schema, graphene_schema = _both(model, resolvers=_row_resolvers)
    from_strawberry = strawberry_schema.execute_sync(document)
    from_graphene = graphene_schema.execute(document)
    assert from_strawberry.errors is None and from_graphene.errors is None
    expected = {fields[column]: value for column, value in _wire_row().items()}
    assert from_strawberry.data == {"wideRowsByKey": [expected, None]}
    assert from_graphene.data == from_strawberry.data


WHERE = (
    '{teamId: {_eq: "9007199254740993"}, points: {_gt: 1.50, _in: [2, "3.25"]}, '
    '_or: [{status: {_in: [doing, done]}}, {_not: {status: {_isNull: false}}}], '
    'title: {_ilike: "%a%"}}'
)
VARIABLES = {
    "teamId": {"_eq": "9007199254740993"},
    "points": {"_gt": "1.50", "_in": [2, "3.25"]},
    "_or": [{"status": {"_in": ["doing", "done"]}}, {"_not": {"status": {"_isNull": False}}}],
    "title": {"_ilike": "%a%"},
}
ISSUES = Catalog.from_dict(
    {"issues": {"columns": {"id": "int8", "team_id": "int8", "points": "numeric",
                            "status": "issue_status", "title": "text"},
                "primary_key": ["id"]}},
    enums={"issue_status": ["open", "doing", "done"]},
)  # fmt: skip


@pytest.mark.parametrize("library", ["strawberry", "graphene"])
@pytest.mark.parametrize("form", ["literal", "variables"])
def test_where_arrives_as_the_plain_data_compile_filter_takes(library: str, form: str) -> None:
    model = typed_schema(ISSUES)
    seen: list[Any] = []
    plain = strawberry_plain if library == "strawberry" else graphene_plain

    def resolvers(field: Field) -> Any:
        async def subscribe(root: Any, info: Any, **kwargs: Any) -> Any:
            seen.append(plain(kwargs.get("where")))
            yield SimpleNamespace(changes=[], cursor=None, upToDate=True, mustRefetch=False)

        return subscribe

    types = StrawberryTypes(model) if library == "strawberry" else GrapheneTypes(model)
    schema = types.schema(resolvers=resolvers)
    if form == "literal":
        document, variables = f"subscription {{ issues(where: {WHERE}) {{ upToDate }} }}", None
    else:
        document = "subscription($w: IssuesBoolExp) { issues(where: $w) { upToDate } }"
        variables = {"w": VARIABLES}

    async def first() -> Any:
        stream = await schema.subscribe(document, variable_values=variables)
        async for result in stream:
            return result
        return None

    result = asyncio.run(first())
    assert result.errors is None, result.errors
    assert result.data == {"issues": {"upToDate": True}}
    expected = dict(VARIABLES, points={"_gt": "1.50", "_in": [2, "3.25"]})
    assert seen == [expected]
    shape = compile_filter(model.table("issues"), seen[0]).to_shape(catalog=ISSUES)
    assert 9007199254740993 in shape.params  # exact: the literal never was a double
    assert "1.50" in [str(p) for p in shape.params]  # scale kept
